#!/usr/bin/env python
"""Beyond fine-tuning: measured over seeds, one section per question.

Sections (run all, or one with ``--only SECTION``; repeatable):

  distillation  teacher = the source backbone fine-tuned on k=10 digits per class
                (tk.fine_tune: head 8 epochs at 1e-2, top block 6 at 3e-4);
                student = tk.build_model(10, widths=STUDENT_WIDTHS).
                  scratch student    the 100 labelled images only (12 epochs, lr 3e-3)
                  distilled (labelled only)   the same 100, teacher's soft labels too
                  distilled          the same 100 + the teacher's soft labels on the
                                     other 300 images of the train pool, whose labels
                                     are NOT used (tk.unlabelled_rest)
  l2sp          plain fine-tuning vs L2-SP (tk.attach_l2sp, alpha=L2SP_ALPHA) with the
                gentle recipe above and with an aggressive one (every block, 3e-3)
  negative      scratch vs feature extraction / fine-tune all from mismatched sources
                (tk.SOURCE_RECIPES noise, letters-shuffled, letters-inverted); the check:
                some source is >= 5 points below scratch, mean of 3 seeds (notebook 08)
  shift         scratch and feature-extraction models on tk.shift-ed test sets (notebook 08)
  forgetting    letters accuracy of the original head on backbones trained on digits
  ranking       tk.rank_sources estimates (LogME, H-score, linear probe) of 6 candidate
                sources vs their fine-tuned accuracy; Spearman rho (notebook 09)
  (these four use tk.run_strategy with 12 epochs at learning rate 1e-2, as the notebooks)

Every model is scored on the 1,000 test digits with tk.evaluate (accuracy, macro F1).
Each section's table: mean +- std over the seeds (sample std, n - 1, as notebook 09 teaches).

    python -m benchmarks.beyond                        # all sections, seeds 0, 1, 2
    python -m benchmarks.beyond --only distillation    # one section
    python -m benchmarks.beyond --seeds 1              # a quick look

Writes benchmarks/results/beyond.json: one entry per section (config, every run,
summary, machine, commit); running one section keeps the others' last results in the file.
And benchmarks/results/beyond.md, the same as tables in percent: the file the notebooks cite
(``--report`` rewrites it from the JSON alone).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "beyond.json"
from transferkit.files import json_safe as clean, write_text as write_atomic  # noqa: E402

import transferkit as tk  # noqa: E402

SHOTS = 10
STUDENT_WIDTHS = (8, 16, 32)
TEACHER = dict(head_epochs=8, finetune_epochs=6, head_lr=1e-2, finetune_lr=3e-4, unfreeze_top=1)
AGGRESSIVE = dict(TEACHER, finetune_lr=3e-3, unfreeze_top=3)
STUDENT = dict(epochs=12, learning_rate=3e-3)
DISTILL = dict(temperature=2.0, alpha=0.5)
L2SP_ALPHA = 1.0


class Context:
    """What every section shares: target task, a private copy of the source weights."""

    def __init__(self, folder):
        source = tk.source_model(verbose=False)
        self.weights = Path(folder) / "source.weights.h5"
        shutil.copyfile(source.weights_path, self.weights)  # immune to cache rebuilds
        self.target = tk.target_task()

    def few_shot(self, seed):
        return tk.few_shot(self.target.train, SHOTS, seed)

    def transferred(self, seed, name="target"):
        tk.set_seed(seed)
        model = tk.build_model(self.target.num_classes, name=name)
        tk.load_matching_weights(model, self.weights)
        return model

    def score(self, model):
        s = tk.evaluate(model, self.target.test)
        return {"accuracy": s.accuracy, "macro_f1": s.f1}


# --------------------------------------------------------------------------- sections
def distillation(ctx, seeds):
    rows = []
    for seed in seeds:
        train = ctx.few_shot(seed)
        repeat = tk.repeat_for(len(train))
        t = time.perf_counter()
        teacher = ctx.transferred(seed, "teacher")
        tk.fine_tune(teacher, train, None, repeat=repeat, **TEACHER)
        rows.append({"run": "teacher (fine-tuned, 24k params)", "seed": seed,
                     **ctx.score(teacher), "seconds": time.perf_counter() - t})

        t = time.perf_counter()
        tk.set_seed(seed)
        scratch = tk.build_model(10, widths=STUDENT_WIDTHS, name="scratch_student")
        tk.compile_model(scratch, STUDENT["learning_rate"])
        tk.fit(scratch, train, None, epochs=STUDENT["epochs"], repeat=repeat)
        rows.append({"run": "scratch student", "seed": seed, **ctx.score(scratch),
                     "seconds": time.perf_counter() - t})

        for name, unlabelled, rep in (
                ("distilled (labelled only)", None, repeat),
                ("distilled (+300 unlabelled)", tk.unlabelled_rest(ctx.target.train, train),
                 tk.repeat_for(len(ctx.target.train)))):
            t = time.perf_counter()
            tk.set_seed(seed)
            student = tk.build_model(10, widths=STUDENT_WIDTHS, name="student")
            tk.distill(student, teacher, train, unlabelled=unlabelled, repeat=rep,
                       epochs=STUDENT["epochs"], learning_rate=STUDENT["learning_rate"],
                       **DISTILL)
            rows.append({"run": name, "seed": seed, **ctx.score(student),
                         "seconds": time.perf_counter() - t})
        print(f"  seed {seed}: " + ", ".join(f"{r['run']} {r['accuracy']:.1%}"
                                            for r in rows if r["seed"] == seed), flush=True)
    params = tk.build_model(10, widths=STUDENT_WIDTHS).count_params()
    config = {"shots": SHOTS, "teacher": TEACHER, "student_widths": STUDENT_WIDTHS,
              "student_params": params, "student": STUDENT, "distill": DISTILL,
              "unlabelled": "the rest of target.train (40 per class) minus the labelled few"}
    return config, rows


def l2sp(ctx, seeds):
    rows = []
    for seed in seeds:
        train = ctx.few_shot(seed)
        repeat = tk.repeat_for(len(train))
        for recipe_name, recipe in (("top block, 3e-4", TEACHER), ("all blocks, 3e-3", AGGRESSIVE)):
            for alpha in (0.0, L2SP_ALPHA):
                t = time.perf_counter()
                model = ctx.transferred(seed)
                before = tk.snapshot_weights(model)
                if alpha:
                    tk.attach_l2sp(model, alpha)
                tk.fine_tune(model, train, None, repeat=repeat, **recipe)
                change = tk.weight_change(before, model)
                backbone = {k: v for k, v in change.items() if k != "head"}
                rows.append({"run": f"{'L2-SP' if alpha else 'plain'} ({recipe_name})",
                             "seed": seed, **ctx.score(model), "alpha": alpha,
                             "max_backbone_change": max(backbone.values()),
                             "seconds": time.perf_counter() - t})
        print(f"  seed {seed}: " + ", ".join(f"{r['run']} {r['accuracy']:.1%}"
                                            for r in rows if r["seed"] == seed), flush=True)
    config = {"shots": SHOTS, "gentle": TEACHER, "aggressive": AGGRESSIVE, "alpha": L2SP_ALPHA}
    return config, rows


# --------------------------------------------------------------------------- when transfer fails
# (notebooks 08 and 09)  Strategies run with tk.run_strategy, the notebooks' settings.
RUN = dict(epochs=12, learning_rate=1e-2)
NEGATIVE_SOURCES = ("noise", "letters-shuffled", "letters-inverted")
NEGATIVE_BAR = 5.0  # points below scratch, mean over 3 seeds
RANK_CANDIDATES = ("letters", "letters-brief", "letters-inverted", "letters-shuffled", "noise",
                   "untrained")
RANK_STRATEGIES = ("fine_tune_top",)  # "actual" = the two-phase recipe of notebook 04


def _strategy(ctx, strategy, train, weights, seed):
    import keras
    keras.backend.clear_session()  # fresh graph state per run: no slowdown over the loop
    return tk.run_strategy(strategy, train, ctx.target.val, ctx.target.num_classes, source_weights=weights,
                           seed=seed, **RUN).model


def _scores(model, data):
    s = tk.evaluate(model, data)
    return {"accuracy": s.accuracy, "macro_f1": s.f1}


def negative(ctx, seeds):
    """Feature extraction / fine-tuning from mismatched sources vs scratch."""
    sources = {n: tk.source_model(n, verbose=False).weights_path for n in NEGATIVE_SOURCES}
    rows = []
    for seed in seeds:
        train = ctx.few_shot(seed)
        rows.append({"run": "scratch", "seed": seed,
                     **ctx.score(_strategy(ctx, "scratch", train, None, seed))})
        for name, weights in sources.items():
            for strategy in ("feature_extraction", "fine_tune_all"):
                rows.append({"run": f"{name} -> {strategy}", "seed": seed, "source": name,
                             **ctx.score(_strategy(ctx, strategy, train, weights, seed))})
        print(f"  seed {seed}: " + ", ".join(f"{r['run']} {r['accuracy']:.1%}"
                                            for r in rows if r["seed"] == seed), flush=True)
    return {"shots": SHOTS, "run": RUN, "sources": {n: tk.SOURCE_TASKS[
        tk.SOURCE_RECIPES[n]["task"]] for n in NEGATIVE_SOURCES}}, rows


def check_negative(rows, summary):
    scratch = next(s for s in summary if s["run"] == "scratch")["accuracy_mean"]
    worst = min((s for s in summary if s["run"] != "scratch"), key=lambda s: s["accuracy_mean"])
    gap = 100 * (worst["accuracy_mean"] - scratch)
    n = min(s["n"] for s in summary)
    return {"criterion": f"some mismatched source is >= {NEGATIVE_BAR:g} accuracy points below "
                         "scratch (mean of 3 seeds)", "passed": gap <= -NEGATIVE_BAR,
            "complete": n >= 3, "worst": worst["run"], "gap_points": gap,
            "gaps": {s["run"]: 100 * (s["accuracy_mean"] - scratch) for s in summary}}


def shift(ctx, seeds):
    """Digit models (scratch, feature extraction from letters) on shifted test sets."""
    rows = []
    for seed in seeds:
        train = ctx.few_shot(seed)
        for strategy, weights in (("scratch", None), ("feature_extraction", ctx.weights)):
            model = _strategy(ctx, strategy, train, weights, seed)
            rows.append({"run": f"{strategy}, unshifted test", "seed": seed, **ctx.score(model)})
            for kind in tk.SHIFT_KINDS:
                rows.append({"run": f"{strategy}, {kind} test", "seed": seed,
                             **_scores(model, tk.shift(ctx.target.test, kind, seed))})
        print(f"  seed {seed} done", flush=True)
    return {"shots": SHOTS, "run": RUN, "kinds": tk.SHIFT_KINDS}, rows


def forgetting(ctx, seeds):
    """Letters test accuracy of the original head on the backbone after training on digits."""
    source = tk.source_model(verbose=False)
    letters_test = tk.source_task(train_per_class=1).test  # the source's test draw
    rows = []
    for seed in seeds:
        train = ctx.few_shot(seed)
        rows.append({"run": "letters source itself: letters", "seed": seed,
                     **_scores(source.model, letters_test)})
        for strategy in ("feature_extraction", "fine_tune_top", "fine_tune_all"):
            model = _strategy(ctx, strategy, train, ctx.weights, seed)
            rows.append({"run": f"{strategy}: digits", "seed": seed, **ctx.score(model)})
            rows.append({"run": f"{strategy}: letters (source head)", "seed": seed,
                         **_scores(tk.with_head(model, source.model), letters_test)})
        print(f"  seed {seed} done", flush=True)
    return {"shots": SHOTS, "run": RUN, "letters_test": len(letters_test)}, rows


def ranking(ctx, seeds):
    """Transferability before fine-tuning vs fine-tuned accuracy, candidate sources."""
    sources = {n: tk.source_model(n, verbose=False) for n in RANK_CANDIDATES}
    rows = []
    for seed in seeds:
        train = ctx.few_shot(seed)
        estimates = {r["name"]: r for r in tk.rank_sources(sources, train, ctx.target.val).rows}
        for name, src in sources.items():
            for strategy in RANK_STRATEGIES:
                model = _strategy(ctx, strategy, train, src.weights_path, seed)
                est = estimates[name]
                rows.append({"run": f"{name} -> {strategy}", "seed": seed, "source": name,
                             "strategy": strategy, **ctx.score(model),
                             **{k: est[k] for k in ("logme", "h_score", "probe_accuracy")}})
        print(f"  seed {seed}: " + ", ".join(f"{r['run']} {r['accuracy']:.1%}"
                                            for r in rows if r["seed"] == seed), flush=True)
    return {"shots": SHOTS, "run": RUN, "candidates": list(RANK_CANDIDATES)}, rows


def check_ranking(rows, summary):
    """Spearman correlation of each estimate (mean over seeds) with the actual accuracy."""
    from scipy.stats import spearmanr

    out = {}
    for strategy in RANK_STRATEGIES:
        sel = [r for r in rows if r["strategy"] == strategy]
        names = list(dict.fromkeys(r["source"] for r in sel))
        mean = {k: [statistics.fmean(r[k] for r in sel if r["source"] == n) for n in names]
                for k in ("accuracy", "logme", "h_score", "probe_accuracy")}
        out[strategy] = {k: float(spearmanr(mean[k], mean["accuracy"])[0])
                         for k in ("logme", "h_score", "probe_accuracy")}
        out[strategy]["estimates"] = {n: {k: mean[k][i] for k in mean}
                                      for i, n in enumerate(names)}
    return {"spearman_rho": out}


SECTIONS = {"distillation": distillation, "l2sp": l2sp, "negative": negative, "shift": shift,
            "forgetting": forgetting, "ranking": ranking}
CHECKS = {"negative": check_negative, "ranking": check_ranking}  # extra numbers per section


# --------------------------------------------------------------------------- report
def summarise(rows):
    out = []
    for name in dict.fromkeys(r["run"] for r in rows):
        runs = [r for r in rows if r["run"] == name]
        entry = {"run": name, "n": len(runs)}
        for key in ("accuracy", "macro_f1", "max_backbone_change"):
            values = [r[key] for r in runs if key in r]
            if values:
                entry[f"{key}_mean"] = statistics.fmean(values)
                entry[f"{key}_std"] = statistics.stdev(values) if len(values) > 1 else float("nan")
        out.append(entry)
    return out


def table(section, summary):
    lines = [f"\n{section}", f"{'run':<36}{'n':>3}  {'test accuracy':>17}  {'macro F1':>17}"]
    for s in summary:
        lines.append(f"{s['run']:<36}{s['n']:>3}  {s['accuracy_mean']:>8.1%} ± {s['accuracy_std']:<6.1%}"
                     f"  {s['macro_f1_mean']:>8.1%} ± {s['macro_f1_std']:<6.1%}")
    return "\n".join(lines)


BASELINES = {"distillation": "scratch student", "negative": "scratch",
             "forgetting": "letters source itself: letters"}  # gaps in points against these
REPORT = RESULTS.with_suffix(".md")


def report(results):
    """beyond.json as the readable file the notebooks cite: every section's table, in percent
    (mean ± sample std over the seeds, each seed's value), with machine, commit and date."""
    out = ["# benchmarks/beyond.py: results", "",
           "Test accuracy on the 1,000 test digits: mean ± sample standard deviation (points) "
           "over the seeds, then each seed's value. Written from beyond.json.", ""]
    for name, sec in results.items():
        d = sec.get("device", {})
        out += [f"## {name}", "",
                f"{sec.get('date', '?')}, {d.get('cpu', '?')} ({d.get('cpu_cores', '?')} cores), "
                f"{d.get('backend', '?')} {d.get('backend_version', '')}, Keras {d.get('keras', '?')}, "
                f"commit {sec.get('commit', 'unknown')}, seeds {sec.get('seeds')}", "",
                "| run | test accuracy | per seed | macro F1 | backbone moved | vs baseline |",
                "|---|---|---|---|---|---|"]
        base = next((s for s in sec["summary"] if s["run"] == BASELINES.get(name)), None)
        for s in sec["summary"]:
            seeds = [r["accuracy"] for r in sec["runs"] if r["run"] == s["run"]]
            std = s.get("accuracy_std")
            moved = (f"{s['max_backbone_change_mean']:.1%}" if "max_backbone_change_mean" in s
                     else "")
            gap = (f"{100 * (s['accuracy_mean'] - base['accuracy_mean']):+.1f} points"
                   if base and s is not base else "")
            out.append(f"| {s['run']} | {s['accuracy_mean']:.1%}"
                       + (f" ± {100 * std:.1f}" if std is not None else "")
                       + f" | {', '.join(f'{v:.1%}' for v in seeds)} | {s['macro_f1_mean']:.1%}"
                       f" | {moved} | {gap} |")
        if "spearman_rho" in sec:
            for strategy, rhos in sec["spearman_rho"].items():
                out += ["", f"Spearman rho with the fine-tuned accuracy ({strategy}): "
                        + ", ".join(f"{k} {v:+.2f}" for k, v in rhos.items() if k != "estimates")]
                out += ["", "| source | LogME | H-score | probe (val) | fine-tuned accuracy |",
                        "|---|---|---|---|---|"]
                out += [f"| {n} | {e['logme']:.3f} | {e['h_score']:.2f} | "
                        f"{e['probe_accuracy']:.1%} | {e['accuracy']:.1%} |"
                        for n, e in rhos.get("estimates", {}).items()]
        if "criterion" in sec:
            out += ["", f"Check: {sec['criterion']}: {'PASS' if sec.get('passed') else 'FAIL'} "
                    f"(worst: {sec.get('worst')}, {sec.get('gap_points', float('nan')):+.1f} points)"]
        out.append("")
    return "\n".join(out)


def _commit():
    """The commit the numbers were measured at (with '+changes' when the tree was dirty)."""
    import subprocess

    try:
        head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=HERE, text=True,
                              capture_output=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "transferkit", "benchmarks"],
                               cwd=HERE.parent, text=True, capture_output=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+changes" if dirty else "")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", choices=sorted(SECTIONS),
                        help="run only this section (repeat the flag for several)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 (default 3)")
    parser.add_argument("--report", action="store_true",
                        help="only rewrite results/beyond.md from results/beyond.json")
    args = parser.parse_args(argv)
    if args.report:
        write_atomic(REPORT, report(json.loads(RESULTS.read_text())))
        print(f"wrote {REPORT}")
        return 0
    if args.seeds < 1:
        parser.error(f"--seeds={args.seeds}: use 1 or more")
    seeds = list(range(args.seeds))
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    with tempfile.TemporaryDirectory(prefix="tk-beyond-") as folder:
        ctx = Context(folder)
        for name in args.only or list(SECTIONS):
            print(f"[{name}] seeds {seeds}", flush=True)
            t = time.perf_counter()
            config, rows = SECTIONS[name](ctx, seeds)
            summary = summarise(rows)
            print(table(name, summary))
            extra = CHECKS[name](rows, summary) if name in CHECKS else {}
            # re-read: another run may have written its sections meanwhile
            results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
            if extra:
                print(json.dumps(clean(extra), indent=1))
            results[name] = {"config": config, "seeds": seeds, "runs": rows, "summary": summary,
                             **extra,
                             "seconds": time.perf_counter() - t, "device": tk.device_report(),
                             "commit": _commit(),
                             "loadavg": os.getloadavg(),
                             "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
            write_atomic(RESULTS, json.dumps(clean(results), indent=1) + "\n")
            write_atomic(REPORT, report(results))
    print(f"wrote {RESULTS} and {REPORT.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
