"""Strategy-lab timings: one run per strategy at the panel's defaults, the default sweep,
and the kit's training loop with the panel's live display (curves rendered into the
panel's ``ipywidgets.Image`` at its frame rate, progress bar) against a bare ``model.fit``.

    python -m benchmarks.lab            # prints a table, writes benchmarks/results/lab.json

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
from transferkit.lab import FRAME_INTERVAL, PLOT, _Progress
from transferkit.curves import LiveCurves

RESULTS = Path(__file__).resolve().parent / "results"


def panel_callbacks(epochs):
    """What a lab run adds to training: live curves sent into an Image widget, progress."""
    import ipywidgets as w
    image, bar, text = w.Image(format="png"), w.FloatProgress(), w.HTML()
    frames = []

    def show_frame(png):
        image.value = png
        frames.append(len(png))

    def show_progress(fraction, line):
        bar.value, text.value = fraction, line

    curves = LiveCurves("kit", epochs=epochs, min_interval=FRAME_INTERVAL,
                        on_frame=show_frame, **PLOT)
    return [curves, _Progress(show_progress, ["all layers"], [epochs])], frames


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

    bare, kit, frames = [], [], []
    for _ in range(repeats):
        m = model()
        t = time.perf_counter()
        m.fit(x, y, validation_data=(task.val.x, task.val.y), epochs=12, batch_size=32,
              verbose=0)
        bare.append(time.perf_counter() - t)
        m = model()
        t = time.perf_counter()
        callbacks, sent = panel_callbacks(12)
        tk.fit(m, train, task.val, epochs=12, batch_size=32, repeat=repeat,
               callbacks=callbacks)
        kit.append(time.perf_counter() - t)
        frames.append(len(sent))
    return min(bare), min(kit), frames


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
    # what the Run button does: the same run in a worker thread; then Stop mid-run
    lab.strategy.value = "fine_tune_top"
    t = time.perf_counter()
    lab.start()
    lab.wait()
    rows.append({"what": "Run button (worker thread): fine_tune_top",
                 "seconds": time.perf_counter() - t, "accuracy": lab.results[-1]["accuracy"],
                 "budget": 10.0})
    lab.epochs.value = 40
    lab.start()
    while lab.curves.current.epochs < 2:
        time.sleep(0.01)
    t = time.perf_counter()
    lab.stop()
    lab.wait()
    rows.append({"what": "Stop: from the click to the panel free again",
                 "seconds": time.perf_counter() - t, "budget": 2.0})
    t = time.perf_counter()
    sweep = tk.sweep(["scratch", "feature_extraction"], task, shots=(1, 2, 5, 10, 20, 40),
                     source_weights=source.weights_path, epochs=6)
    rows.append({"what": "default sweep (2 strategies x 6 sizes)",
                 "seconds": time.perf_counter() - t, "budget": 60.0})
    bare, kit, frames = bare_vs_kit(task, source, args.repeats)
    overhead = kit / bare - 1
    print(f"\n{'what':<44}{'seconds':>9}  budget")
    for r in rows:
        verdict = "PASS" if r["seconds"] <= r["budget"] else "FAIL"
        print(f"{r['what']:<44}{r['seconds']:>9.1f}  <= {r['budget']:.0f} s  {verdict}")
    print(f"{'bare model.fit, 12 epochs (best of %d)' % args.repeats:<44}{bare:>9.2f}")
    what = "tk.fit + the panel's live display, same job"
    print(f"{what:<44}{kit:>9.2f}"
          f"  ({min(frames)}-{max(frames)} frames per run)")
    print(f"{'overhead':<44}{overhead:>8.1%}   <= 10 %  {'PASS' if overhead <= 0.10 else 'FAIL'}")
    RESULTS.mkdir(exist_ok=True)
    out = {"device": tk.device_report(), "loadavg": os.getloadavg(), "runs": rows,
           "sweep": sweep, "bare_fit_seconds": bare, "kit_fit_seconds": kit, "frames": frames,
           "overhead": overhead}
    from transferkit.files import json_safe as clean, write_text as write_atomic
    write_atomic(RESULTS / "lab.json", json.dumps(clean(out), indent=1) + "\n")
    print(f"wrote {RESULTS / 'lab.json'}")


if __name__ == "__main__":
    sys.exit(main())
