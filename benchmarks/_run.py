"""What every benchmark does at its start and at its end, written once.

    run = start("coral")                     # before transferkit loads: the clock, the load,
    import transferkit as tk                 # the code that runs (git commit)
    ...
    run.finish(tk, out, {"config": ..., "summary": ..., "runs": rows},
               csv_rows=rows, fields=FIELDS, markdown=lines)

``finish`` puts the same header on every result (benchmark, started, wall seconds, load
average before and after, the device, the kit's version and commit), then writes
``<out>/<name>.json`` (and ``.csv`` / ``.md`` when given) with the kit's atomic writer
(``transferkit.files``): an interrupted benchmark leaves the last complete result, never half
of a new one.  Only the standard library is imported here, so ``start`` runs before Keras.
"""
from __future__ import annotations

import csv
import datetime as _dt
import hashlib
import io
import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"

__all__ = ["RESULTS", "Run", "git_commit", "sha256", "start", "to_csv"]


def git_commit(repo: Path = HERE.parent):
    """The short commit of ``repo``, ``+dirty`` when transferkit/ has changes; None without git."""
    try:
        out = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--",
                                "transferkit"], capture_output=True, text=True, timeout=10)
        return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "") or None
    except (OSError, subprocess.SubprocessError):
        return None


def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def to_csv(rows, fields):
    """``rows`` (dicts) as CSV text with the columns ``fields``; lists joined by spaces."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(fields), lineterminator="\n",
                            extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: " ".join(map(str, v)) if isinstance(v, (list, tuple)) else v
                         for k, v in row.items()})
    return buf.getvalue()


def _load():
    return os.getloadavg() if hasattr(os, "getloadavg") else None


@dataclass
class Run:
    """One benchmark run from ``start``: when it began, the load then, the code that ran."""

    name: str
    started: _dt.datetime
    t0: float
    load_start: tuple
    commit: str | None

    @property
    def seconds(self):
        return time.perf_counter() - self.t0

    def header(self, tk):
        """The fields every result begins with."""
        return {"benchmark": self.name, "started": self.started.isoformat(timespec="seconds"),
                "wall_seconds": self.seconds, "loadavg_start": self.load_start,
                "loadavg_end": _load(), "device": tk.device_report(),
                "transferkit": {"version": tk.__version__, "commit": self.commit}}

    def finish(self, tk, out, fields, *, name=None, csv_rows=None, csv_fields=None,
               markdown=None):
        """Write ``<out>/<name>.json`` (the header, then ``fields``), and ``.csv`` from
        ``csv_rows`` / ``.md`` from ``markdown`` (lines under a title) when given; each file
        atomically.  Returns the result dict."""
        from transferkit.files import json_safe, write_text  # the kit's atomic writer

        name = name or self.name
        out = Path(out)
        result = {**self.header(tk), **fields}
        written = [out / f"{name}.json"]
        write_text(written[0], json.dumps(json_safe(result), indent=1) + "\n")
        if csv_rows is not None:
            written.append(out / f"{name}.csv")
            write_text(written[-1], to_csv(csv_rows, csv_fields or list(csv_rows[0])))
        if markdown is not None:
            device = result["device"]
            written.append(out / f"{name}.md")
            write_text(written[-1], f"# benchmarks/{self.name}.py\n\n{device['cpu']}, "
                       f"{device['cpu_cores']} cores, numerics {device['numerics']}, commit "
                       f"{self.commit}, {self.started:%Y-%m-%d}\n\n```\n"
                       + "\n".join(markdown) + "\n```\n")
        print(f"\nWrote {', '.join(str(p) for p in written)} ({result['wall_seconds']:.0f} s "
              "in all)")
        return result


def start(name):
    """Begin a benchmark: call it first, before transferkit (and Keras) load."""
    return Run(name, _dt.datetime.now().astimezone(), time.perf_counter(), _load(),
               git_commit())
