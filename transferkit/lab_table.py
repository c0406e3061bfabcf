"""The strategy lab's results table: one row per finished run, as HTML and as text.

Its columns follow the settings table: every option a run used (the common ones, and a
strategy's own on its rows), then the scores.  Numbers are right-aligned, rows striped, each
row keeps its run's colour (``curves.run_color``), the best test accuracy is marked.
"""
from __future__ import annotations

import html

from .curves import run_color
from .settings import options
from .transfer import param_summary

__all__ = ["FIXED", "ResultsTable", "lr_text"]

# (column, row key) before and after the options' columns
FIXED = ((("strategy", "strategy"), ("BatchNorm", "bn_mode"), ("shots", "shots")),
         (("test accuracy", "accuracy"), ("macro F1", "macro_f1"),
          ("trainable params", "trainable_params"), ("transferred", "transferred"),
          ("seconds", "seconds")))
HEADINGS = {"learning_rate": "learning rate", "finetune_lr": "fine-tune rate"}
TEXT_ONLY = {"strategy", "BatchNorm", "transferred"}


def lr_text(value):
    """A learning rate written as the panel's slider writes it: ``3e-3`` (not ``3e-03``)."""
    mantissa, exponent = f"{value:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def _cell(key, value):
    if value is None:
        return "default" if key == "finetune_lr" else ""
    if key in ("accuracy", "macro_f1"):
        return f"{value:.1%}"
    if key in ("learning_rate", "finetune_lr"):
        return lr_text(value)
    if key == "trainable_params":
        return f"{value:,}"
    if key == "seconds":
        return f"{value:.1f}"
    return str(value) if not isinstance(value, float) else f"{value:g}"


class ResultsTable:
    """The rows of finished runs (dicts) and their rendering; ``sort``: ``"run"`` or
    ``"accuracy"`` (best first)."""

    def __init__(self):
        self.rows = []

    def add(self, shots, settings, result, scores, seconds):
        """The row of a finished run (``result``: a ``StrategyRun``), added; returns it.

        BatchNorm says the mode that ran, and why when it is not the one asked for
        (scratch: ``train (scratch)``); a strategy's own options only on its rows."""
        strategy = result.strategy
        ran = result.settings["bn_mode"]
        bn = ran if ran == settings["bn_mode"] else f"{ran} ({strategy.key})"
        mine = {o.name for o in strategy.options}
        row = {"strategy": strategy.title, "bn_mode": bn, "shots": shots,
               **{k: v for k, v in settings.items()
                  if k != "bn_mode" and (options()[k].strategy is None or k in mine)},
               "accuracy": scores.accuracy, "macro_f1": scores.f1,
               "trainable_params": param_summary(result.model).trainable,
               "transferred": _transferred(result.transfer), "seconds": seconds}
        self.rows.append(row)
        return row

    def columns(self):
        """(heading, row key) of every column, the options' in the table's order; an option
        of one strategy only where some row has it."""
        used = {key for row in self.rows for key in row}
        middle = [(HEADINGS.get(name, name.replace("_", " ")), name)
                  for name, option in options().items()
                  if name != "bn_mode" and (option.strategy is None or name in used)]
        return list(FIXED[0]) + middle + list(FIXED[1])

    def cells(self, row):
        return [_cell(key, row.get(key)) for _, key in self.columns()]

    def text(self, seconds=False):
        """Fixed-width text (``seconds=False`` leaves out the timing column)."""
        columns = self.columns() if seconds else self.columns()[:-1]
        rows = [self.cells(r)[:len(columns)] for r in self.rows]
        widths = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c)
                  for i, (c, _) in enumerate(columns)]
        lines = ["  ".join(c.ljust(n) for (c, _), n in zip(columns, widths)).rstrip()]
        lines += ["  ".join(v.ljust(n) for v, n in zip(r, widths)).rstrip() for r in rows]
        return "\n".join(lines)

    def html(self, sort="run"):
        """Aligned columns (numbers right), stripes, the run's colour, the best run marked."""
        order = list(range(len(self.rows)))
        if sort == "accuracy":
            order.sort(key=lambda i: -self.rows[i]["accuracy"])
        best = max(order, key=lambda i: self.rows[i]["accuracy"]) if order else None
        headings = ["run"] + [c for c, _ in self.columns()]
        cell = "padding:3px 8px;border-bottom:1px solid #ddd;white-space:nowrap;"

        def align(heading):
            return "left" if heading in TEXT_ONLY else "right"
        head = "".join(f'<th style="{cell}border-bottom:2px solid #888;text-align:'
                       f'{align(h)}">{h}</th>' for h in headings)
        body = []
        for n, i in enumerate(order):
            swatch = (f'<span style="display:inline-block;width:10px;height:10px;'
                      f'background:{run_color(i)};margin-right:4px"></span>{i + 1}')
            values = [swatch] + [html.escape(v) for v in self.cells(self.rows[i])]
            if i == best:
                at = headings.index("test accuracy")
                values[at] = "★ " + values[at]
            shade = "#e8f5e9" if i == best else ("#f7f7f7" if n % 2 else "white")
            weight = "font-weight:600;" if i == best else ""
            tds = "".join(f'<td style="{cell}{weight}text-align:{align(h)}">{v}</td>'
                          for h, v in zip(headings, values))
            body.append(f'<tr style="background:{shade}">{tds}</tr>')
        return ('<div style="overflow-x:auto"><table style="border-collapse:collapse;'
                'font-variant-numeric:tabular-nums;font-size:13px"><thead><tr>'
                f'{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'
                '<div style="color:#555;font-size:12px">★ best test accuracy so far</div>')


def _transferred(report):
    """The 'transferred' cell: backbone layers loaded from the source, or none."""
    if report is None:
        return "none"
    return f"{sum(n in report.loaded for n in report.backbone)} of {len(report.backbone)} layers"
