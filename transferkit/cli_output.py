"""What the command line prints and writes: one line per epoch on stderr, the table on
stdout, the CSV, JSON and PNG results under ``--out`` (all three or none)."""
from __future__ import annotations

import contextlib
import csv
import json
import os
import sys
from pathlib import Path

from .cli_args import OUTPUTS
from .files import save_atomically

__all__ = ["epoch_line", "table", "write_results"]


# --------------------------------------------------------------------------- output
def epoch_line(label):
    """A Keras callback: one line per epoch on stderr (the table goes to stdout), counted
    across phases."""
    # here, not at the top: it loads Keras, which waits until the arguments are checked
    import keras

    class EpochLine(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.label = label
            self.epochs_done = 0

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            self.epochs_done += 1
            parts = [f"loss {logs['loss']:.3f}"] if "loss" in logs else []
            parts += [f"{k} {logs[k]:.1%}" for k in ("accuracy", "val_accuracy") if k in logs]
            print(f"  {self.label} epoch {self.epochs_done}: " + ", ".join(parts),
                  file=sys.stderr, flush=True)

    return EpochLine()


def table(rows, columns):
    """Rows of dicts as an aligned text table; fractions shown as percentages."""
    def cell(value, key):
        if key in ("accuracy", "macro_f1"):
            return f"{value:.1%}"
        if isinstance(value, float):
            return f"{value:.1f}"
        return str(value)
    cells = [[cell(r[c], c) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def write_results(out, stem, rows, settings, figure):
    """<stem>.csv, <stem>.json and <stem>.png in ``out``: all three or none.

    Each is written to a temporary file first; only when all three are whole are they
    renamed into place, so a full disk (or any failure) leaves no result file behind."""
    out = Path(out)
    paths = [out / f"{stem}.{suffix}" for suffix in OUTPUTS]

    def write_csv(tmp):
        with open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)

    def write_json(tmp):
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(json.dumps({"settings": settings, "results": rows}, indent=1))
            handle.flush()
            os.fsync(handle.fileno())

    writers = (write_csv, write_json, lambda tmp: figure.savefig(tmp, format="png", dpi=100))
    staged = []  # whole files under a hidden name beside their place, until all three are
    try:
        for write, path in zip(writers, paths):
            save_atomically(write, _staged(path))  # creates --out; one-line errors
            staged.append(path)
        for path in staged:
            os.replace(_staged(path), path)
    except BaseException:
        for path in staged:
            with contextlib.suppress(OSError):
                _staged(path).unlink(missing_ok=True)
        raise
    return paths


def _staged(path):
    return path.with_name(f".{path.name}.staged")
