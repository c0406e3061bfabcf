"""Strategy-lab timings: one run per strategy at the panel's defaults, the default sweep,
and the kit's training loop with live curves against a bare ``model.fit``.

    python benchmarks/lab.py            # prints a table, writes benchmarks/results/lab.json

Budgets (issue: strategy lab): one run at default settings <= 10 s, the default sweep
<= 60 s, live-plotting overhead <= 10 % — on a 2-core CPU.  Timings, so run it on an
otherwise idle machine; it never fails a test suite, it reports PASS/FAIL lines.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import transferkit as tk
from transferkit.plots import LiveCurves

RESULTS = Path(__file__).resolve().parent / "results"


class AlwaysLive(LiveCurves):
    """LiveCurves as in Jupyter (every update rendered and PNG-encoded), with no front end."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._live = True
        self.png_bytes = 0

    def _publish(self, png):
        self.png_bytes += len(png)


def bare_vs_kit(task, source, repeats=3):
    """Same model, data and epochs: keras model.fit vs tk.fit + live curves (best of N)."""
    import keras
    train = tk.few_shot(task.train, 10, 0)
    repeat = tk.repeat_for(len(train))
    x = train.x.repeat(repeat, axis=0)
    y = train.y.repeat(repeat, axis=0)

    def model():
        tk.set_seed(0)
        m = tk.build_model(task.num_classes)
        tk.compile_model(m, 1e-2)
        m.fit(x[:32], y[:32], epochs=1, verbose=0)  # build the training step outside the timing
        return m

    bare, kit = [], []
    for _ in range(repeats):
        m = model()
        t = time.perf_counter()
        m.fit(x, y, validation_data=(task.val.x, task.val.y), epochs=12, batch_size=32,
              verbose=0)
        bare.append(time.perf_counter() - t)
        m = model()
        t = time.perf_counter()
        tk.fit(m, train, task.val, epochs=12, batch_size=32, repeat=repeat,
               callbacks=[AlwaysLive("kit")])
        kit.append(time.perf_counter() - t)
    return min(bare), min(kit)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    source = tk.source_model()
    task = tk.target_task()
    rows = []
    lab = tk.StrategyLab(source, task)
    for key in tk.STRATEGIES:
        t = time.perf_counter()
        row = lab.run(strategy=key)
        rows.append({"what": f"lab run: {key}", "seconds": time.perf_counter() - t,
                     "accuracy": row["accuracy"], "budget": 10.0})
    t = time.perf_counter()
    sweep = tk.sweep(["scratch", "feature_extraction"], task, shots=(1, 2, 5, 10, 20, 40),
                     source_weights=source.weights_path, epochs=6)
    rows.append({"what": "default sweep (2 strategies x 6 sizes)",
                 "seconds": time.perf_counter() - t, "budget": 60.0})
    bare, kit = bare_vs_kit(task, source, args.repeats)
    overhead = kit / bare - 1
    print(f"\n{'what':<44}{'seconds':>9}  budget")
    for r in rows:
        verdict = "PASS" if r["seconds"] <= r["budget"] else "FAIL"
        print(f"{r['what']:<44}{r['seconds']:>9.1f}  <= {r['budget']:.0f} s  {verdict}")
    print(f"{'bare model.fit, 12 epochs (best of %d)' % args.repeats:<44}{bare:>9.2f}")
    print(f"{'tk.fit + live curves, same job':<44}{kit:>9.2f}")
    print(f"{'overhead':<44}{overhead:>8.1%}   <= 10 %  {'PASS' if overhead <= 0.10 else 'FAIL'}")
    RESULTS.mkdir(exist_ok=True)
    out = {"device": tk.device_report(), "loadavg": os.getloadavg(), "runs": rows,
           "sweep": sweep, "bare_fit_seconds": bare, "kit_fit_seconds": kit,
           "overhead": overhead}
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _results import clean, write_atomic
    write_atomic(RESULTS / "lab.json", json.dumps(clean(out), indent=1) + "\n")
    print(f"wrote {RESULTS / 'lab.json'}")


if __name__ == "__main__":
    sys.exit(main())
