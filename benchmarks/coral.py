#!/usr/bin/env python
"""Feature alignment without target labels: does CORAL carry a clean-trained probe to a shift?

The unsupervised setting of notebook 08's first section: labelled images only from the clean
domain (``tk.few_shot(tk.target_task().train, 10, seed)``), the shifted training pool (400
images) without labels, scored on the shifted test split (1,000 images).  Every method is a
linear probe (standardised logistic regression) on the frozen letters backbone's features
(``tk.source_model()``, ``tk.extract_features``), so only the alignment differs:

  probe          features as they are
  coral          the clean features re-coloured to the shifted pool's (``tk.coral``)
  adabn          BatchNorm statistics per domain: clean features through the source's
                 statistics, shifted ones through a copy adapted to the pool (``tk.adapt_batchnorm``)
  adabn+coral    both

    python -m benchmarks.coral                 # 4 shifts x 3 seeds (~1 min on 2 cores)

Writes benchmarks/results/coral.json (and the table, coral.md) atomically (config, device, commit, every run, mean ±
sample std per shift and method).
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from benchmarks._run import RESULTS, start

METHODS = ("probe", "coral", "adabn", "adabn+coral")


def probe_accuracy(train_features, labels, test_features, test_labels):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    return float(clf.fit(train_features, labels).score(test_features, test_labels))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    run = start("coral")
    import transferkit as tk  # first: portable numerics before NumPy and TensorFlow load

    print(tk.describe_device())
    weights = tk.source_model().weights_path
    clean = tk.target_task()
    source = tk.build_model(clean.num_classes, name="source")
    tk.load_matching_weights(source, weights)
    rows = []
    for kind in tk.SHIFT_KINDS:
        shifted = tk.shift_task(clean, kind)
        adapted = tk.build_model(clean.num_classes, name="adapted")
        tk.load_matching_weights(adapted, weights)
        tk.adapt_batchnorm(adapted, shifted.train.x)
        for seed in range(args.seeds):
            train = tk.few_shot(clean.train, 10, seed)
            for method in METHODS:
                target_model = adapted if method.startswith("adabn") else source
                fs = tk.extract_features(source, train)
                pool = tk.extract_features(target_model, shifted.train.x)
                test = tk.extract_features(target_model, shifted.test)
                if method.endswith("coral"):
                    fs = tk.coral(fs, pool)
                acc = probe_accuracy(fs, train.y, test, shifted.test.y)
                rows.append({"shift": kind, "seed": seed, "method": method, "accuracy": acc})
    summary = []
    lines = [f"Shifted-test accuracy (%), 10 clean labelled images per class, mean ± sample std "
             f"over {args.seeds} seed(s):", f"{'shift':<10}" + "".join(f"{m:>16}" for m in METHODS)]
    for kind in tk.SHIFT_KINDS:
        cells = []
        for method in METHODS:
            acc = [r["accuracy"] for r in rows if r["shift"] == kind and r["method"] == method]
            std = statistics.stdev(acc) if len(acc) > 1 else float("nan")
            summary.append({"shift": kind, "method": method, "n": len(acc),
                            "accuracy_mean": statistics.fmean(acc), "accuracy_std": std})
            cells.append(f"{100 * statistics.fmean(acc):.1f} ± {100 * std:.1f}".rjust(16))
        lines.append(f"{kind:<10}" + "".join(cells))
    print("\n" + "\n".join(lines))
    run.finish(tk, args.out, {
        "config": {"labelled": "10 clean images per class", "unlabelled":
                   "the shifted training pool", "seeds": list(range(args.seeds)),
                   "methods": list(METHODS)},
        "summary": summary, "runs": rows}, markdown=lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
