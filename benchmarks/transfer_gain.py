#!/usr/bin/env python
"""How much does transfer help on the kit's default offline task pair?

Source: ``tk.source_model()`` (the cached letters model; trained on first use).
Target: ``tk.target_task()`` digits, ``tk.few_shot(task.train, k, seed)`` for
training, ``task.val`` for validation and ``task.test`` (1,000 images) for scoring.

For every k and seed three strategies run with the notebooks' settings:

  scratch   tk.train_from_scratch(train, val, 10, epochs=12, seed=seed, repeat=r)
  feature   build, load the source weights, freeze the backbone, train the head
            (lr 1e-2, 8 epochs)
  finetune  build, load, tk.fine_tune(head 8 epochs at 1e-2, then top block 6 at 3e-4)

with r = tk.repeat_for(len(train)).  Each model is scored with ``tk.evaluate``
(accuracy, macro F1).  The check: the best transfer strategy beats scratch by at
least 10 accuracy points (mean over 3 seeds) at some k <= 10.

    python -m benchmarks.transfer_gain              # k = 1, 5, 10; seeds 0, 1, 2
    python -m benchmarks.transfer_gain --quick      # k = 5, seed 0 (smoke test)

Writes benchmarks/results/transfer_gain.json (config, device, every run, summary,
verdict) and transfer_gain.csv (one row per run); --quick writes
transfer_gain_quick.{json,csv} instead.  Exit status 1 when the check
fails with the full 3 seeds, 0 otherwise.
"""
from __future__ import annotations

import argparse
import gc
import math
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import _run
from benchmarks._run import sha256

HERE = Path(__file__).resolve().parent
STRATEGIES = ("scratch", "feature", "finetune")
LABELS = {"scratch": "from scratch", "feature": "feature extraction", "finetune": "fine-tuning"}
CRITERION_SEEDS = 3      # the check is defined on the mean of 3 seeds
CRITERION_MAX_K = 10     # ... at some k <= 10


# --------------------------------------------------------------------------- files




# --------------------------------------------------------------------------- runs
def snapshot_source(tk, src, folder: Path):
    """A private copy of the source weights that every run loads from.

    The shared cache may be deleted or rebuilt by other work (a notebook, a test)
    while the benchmark runs; the copy keeps all 27 runs on one, unchanging file.
    Copies the cached file byte for byte, else saves the weights ``src`` holds.
    """
    target = folder / "source.weights.h5"
    try:
        shutil.copyfile(src.weights_path, target)
    except OSError:
        tk.save_weights(src.model, target)
    return target


def run_one(tk, keras, strategy, weights, task, train, k, seed):
    """Train one model with ``strategy``; returns a dict of scores and timings."""
    keras.backend.clear_session()  # fresh graph state per run: no slowdown over the loop
    gc.collect()
    repeat = tk.repeat_for(len(train))
    load = None
    start = time.perf_counter()
    if strategy == "scratch":
        model, history = tk.train_from_scratch(train, task.val, 10, epochs=12, seed=seed,
                                               repeat=repeat)
    else:
        tk.set_seed(seed)
        model = tk.build_model(10, name="target")
        load = tk.load_matching_weights(model, weights)
        if strategy == "feature":
            tk.freeze(model)
            tk.compile_model(model, 1e-2)
            history = tk.fit(model, train, task.val, epochs=8, repeat=repeat)
        else:
            history = tk.fine_tune(model, train, task.val, head_epochs=8, finetune_epochs=6,
                                   head_lr=1e-2, finetune_lr=3e-4, unfreeze_top=1,
                                   repeat=repeat)
    trained = time.perf_counter()
    scores = tk.evaluate(model, task.test)
    end = time.perf_counter()
    row = {
        "shots": k, "seed": seed, "strategy": strategy,
        "accuracy": scores.accuracy, "macro_f1": scores.f1,
        "macro_precision": scores.precision, "macro_recall": scores.recall,
        "final_val_accuracy": history.last("val_accuracy"),
        "epochs": history.epochs, "repeat": repeat, "train_examples": len(train),
        "seconds": end - start, "train_seconds": trained - start,
        "fit_seconds": history.seconds, "eval_seconds": end - trained,
        "layers_loaded": len(load.loaded) if load else 0,
        "layers_skipped": sorted(load.skipped) if load else [],
    }
    del model
    return row


