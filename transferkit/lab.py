"""The strategy lab: an ipywidgets panel to run transfer strategies and compare them.

A plain Python object: tests set widget values and call ``run()`` / ``clear()``
without a browser; in Jupyter, display it and press the buttons.
"""
from __future__ import annotations

import html
import time

from .data import few_shot, target_task
from .plots import LiveCurves, in_jupyter
from .strategies import STRATEGIES, get_strategy
from .training import evaluate, run_strategy
from .transfer import param_summary

COLUMNS = ("strategy", "shots", "learning rate", "epochs", "seed", "test accuracy",
           "macro F1", "trainable params", "seconds")


class StrategyLab:
    """Widgets: strategy, shots per class, learning rate (log), epochs, seed; Run, Clear.

    ``results`` holds one dict per finished run; ``histories`` the curves drawn.
    """

    def __init__(self, source=None, task=None, strategies=tuple(STRATEGIES), shots=10,
                 learning_rate=1e-2, epochs=8, seed=0):
        import ipywidgets as w

        if source is None:
            from .source import source_model
            source = source_model()
        self.source = source
        self.task = task or target_task()
        self.strategies = [get_strategy(s) for s in strategies]
        max_shots = min(self.task.train.counts())
        style = {"description_width": "110px"}
        self.strategy = w.ToggleButtons(options=[(s.title, s.key) for s in self.strategies],
                                        value=self.strategies[0].key, description="strategy",
                                        style={"button_width": "150px", **style})
        self.shots = w.IntSlider(value=min(shots, max_shots), min=1, max=max_shots,
                                 description="shots / class", style=style)
        self.learning_rate = w.FloatLogSlider(value=learning_rate, base=10, min=-5, max=-0.5,
                                              step=0.25, readout_format=".0e",
                                              description="learning rate", style=style)
        self.epochs = w.IntSlider(value=epochs, min=2, max=40, description="epochs", style=style)
        self.seed = w.BoundedIntText(value=seed, min=0, max=9999, description="seed",
                                     style=style, layout=w.Layout(width="200px"))
        self.run_button = w.Button(description="Run", button_style="primary", icon="play")
        self.clear_button = w.Button(description="Clear", icon="trash")
        self.run_button.add_class("tk-lab-run")
        self.clear_button.add_class("tk-lab-clear")
        self.status = w.HTML()
        self.plot = w.Output()
        self.plot.add_class("tk-lab-plot")
        self.table = w.HTML()
        self.table.add_class("tk-lab-results")
        self.run_button.on_click(lambda _: self.run())
        self.clear_button.on_click(lambda _: self.clear())
        self.results, self.histories = [], []
        self.curves = None
        self.message = ""
        self._busy = False
        controls = w.VBox([self.strategy, w.HBox([self.shots, self.learning_rate]),
                           w.HBox([self.epochs, self.seed]),
                           w.HBox([self.run_button, self.clear_button, self.status])])
        self.widget = w.VBox([controls, self.plot, self.table])
        self.widget.add_class("tk-lab")
        self._render_table()

    def _ipython_display_(self):
        from IPython.display import display
        display(self.widget)

    def _say(self, text, kind="info"):
        color = {"info": "#555", "error": "#b00020", "ok": "#1b5e20"}[kind]
        self.message = text
        self.status.value = f'<span style="color:{color}">{html.escape(text)}</span>'

    def run(self, **settings):
        """One run with the widgets' settings (``settings`` override and update them).

        Returns the new result row, or None when the run did not happen (the reason
        is shown in the panel); never raises for bad settings.
        """
        if self._busy:
            self._say("A run is in progress; wait for it to finish.", "error")
            return None
        try:
            for name, value in settings.items():
                if name not in ("strategy", "shots", "learning_rate", "epochs", "seed"):
                    raise ValueError(f"unknown setting {name!r}; use strategy, shots, "
                                     "learning_rate, epochs or seed")
                self._set(name, value)
            strategy = get_strategy(self.strategy.value)
            train = few_shot(self.task.train, int(self.shots.value), int(self.seed.value))
        except (ValueError, TypeError) as error:
            self._say(str(error), "error")
            return None
        self._busy = True
        self.run_button.disabled = True
        self._say(f"Training: {strategy.title}, {self.shots.value} shots per class ...")
        start = time.perf_counter()
        try:
            if in_jupyter():
                self.plot.clear_output(wait=True)
            label = f"{strategy.title} ({self.shots.value} shots)"
            self.curves = LiveCurves(label, previous=list(self.histories),
                                     epochs=int(self.epochs.value))
            with self.plot:
                result = run_strategy(strategy, train, self.task.val, self.task.num_classes,
                                      self.source.weights_path, int(self.epochs.value),
                                      float(self.learning_rate.value), int(self.seed.value),
                                      callbacks=[self.curves])
            if result.history.interrupted:
                self._say("Interrupted: earlier results are kept; this run was not added.",
                          "error")
                return None
            scores = evaluate(result.model, self.task.test)
        except (ValueError, TypeError, OSError) as error:  # OSError: e.g. a deleted weights file
            self._say(str(error), "error")
            return None
        except KeyboardInterrupt:
            self._say("Interrupted: earlier results are kept; this run was not added.", "error")
            return None
        finally:
            self._busy = False
            self.run_button.disabled = False
        result.history.label = label
        self.histories.append(result.history)
        row = {"strategy": strategy.title, "shots": int(self.shots.value),
               "learning_rate": float(self.learning_rate.value),
               "epochs": int(self.epochs.value), "seed": int(self.seed.value),
               "accuracy": scores.accuracy, "macro_f1": scores.f1,
               "trainable_params": param_summary(result.model).trainable,
               "seconds": time.perf_counter() - start}
        self.results.append(row)
        self._render_table()
        self._say(f"Done: {strategy.title}, test accuracy {scores.accuracy:.1%}.", "ok")
        return row

    def _set(self, name, value):
        if name == "strategy":
            self.strategy.value = get_strategy(value).key
            return
        widget = {"shots": self.shots, "learning_rate": self.learning_rate,
                  "epochs": self.epochs, "seed": self.seed}[name]
        low, high = widget.min, widget.max
        if name == "learning_rate":
            low, high = 10 ** widget.min, 10 ** widget.max
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            raise ValueError(f"{name}={value!r} is out of range; use a value from {low:g} to "
                             f"{high:g}")
        widget.value = value

    def clear(self):
        """Forget all runs: empty table and plot."""
        if self._busy:
            self._say("A run is in progress; wait for it to finish.", "error")
            return
        self.results.clear()
        self.histories.clear()
        self.plot.clear_output()
        self._render_table()
        self._say("Cleared.")

    def table_text(self, seconds=False):
        """The results as fixed-width text (``seconds=False`` leaves out the timing column)."""
        cols = COLUMNS if seconds else COLUMNS[:-1]
        rows = [self._cells(r)[:len(cols)] for r in self.results]
        widths = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c)
                  for i, c in enumerate(cols)]
        lines = ["  ".join(c.ljust(n) for c, n in zip(cols, widths)).rstrip()]
        lines += ["  ".join(v.ljust(n) for v, n in zip(r, widths)).rstrip() for r in rows]
        return "\n".join(lines)

    @staticmethod
    def _cells(r):
        return [r["strategy"], str(r["shots"]), f"{r['learning_rate']:.0e}", str(r["epochs"]),
                str(r["seed"]), f"{r['accuracy']:.1%}", f"{r['macro_f1']:.1%}",
                f"{r['trainable_params']:,}", f"{r['seconds']:.1f}"]

    def _render_table(self):
        head = "".join(f"<th>{c}</th>" for c in COLUMNS)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in self._cells(r))
                       + "</tr>" for r in self.results)
        self.table.value = (f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody>"
                            "</table>")
