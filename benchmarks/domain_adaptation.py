#!/usr/bin/env python
"""Does adapting BatchNorm rescue transfer under a domain shift?

Source: ``tk.source_model()`` (the cached letters model).  Target: ``tk.target_task()``
digits, shifted with ``tk.shift_task(task, kind)`` for each kind of ``tk.SHIFT_KINDS``
(and unshifted, ``none``).  For every shift and seed, ``tk.few_shot(task.train, k, seed)``
labelled images train (k = 10 per class); the whole shifted training pool, labels unused,
is the unlabelled target data that ``bn_mode="adapt"`` re-estimates BatchNorm on.  Every
run is ``tk.run_strategy`` with the kit's defaults (12 epochs, head rate 1e-2, fine-tuning
at 3/100 of it), no validation pass, scored on the shifted test split (1,000 images):

  scratch                       run_strategy("scratch")
  feature extraction, frozen    run_strategy("feature_extraction")              (bn_mode="frozen")
  feature extraction, adapt     run_strategy("feature_extraction", bn_mode="adapt")
  fine-tune all, frozen / adapt / train
                                run_strategy("fine_tune_all", bn_mode=...)

Feature extraction under ``bn_mode="train"`` is the frozen run (no block opens, so no
BatchNorm layer trains) and is not repeated.

    python -m benchmarks.domain_adaptation                  # all shifts, seeds 0, 1, 2
    python -m benchmarks.domain_adaptation --shifts none inverted --seeds 1

Checks (issue 14), per shift at 10 shots: the best adaptation method (AdaBN, BatchNorm
training, or fine-tuning at 1e-3 with it) beats plain feature extraction by >= 5 points and
is not below scratch.

Writes benchmarks/results/domain_adaptation.{json,csv} atomically (config, device, commit,
every run, mean ± sample std per shift and method, the checks); ``--summarise FILE``
recomputes the summary and checks of a saved result without training.
"""
from __future__ import annotations

import argparse
import gc
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import _run
from benchmarks._run import sha256
from benchmarks.transfer_gain import snapshot_source

HERE = Path(__file__).resolve().parent
SHIFTS = ("none", "inverted", "rotated", "noisy", "restyled")
METHODS = {  # key: (strategy, bn_mode)
    "scratch": ("scratch", "frozen"),
    "fe_frozen": ("feature_extraction", "frozen"),
    "fe_adapt": ("feature_extraction", "adapt"),
    "ft_frozen": ("fine_tune_all", "frozen"),
    "ft_adapt": ("fine_tune_all", "adapt"),
    "ft_train": ("fine_tune_all", "train"),
    # run_strategy(..., finetune_lr=1e-3): the backbone 10x slower than the head instead of
    # 33x, the features must move further under a shift than on the source's own domain
    "ft_train_fast": ("fine_tune_all", "train", 1e-3),
}
LABELS = {"scratch": "scratch", "fe_frozen": "feature extr., BN frozen",
          "fe_adapt": "feature extr., AdaBN", "ft_frozen": "fine-tune all, BN frozen",
          "ft_adapt": "fine-tune all, AdaBN", "ft_train": "fine-tune all, BN trains",
          "ft_train_fast": "fine-tune all, BN trains, 1e-3"}


def run_one(tk, keras, method, weights, task, k, seed, methods=METHODS):
    """One ``run_strategy`` run of ``methods[method]`` (strategy, bn_mode), scored on the test
    split; the unlabelled images of ``bn_mode="adapt"`` are the whole training pool."""
    keras.backend.clear_session()
    gc.collect()
    strategy, bn_mode, *finetune_lr = methods[method]
    train = tk.few_shot(task.train, k, seed)
    unlabelled = task.train.x if bn_mode == "adapt" else None
    start = time.perf_counter()
    # finetune_lr: the same two-phase recipe as tk.fine_tune(..., finetune_lr=) by hand, weight
    # for weight (tests/test_batchnorm_modes.py), which the committed results were run with
    run = tk.run_strategy(strategy, train, None, task.num_classes,
                          source_weights=None if strategy == "scratch" else weights,
                          seed=seed, bn_mode=bn_mode, unlabelled=unlabelled,
                          finetune_lr=finetune_lr[0] if finetune_lr else None)
    scores = tk.evaluate(run.model, task.test)
    return {"method": method, "strategy": strategy, "bn_mode": bn_mode, "seed": seed,
            "shots": k, "accuracy": scores.accuracy, "macro_f1": scores.f1,
            "epochs": run.history.epochs, "unlabelled_images": 0 if unlabelled is None
            else len(unlabelled), "seconds": time.perf_counter() - start}


def summarise(rows, by="shift", methods=METHODS):
    """Mean and sample std of the accuracy per value of ``by`` (in run order) and method."""
    out = []
    for value in dict.fromkeys(r[by] for r in rows):
        for method in methods:
            acc = [r["accuracy"] for r in rows if r[by] == value and r["method"] == method]
            if acc:
                out.append({by: value, "method": method, "n": len(acc),
                            "accuracy_mean": statistics.fmean(acc),
                            "accuracy_std": statistics.stdev(acc) if len(acc) > 1
                            else float("nan")})
    return out