def summarise(rows, shots):
    summary = []
    for k in shots:
        for strategy in STRATEGIES:
            sel = [r for r in rows if r["shots"] == k and r["strategy"] == strategy]
            if not sel:
                continue
            acc = [r["accuracy"] for r in sel]
            f1 = [r["macro_f1"] for r in sel]
            summary.append({
                "shots": k, "strategy": strategy, "seeds": [r["seed"] for r in sel],
                "n": len(sel),
                "accuracy_mean": statistics.fmean(acc),
                "accuracy_std": statistics.stdev(acc) if len(acc) > 1 else float("nan"),
                "macro_f1_mean": statistics.fmean(f1),
                "macro_f1_std": statistics.stdev(f1) if len(f1) > 1 else float("nan"),
                "seconds_mean": statistics.fmean(r["seconds"] for r in sel),
            })
    return summary


def gains(summary, shots):
    out = []
    for k in shots:
        by = {s["strategy"]: s for s in summary if s["shots"] == k}
        if "scratch" not in by:
            continue
        transfer = [by[s] for s in ("feature", "finetune") if s in by]
        if not transfer:
            continue
        best = max(transfer, key=lambda s: s["accuracy_mean"])
        out.append({"shots": k, "best_transfer": best["strategy"],
                    "best_transfer_accuracy": best["accuracy_mean"],
                    "scratch_accuracy": by["scratch"]["accuracy_mean"],
                    "gain_points": 100.0 * (best["accuracy_mean"] - by["scratch"]["accuracy_mean"]),
                    "n_seeds": min(best["n"], by["scratch"]["n"])})
    return out


def verdict(gain_rows, threshold, n_seeds):
    eligible = [g for g in gain_rows if g["shots"] <= CRITERION_MAX_K]
    passed = [g for g in eligible if g["gain_points"] >= threshold]
    complete = bool(eligible) and n_seeds >= CRITERION_SEEDS
    best = max(eligible, key=lambda g: g["gain_points"]) if eligible else None
    return {
        "criterion": (f"best transfer beats scratch by >= {threshold:g} accuracy points "
                      f"(mean of {CRITERION_SEEDS} seeds) at some k <= {CRITERION_MAX_K}"),
        "passed": bool(passed),
        "complete": complete,
        "passing_shots": [g["shots"] for g in passed],
        "largest_gain_points": best["gain_points"] if best else None,
        "largest_gain_shots": best["shots"] if best else None,
        "note": None if complete else (
            f"indicative only: {n_seeds} seed(s) and k in {[g['shots'] for g in eligible]}; "
            f"the check needs {CRITERION_SEEDS} seeds and some k <= {CRITERION_MAX_K}"),
    }


# --------------------------------------------------------------------------- output
def table(summary, gain_rows, check):
    lines = [f"{'shots':>5}  {'strategy':<19}{'accuracy':>17}{'macro F1':>17}{'s/run':>8}"]
    for s in summary:
        std = "    -" if math.isnan(s["accuracy_std"]) else f"{100 * s['accuracy_std']:5.1f}"
        fstd = "    -" if math.isnan(s["macro_f1_std"]) else f"{100 * s['macro_f1_std']:5.1f}"
        lines.append(f"{s['shots']:>5}  {LABELS[s['strategy']]:<19}"
                     f"{100 * s['accuracy_mean']:8.1f} ± {std}%"
                     f"{100 * s['macro_f1_mean']:8.1f} ± {fstd}%"
                     f"{s['seconds_mean']:8.1f}")
    lines.append("")
    lines.append("Gain of the best transfer strategy over scratch (accuracy points, mean over seeds):")
    for g in gain_rows:
        lines.append(f"  k={g['shots']:<3} {LABELS[g['best_transfer']]:<19} "
                     f"{100 * g['best_transfer_accuracy']:5.1f}% vs scratch "
                     f"{100 * g['scratch_accuracy']:5.1f}%  ->  {g['gain_points']:+5.1f} points")
    lines.append("")
    status = "PASS" if check["passed"] else "FAIL"
    where = (f" (k = {', '.join(map(str, check['passing_shots']))})"
             if check["passing_shots"] else "")
    lines.append(f"{status}: {check['criterion']}{where}")
    if check["note"]:
        lines.append(f"      {check['note']}")
    return "\n".join(lines)


