"""How fast the command line answers when it has nothing to train: --help and argument errors.

    python -m benchmarks.cli                 # 7 runs of each case; prints a table
    python -m benchmarks.cli --runs 20 --no-import

Each case is a fresh ``python -m transferkit ...`` process, timed from start to exit
(wall clock), as a learner typing the command sees it.  The command line parses and
checks its arguments, the environment, the cache and the output folder *before* it
imports Keras and the backend, so these should take well under a second; for scale, the
last row times ``python -c "import transferkit"`` (Keras + TensorFlow), once, unless
``--no-import``.  Writes ``benchmarks/results/cli.csv`` and ``cli.json`` (with the CPU,
Python version and the load average at start and end: run on an otherwise idle machine).
"""
from __future__ import annotations

import argparse
import csv
import datetime as _dt
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

CASES = {
    "--help": (["--help"], 0),
    "run --shots 0": (["run", "--shots", "0"], 2),
    "run --epochs 1 (fine_tune_top)": (["run", "--strategy", "fine_tune_top", "--epochs", "1"], 2),
    "run --out <a file>": (["run", "--out", "{file}"], 2),
}


def cpu_model():
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def time_once(argv, expected, cwd):
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=120)
    seconds = time.perf_counter() - start
    if proc.returncode != expected:
        raise SystemExit(f"{argv}: exit status {proc.returncode}, expected {expected}:\n"
                         f"{proc.stderr[-2000:]}")
    return seconds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="runs per case (default 7)")
    parser.add_argument("--no-import", action="store_true",
                        help="skip the one timing of the full kit import (10-15 s)")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)

    load_start = os.getloadavg() if hasattr(os, "getloadavg") else None
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        blocker = Path(tmp) / "a-file"
        blocker.write_text("")
        for name, (case, expected) in CASES.items():
            command = [sys.executable, "-m", "transferkit",
                       *(a.format(file=blocker) for a in case)]
            time_once(command, expected, tmp)  # warm the file cache; not counted
            times = [time_once(command, expected, tmp) for _ in range(args.runs)]
            rows.append({"case": f"python -m transferkit {name}", "runs": len(times),
                         "exit_status": expected, "median_s": statistics.median(times),
                         "min_s": min(times), "max_s": max(times)})
        if not args.no_import:
            seconds = time_once([sys.executable, "-c", "import transferkit"], 0, tmp)
            rows.append({"case": 'python -c "import transferkit" (for scale)', "runs": 1,
                         "exit_status": 0, "median_s": seconds, "min_s": seconds,
                         "max_s": seconds})

    width = max(len(r["case"]) for r in rows)
    print(f"{'case':<{width}}  runs  median    min     max")
    for r in rows:
        print(f"{r['case']:<{width}}  {r['runs']:>4}  {r['median_s']:6.3f}s {r['min_s']:6.3f}s "
              f"{r['max_s']:6.3f}s")

    machine = {"cpu": cpu_model(), "cpu_cores": os.cpu_count(),
               "python": platform.python_version(), "platform": platform.platform(),
               "load_average_start": load_start,
               "load_average_end": os.getloadavg() if hasattr(os, "getloadavg") else None,
               "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    print(f"on {machine['cpu']} ({machine['cpu_cores']} cores), Python {machine['python']}, "
          f"load average {machine['load_average_start']} -> {machine['load_average_end']}")
    from transferkit.files import json_safe as clean, write_text as write_atomic  # Keras: only now
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(args.out / "cli.csv", buffer.getvalue())
    write_atomic(args.out / "cli.json", json.dumps(clean({"machine": machine, "results": rows}),
                                                   indent=1) + "\n")
    print(f"wrote {args.out / 'cli.csv'}, {args.out / 'cli.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
