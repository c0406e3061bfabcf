"""Speed cost of portable numerics: the same jobs with TRANSFERKIT_NUMERICS=native and =portable.

Each run is a fresh process (the settings are read when TensorFlow and NumPy load) that times
one job after the imports: ``fingerprint`` (``tk.numerics_fingerprint()``) or ``source`` (the
letters source model, cpu preset recipe cut to 2 epochs, trained from scratch, no cache).
Prints a table (min and median of the repeats) and writes benchmarks/results/numerics.json
and .csv.  Timings taken while other processes share the CPUs are noisy: read the minimum.

    python -m benchmarks.numerics [--repeats 3] [--jobs fingerprint source]
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
from transferkit.files import json_safe as clean, write_text as write_atomic  # noqa: E402

JOB = """
import json, time, transferkit as tk
from transferkit import _numerics
job = {job!r}
start = time.perf_counter()
if job == "fingerprint":
    result = str(tk.numerics_fingerprint())
else:
    recipe = dict(tk.SOURCE_RECIPE, epochs=2)
    model, history, scores = tk.source.train_source_model(recipe=recipe)
    result = f"test accuracy {{scores.accuracy:.4f}}"
seconds = time.perf_counter() - start
print("@@" + json.dumps({{"seconds": seconds, "result": result, "numerics": _numerics.label(),
                         "device": tk.describe_device()}}))
"""


def run(job, mode):
    env = {k: v for k, v in os.environ.items() if k not in
           ("ONEDNN_MAX_CPU_ISA", "TF_ENABLE_ONEDNN_OPTS", "TF_NUM_INTRAOP_THREADS",
            "TF_NUM_INTEROP_THREADS", "OPENBLAS_CORETYPE", "OPENBLAS_NUM_THREADS",
            "OMP_NUM_THREADS")}
    env["TRANSFERKIT_NUMERICS"] = mode
    out = subprocess.run([sys.executable, "-c", JOB.format(job=job)], env=env, text=True,
                         capture_output=True, check=True, cwd=HERE.parent).stdout
    return json.loads(next(l[2:] for l in out.splitlines() if l.startswith("@@")))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--jobs", nargs="+", default=["fingerprint", "source"],
                   choices=["fingerprint", "source"])
    args = p.parse_args(argv)
    rows = []
    for job in args.jobs:
        for repeat in range(args.repeats):
            for mode in ("native", "portable"):  # interleaved: drifting load hits both alike
                r = run(job, mode)
                rows.append({"job": job, "mode": mode, "repeat": repeat, **r})
                print(f"  {job:11s} {mode:8s} {r['seconds']:7.2f} s  {r['result']}", flush=True)
    summary = []
    for job in args.jobs:
        times = {m: [r["seconds"] for r in rows if r["job"] == job and r["mode"] == m]
                 for m in ("native", "portable")}
        s = {"job": job, **{f"{m}_{k}": f(times[m]) for m in times
                            for k, f in (("min_s", min), ("median_s", statistics.median))}}
        s["portable_over_native_min"] = s["portable_min_s"] / s["native_min_s"]
        s["portable_over_native_median"] = s["portable_median_s"] / s["native_median_s"]
        summary.append(s)
    print(f"\n{'job':12s} {'native min/median':>20s} {'portable min/median':>20s} {'cost (min)':>11s}")
    for s in summary:
        print(f"{s['job']:12s} {s['native_min_s']:9.2f} / {s['native_median_s']:6.2f} s "
              f"{s['portable_min_s']:9.2f} / {s['portable_median_s']:6.2f} s "
              f"{(s['portable_over_native_min'] - 1) * 100:+10.0f} %")
    device = rows[0]["device"] if rows else "?"
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    write_atomic(results / "numerics.json", json.dumps(clean(
        {"device": device, "cpu_count": os.cpu_count(), "repeats": args.repeats,
         "note": "fresh process per run, job timed after the imports; native and portable "
                 "interleaved; other processes may have shared the CPUs (read the minimum)",
         "summary": summary, "runs": rows}), indent=1) + "\n")
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=["job", "mode", "repeat", "seconds", "result", "numerics"],
                       extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    write_atomic(results / "numerics.csv", buf.getvalue())
    print(f"-> {results.relative_to(HERE.parent)}/numerics.json, numerics.csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