CSV_FIELDS = ("shots", "seed", "strategy", "accuracy", "macro_f1", "macro_precision",
              "macro_recall", "final_val_accuracy", "epochs", "repeat", "train_examples",
              "seconds", "train_seconds", "fit_seconds", "eval_seconds", "layers_loaded",
              "layers_skipped")


def to_csv(rows):
    return _run.to_csv(rows, CSV_FIELDS)


# --------------------------------------------------------------------------- main
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shots", type=int, nargs="+", default=[1, 5, 10], metavar="K",
                   help="examples per class to train on (default: 1 5 10)")
    p.add_argument("--seeds", type=int, default=3,
                   help="number of seeds, 0..N-1 (default: 3)")
    p.add_argument("--strategies", nargs="+", choices=STRATEGIES, default=list(STRATEGIES))
    p.add_argument("--threshold", type=float, default=10.0,
                   help="required gain in accuracy points (default: 10)")
    p.add_argument("--quick", action="store_true", help="smoke test: k=5 and one seed")
    p.add_argument("--out", type=Path, default=HERE / "results",
                   help="results folder (default: benchmarks/results)")
    p.add_argument("--name", default=None,
                   help="file stem of the results (default: transfer_gain, or "
                        "transfer_gain_quick with --quick so a smoke test never "
                        "overwrites a full run)")
    args = p.parse_args(argv)
    if args.quick:
        args.shots, args.seeds = [5], 1
    if args.name is None:
        args.name = "transfer_gain_quick" if args.quick else "transfer_gain"
    if args.seeds < 1 or any(k < 1 for k in args.shots):
        p.error("--seeds and --shots must be >= 1")
    args.shots = sorted(set(args.shots))
    return args


def main(argv=None):
    args = parse_args(argv)
    run = _run.start("transfer_gain")

    import transferkit as tk  # first: portable numerics before NumPy and TensorFlow load
    import keras

    print(tk.describe_device())
    from transferkit.source import source_paths
    source_cached = all(p.exists() for p in source_paths())  # else the run trains it first
    src = tk.source_model()
    snapshot_dir = tempfile.TemporaryDirectory(prefix="transfer_gain-")
    weights = snapshot_source(tk, src, Path(snapshot_dir.name))
    task = tk.target_task()
    print(f"source: {src}\ntarget: {task}")
    seeds = list(range(args.seeds))
    total = len(args.shots) * len(seeds) * len(args.strategies)
    rows, n = [], 0
    for k in args.shots:
        for seed in seeds:
            train = tk.few_shot(task.train, k, seed)
            for strategy in args.strategies:
                n += 1
                row = run_one(tk, keras, strategy, weights, task, train, k, seed)
                rows.append(row)
                print(f"[{n:>2}/{total}] k={k:<3} seed={seed} {LABELS[strategy]:<19} "
                      f"accuracy {100 * row['accuracy']:5.1f}%  macro F1 "
                      f"{100 * row['macro_f1']:5.1f}%  {row['seconds']:6.1f} s", flush=True)

    summary = summarise(rows, args.shots)
    gain_rows = gains(summary, args.shots)
    check = verdict(gain_rows, args.threshold, len(seeds))
    print()
    print(table(summary, gain_rows, check))

    run.finish(tk, args.out, {
        "config": {"shots": args.shots, "seeds": seeds, "strategies": args.strategies,
                   "quick": args.quick, "threshold_points": args.threshold,
                   "test_images": len(task.test), "val_images": len(task.val)},
        "source": {"weights": src.weights_path.name, "test_accuracy": src.info["test_accuracy"],
                   "key": src.info.get("key"), "cached_before_run": source_cached,
                   "snapshot_sha256": sha256(weights)},
        "summary": summary, "gains": gain_rows, "check": check, "runs": rows,
    }, name=args.name, csv_rows=rows, csv_fields=CSV_FIELDS)
    return 1 if check["complete"] and not check["passed"] else 0


if __name__ == "__main__":
    sys.exit(main())