def table(summary):
    methods = [m for m in METHODS if any(s["method"] == m for s in summary)]
    head = f"{'shift':<10}" + "".join(f"{LABELS[m]:>32}" for m in methods)
    lines = [head]
    for shift in dict.fromkeys(s["shift"] for s in summary):
        cells = []
        for m in methods:
            s = next((s for s in summary if s["shift"] == shift and s["method"] == m), None)
            if s is None:
                cells.append(f"{'-':>32}")
                continue
            std = "-" if math.isnan(s["accuracy_std"]) else f"{100 * s['accuracy_std']:.1f}"
            cells.append(f"{100 * s['accuracy_mean']:.1f} ± {std}".rjust(32))
        lines.append(f"{shift:<10}" + "".join(cells))
    return "\n".join(lines)


ADAPTATION = ("fe_adapt", "ft_adapt", "ft_train", "ft_train_fast")  # the remedies
CHECK_GAIN = 5  # points over plain feature extraction, issue 14


def checks(summary):
    """Per shift: the best adaptation method beats plain feature extraction (BN frozen) by
    >= CHECK_GAIN points and is not below scratch (means over seeds)."""
    out = []
    for shift in dict.fromkeys(s["shift"] for s in summary):
        if shift == "none":
            continue
        here = {s["method"]: s["accuracy_mean"] for s in summary if s["shift"] == shift}
        adapted = {m: here[m] for m in ADAPTATION if m in here}
        if not adapted or "fe_frozen" not in here or "scratch" not in here:
            continue
        best = max(adapted, key=adapted.get)
        gain = 100 * (adapted[best] - here["fe_frozen"])
        over_scratch = 100 * (adapted[best] - here["scratch"])
        out.append({"shift": shift, "best": best, "gain_over_feature_extraction": gain,
                    "over_scratch": over_scratch,
                    "status": "PASS" if gain >= CHECK_GAIN and over_scratch >= 0 else "FAIL"})
    return out


def print_checks(verdicts):
    for v in verdicts:
        print(f"{v['status']}  {v['shift']:<9} best adaptation {LABELS[v['best']]}: "
              f"{v['gain_over_feature_extraction']:+.1f} points over feature extraction "
              f"(>= {CHECK_GAIN}), {v['over_scratch']:+.1f} over scratch (>= 0)")


FIELDS = ("shift", "method", "strategy", "bn_mode", "seed", "shots", "accuracy", "macro_f1",
          "epochs", "unlabelled_images", "seconds")


def to_csv(rows):
    return _run.to_csv(rows, FIELDS)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shifts", nargs="+", choices=SHIFTS, default=list(SHIFTS))
    p.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS))
    p.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 (default 3)")
    p.add_argument("--shots", type=int, default=10, help="labelled images per class (default 10)")
    p.add_argument("--out", type=Path, default=HERE / "results")
    p.add_argument("--name", default="domain_adaptation")
    p.add_argument("--summarise", type=Path, metavar="JSON",
                   help="train nothing: recompute the summary and checks of a saved result "
                        "and rewrite it")
    args = p.parse_args(argv)
    if args.seeds < 1 or args.shots < 1:
        p.error("--seeds and --shots must be >= 1")
    return args


def resummarise(path):
    from transferkit.files import write_text  # the kit's atomic writer (no Keras needed)

    result = json.loads(path.read_text())
    result["summary"] = summarise(result["runs"])
    result["checks"] = checks(result["summary"])
    print(table(result["summary"]))
    print_checks(result["checks"])
    write_text(path, json.dumps(result, indent=1) + "\n")
    return 0


def main(argv=None):
    args = parse_args(argv)
    if args.summarise:
        return resummarise(args.summarise)
    run = _run.start("domain_adaptation")  # before the kit loads: the clock, the code that ran
    import transferkit as tk  # first: portable numerics before NumPy and TensorFlow load
    import keras

    print(tk.describe_device())
    src = tk.source_model()
    folder = tempfile.TemporaryDirectory(prefix="domain_adaptation-")
    weights = snapshot_source(tk, src, Path(folder.name))
    base = tk.target_task()
    rows = []
    total = len(args.shifts) * args.seeds * len(args.methods)
    for shift in args.shifts:
        task = base if shift == "none" else tk.data.shift_task(base, shift)
        for seed in range(args.seeds):
            for method in args.methods:
                row = {"shift": shift, **run_one(tk, keras, method, weights, task, args.shots,
                                                 seed)}
                rows.append(row)
                print(f"[{len(rows):>3}/{total}] {shift:<9} seed={seed} {LABELS[method]:<32} "
                      f"accuracy {100 * row['accuracy']:5.1f}%  {row['seconds']:5.1f} s",
                      flush=True)
    summary = summarise(rows)
    print(f"\nTest accuracy (%), {args.shots} shots per class, mean ± sample std over "
          f"{args.seeds} seed(s):")
    print(table(summary))
    verdicts = checks(summary)
    print_checks(verdicts)
    run.finish(tk, args.out, {
        "config": {"shifts": args.shifts, "methods": {m: METHODS[m] for m in args.methods},
                   "methods_note": "(strategy, bn_mode[, fine-tuning rate via tk.fine_tune])",
                   "seeds": list(range(args.seeds)), "shots": args.shots,
                   "unlabelled": "the shifted training pool, labels unused",
                   "test_images": len(base.test)},
        "source": {"weights": src.weights_path.name, "snapshot_sha256": sha256(weights)},
        "summary": summary, "checks": verdicts, "runs": rows,
    }, name=args.name, csv_rows=rows, csv_fields=FIELDS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
