"""The kit without Jupyter: ``python -m transferkit run|compare|sweep|prepare|info``.

For CI jobs, a classroom projector or a quick experiment over SSH.  Every command
uses the same functions as the notebooks (``run_strategy``, ``sweep``,
``evaluate``, ``source_model``, the plots); this module only parses arguments,
reports progress on stderr and writes the results (table on stdout; CSV, JSON and
a PNG plot under ``--out``, each written atomically).

Arguments, the environment ($KERAS_BACKEND, $TRANSFERKIT_PRESET, $TRANSFERKIT_CACHE)
and the output folder are checked *before* Keras and the backend are imported (10-15 s
on a small CPU): ``--help`` and every such error answer at once.  Any failure is one
line, ``transferkit: error: ...``, with exit status 2 (arguments, environment, folders)
or 1 (a failure while working); ``--debug`` shows the traceback instead.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import re
import sys
import time
from pathlib import Path

from ._io import save_atomically
from .checks import (check_backend, check_cache_location, check_output_folder,
                     check_preset_env)
from .settings import options as setting_options
from .shared_cache import check_shared_cache
from .strategies import STRATEGIES

__all__ = ["COMMANDS", "DEFAULT_TIMEOUT", "EPILOG", "KIT", "ONLINE_NAMES", "OUTPUTS",
           "MAX_POOL", "SHOTS", "TARGET_POOL", "TIMEOUT", "TRAINING", "Interrupted", "Parser",
           "build_parser", "command_info", "command_prepare", "command_train", "epoch_line",
           "main", "one_line", "option_type", "preflight", "resolve_shots", "table",
           "write_results"]

TARGET_POOL = 40  # training images per class in tk.target_task(): the default --pool
MAX_POOL = 1000   # --pool: the glyphs are generated, a larger target costs only time
# online.ONLINE_DATASETS and online.BACKBONE_FILES, and online.DEFAULT_TIMEOUT, named here so
# the parser needs no Keras (tests/test_cli.py keeps them in step)
ONLINE_NAMES = ("mnist", "fashion_mnist", "cifar10", "mobilenet_v3_small")
DEFAULT_TIMEOUT = 5.0
OUTPUTS = ("csv", "json", "png")

EPILOG = f"""\
strategies (--strategy / --strategies):
{chr(10).join(f"  {s.key:<20} {s.summary}" for s in STRATEGIES.values())}

examples:
  python -m transferkit info
  python -m transferkit prepare                      # train and cache the source model (~20 s)
  python -m transferkit run --strategy fine_tune_top --shots 5 --epochs 12
  python -m transferkit compare --strategies scratch feature_extraction fine_tune_top --shots 5
  python -m transferkit sweep --strategies scratch fine_tune_top --shots 1 5 10 --out results
  python -m transferkit prepare --online mnist mobilenet_v3_small   # needs internet

Every command that trains prints a results table and writes <command>.csv,
<command>.json and <command>.png into --out (default: transferkit-results).
Errors are one line with exit status 2 (arguments, environment, folders) or 1;
--debug shows the traceback.
"""


# --------------------------------------------------------------------------- argument types
def _bounded(kind, low, high=None, example=""):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or value < low or (high is not None and value > high) or value != value:
            span = f">= {low}" if high is None else f"from {low} to {high}"
            noun = "an integer" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"{text!r} is out of range; use {noun} {span}"
                                             f"{example}")
        return value
    return parse


def option_type(option):
    """An argparse ``type=`` for a setting: its rule and message (``tk.options.Option``)."""
    def parse(text):
        try:
            return option.parse(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
    parse.__name__ = option.name  # argparse names the type in some messages
    return parse


def _folder(text):
    """--out: a folder name (an empty one would mean the current folder, unasked)."""
    if not text.strip():
        raise argparse.ArgumentTypeError(f"{text!r} names no folder; choose one, e.g. --out "
                                         "results")
    return Path(text)


def SHOTS(text):
    """--shots: an integer, or 'all' (the whole pool); checked against --pool in preflight."""
    if text == "all":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a number of shots; use an integer from 1 to --pool (default "
            f"{TARGET_POOL}) or 'all'") from None


def resolve_shots(shots, pool):
    """``shots`` with 'all' replaced by ``pool``; the error text if one is out of range."""
    out = []
    for k in (shots if isinstance(shots, list) else [shots]):
        k = pool if k == "all" else k
        if not 1 <= k <= pool:
            return None, (f"argument --shots: '{k}' is out of range; use an integer from 1 to "
                          f"{pool} (the target task has {pool} images per class; --pool sets "
                          "it) or 'all'")
        out.append(k)
    return (out if isinstance(shots, list) else out[0]), None


TIMEOUT = _bounded(float, 0.1, 600.0, ", e.g. 5")
# argparse reads "-1e-3" as an option (its own pattern knows only "-1" and "-.5"), so a
# negative rate would be "expected one argument"; this one lets the option's rule answer
NEGATIVE_NUMBER = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


class Parser(argparse.ArgumentParser):
    """argparse, with its errors as one line: ``transferkit: error: ...`` (exit status 2)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = NEGATIVE_NUMBER

    def error(self, message):
        self.exit(2, f"transferkit: error: {message} (see {self.prog} --help)\n")


def build_parser():
    parser = Parser(
        prog="python -m transferkit",
        description="Transfer learning from the command line: train the kit's strategies on "
                    "the few-shot digits target, print a results table, save CSV, JSON and a "
                    "plot.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of an error instead of one line")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    debug = Parser(add_help=False)  # --debug after the command too
    debug.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show the full traceback of an error instead of one line")

    def training_options(p):
        for option in setting_options().values():  # the settings table: one flag per option
            default = "not set" if option.default is None else option.default
            extra = {"metavar": "{" + ",".join(option.choices) + "}"} if option.choices else {}
            p.add_argument(option.flag, type=option_type(option), default=option.default,
                           help=f"{option.help}; {option.rule()} (default {default})", **extra)
        p.add_argument("--pool", type=_bounded(int, 1, MAX_POOL, ", e.g. 200"),
                       default=TARGET_POOL, help="training images per class generated for "
                       f"the digits target, the most --shots can take (default {TARGET_POOL})")
        p.add_argument("--test-per-class", type=_bounded(int, 1, 1000, ", e.g. 100"),
                       default=100, help="test images per class (default 100)")
        p.add_argument("--source-weights", type=Path, default=None, metavar="FILE",
                       help="a .weights.h5 file of the kit's CNN to transfer from (default: "
                            "the cached source model, trained first if missing)")
        p.add_argument("--out", type=_folder, default=Path("transferkit-results"),
                       metavar="DIR",
                       help="folder for the CSV, JSON and PNG (default transferkit-results)")
        p.add_argument("--allow-partial", action="store_true",
                       help="transfer what fits even when --source-weights leave part of the "
                            "backbone at its random start (refused by default)")
        p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")

    def command(name, summary, description, example):
        """A subcommand with its example under its options and the --debug flag."""
        return commands.add_parser(name, help=summary, description=description,
                                   epilog=example,
                                   formatter_class=argparse.RawDescriptionHelpFormatter,
                                   parents=[debug])

    choices = list(STRATEGIES)

    def comparison(name, summary, description, example, strategies, **shots):
        """A subcommand that trains several strategies: --strategies, --shots, training."""
        p = command(name, summary, description, example)
        p.add_argument("--strategies", nargs="+", choices=choices, metavar="STRATEGY",
                       default=strategies, help="any of: " + ", ".join(choices))
        p.add_argument("--shots", type=SHOTS, **shots)
        training_options(p)
        return p

    shots_help = "labelled images per class, 1 to --pool, or 'all' (default 5)"
    run = command(
        "run", "train one strategy and test it",
        "Train one strategy on k shots per class of the digits target and report its test "
        "accuracy.",
        "example:\n  python -m transferkit run --strategy fine_tune_top --shots 5")
    run.add_argument("--strategy", choices=choices, default="fine_tune_top",
                     help="one of: " + ", ".join(choices) + " (default fine_tune_top)")
    run.add_argument("--shots", type=SHOTS, default=5, help=shots_help)
    training_options(run)

    comparison(
        "compare", "train several strategies on the same shots",
        "Train several strategies on the same k-shot sample and compare their test accuracy "
        "and curves.",
        "example:\n  python -m transferkit compare --strategies scratch fine_tune_top --shots 5",
        ["scratch", "feature_extraction", "fine_tune_top"], default=5, help=shots_help)
    comparison(
        "sweep", "test accuracy against shots per class",
        "For each strategy and each number of shots, train and test once: how much does "
        "transfer help as labels get scarce?",
        "example:\n  python -m transferkit sweep --strategies scratch fine_tune_top "
        "--shots 1 5 10",
        ["scratch", "fine_tune_top"], nargs="+", default=[1, 2, 5, 10, 20],
        help="shots per class to try, 'all' for the whole pool (default 1 2 5 10 20)")

    prepare = command(
        "prepare", "fill the caches before a class or a CI run",
        "Train and cache the source model (if it is not cached yet) and, when online, "
        "download optional datasets and pretrained weights.",
        "examples:\n  python -m transferkit prepare --all-sources\n"
        "  python -m transferkit prepare --online mnist mobilenet_v3_small")
    names = list(ONLINE_NAMES)
    prepare.add_argument("--online", nargs="*", choices=names, default=[], metavar="NAME",
                         help="also download these (needs internet): " + ", ".join(names))
    prepare.add_argument("--all-sources", action="store_true",
                         help="also the alternative sources notebooks 08 and 09 compare and "
                              "the rich one (tk.SOURCE_RECIPES; about 90 s more the first time)")
    prepare.add_argument("--timeout", type=TIMEOUT, default=DEFAULT_TIMEOUT,
                         help="seconds to wait for a server before giving up (default 5)")

    commands.add_parser("info", help="backend, device, versions and the cache",
                        description="Print the backend, the device that trains, versions and "
                                    "what is cached.", parents=[debug])
    return parser


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


# --------------------------------------------------------------------------- checks
TRAINING = ("run", "compare", "sweep")


def _strategies(args):
    return [args.strategy] if args.command == "run" else list(dict.fromkeys(args.strategies))


def _needs_source_model(args):
    if args.command in ("prepare", "info"):
        return True
    return args.source_weights is None and any(STRATEGIES[s].uses_source
                                               for s in _strategies(args))


def preflight(parser, args):
    """Everything that can be checked before Keras is imported; argument errors exit 2
    through the parser, the others raise (one line, exit status 2 in ``main``)."""
    weights = getattr(args, "source_weights", None)
    if weights is not None and not (weights.is_file() and weights.name.endswith(".weights.h5")):
        parser.error(f"--source-weights {str(weights)!r} is not a .weights.h5 file; save one "
                     "with tk.save_weights, or leave the option out to use the cached source "
                     "model")
    if args.command in TRAINING:
        args.shots, problem = resolve_shots(args.shots, args.pool)
        if problem:  # the subcommand's help: it lists --shots and --pool
            parser.exit(2, f"transferkit: error: {problem} (see {parser.prog} {args.command} "
                           "--help)\n")
        for key in _strategies(args):
            need = STRATEGIES[key].min_epochs()
            if args.epochs < need:
                parser.error(f"--epochs {args.epochs} is too few for strategy {key!r}: it "
                             f"trains in {need} phases of at least one epoch each; use "
                             f"--epochs {need} or more")
        asked = args.bn_mode != setting_options()["bn_mode"].default
        ignoring = [k for k in _strategies(args)
                    if STRATEGIES[k].bn_mode_for(args.bn_mode) != args.bn_mode]
        if asked and ignoring and len(ignoring) == len(_strategies(args)):
            ran = STRATEGIES[ignoring[0]].bn_mode_for(args.bn_mode)
            parser.error(f"--bn-mode {args.bn_mode} does not apply to strategy "
                         f"{ignoring[0]!r}: its BatchNorm layers run as {ran!r} whatever is "
                         "asked; leave --bn-mode out, or choose a transfer strategy")
    check_backend()
    check_preset_env()
    if _needs_source_model(args):
        check_cache_location()
        check_shared_cache()
    if args.command in TRAINING:
        check_output_folder(args.out, [f"{args.command}.{suffix}" for suffix in OUTPUTS])


# --------------------------------------------------------------------------- commands
def _load_backend():
    """Import the kit (Keras, the backend) now that everything cheap is checked."""
    from . import environment  # noqa: F401  (first: it sets the backend up)


def _source_weights(args):
    # here, not at the top: it loads Keras, which waits until the arguments are checked
    from .source import source_model

    if args.source_weights is not None:
        needed = [s for s in _strategies(args) if STRATEGIES[s].uses_source]
        if needed and not args.allow_partial:  # refuse a partial transfer before any training
            # here, not at the top: it loads Keras, which waits until the arguments are checked
            from .data import DIGITS
            from .models import build_model
            from .transfer import PARTIAL_FIX, load_matching_weights

            load_matching_weights(build_model(len(DIGITS), name=needed[0]), args.source_weights,
                                  require_backbone=True,
                                  fix=f"{PARTIAL_FIX}, or add --allow-partial to transfer what "
                                      "fits")
        return args.source_weights
    needed = [s for s in _strategies(args) if STRATEGIES[s].uses_source]
    return source_model(verbose=not args.quiet).weights_path if needed else None


def _settings(args, weights):
    # here, not at the top: it loads Keras, which waits until the arguments are checked
    from .environment import describe_device

    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                if k not in ("quiet", "out", "debug")}
    settings["source_weights"] = str(weights) if weights else None
    settings["device"] = describe_device()
    return settings


class Interrupted(KeyboardInterrupt):
    """A run ended early (Ctrl-C inside training): no result is written, exit status 130."""


def _chosen(args):
    """The settings the arguments hold, by the settings table's names."""
    return {name: getattr(args, name) for name in setting_options()}


def _train_and_test(args, weights, task):
    """run / compare: the same k-shot sample for every strategy, one row each."""
    # here, not at the top: it loads Keras, which waits until the arguments are checked
    from .data import few_shot
    from .curves import plot_history
    from .evaluation import evaluate
    from .experiments import run_strategy, unlabelled_for

    train = few_shot(task.train, args.shots, args.seed)
    rows, histories = [], []
    for key in _strategies(args):
        callbacks = [] if args.quiet else [epoch_line(STRATEGIES[key].title)]
        run = run_strategy(key, train, task.val, task.num_classes, source_weights=weights,
                           callbacks=callbacks, allow_partial=args.allow_partial,
                           unlabelled=unlabelled_for(STRATEGIES[key], task, None,
                                                     args.bn_mode), **_chosen(args))
        if run.history.interrupted:
            raise Interrupted
        scores = evaluate(run.model, task.test)
        histories.append(run.history)
        rows.append({"strategy": key, "bn_mode": run.settings["bn_mode"], "shots": args.shots,
                     "epochs": run.history.epochs,
                     "accuracy": scores.accuracy, "macro_f1": scores.f1,
                     "seconds": round(run.history.seconds, 2),
                     "transfer": run.describe_transfer()})
        if not args.quiet:
            print(f"{key}: test accuracy {scores.accuracy:.1%}; {run.describe_transfer()}",
                  file=sys.stderr, flush=True)
    return rows, plot_history(*histories)


def _sweep(args, weights, task):
    # here, not at the top: it loads Keras, which waits until the arguments are checked
    from .plots import plot_sweep
    from .experiments import sweep

    keys = {s.title: s.key for s in STRATEGIES.values()}

    def progress(done, total, row):
        if not args.quiet:
            print(f"  run {done}/{total}: {keys[row['strategy']]}, {row['shots']} shots: test "
                  f"accuracy {row['accuracy']:.1%}; {row['transfer']}", file=sys.stderr,
                  flush=True)
    rows = sweep(_strategies(args), task, shots=sorted(set(args.shots)), source_weights=weights,
                 progress=progress, allow_partial=args.allow_partial, **_chosen(args))
    figure = plot_sweep(rows)  # the plot's legend: the strategies' titles
    # the files: the same strategy keys as run and compare write (and --strategies takes)
    rows = [dict(row, strategy=keys[row["strategy"]], seconds=round(row["seconds"], 2))
            for row in rows]
    return rows, figure


def command_train(args):
    # here, not at the top: it loads Keras, which waits until the arguments are checked
    from .data import target_task
    from .environment import set_seed

    start = time.perf_counter()
    weights = _source_weights(args)
    task = target_task(train_per_class=args.pool, test_per_class=args.test_per_class)
    set_seed(args.seed)
    rows, figure = (_sweep if args.command == "sweep" else _train_and_test)(args, weights, task)
    print(table(rows, ["strategy", "shots", "accuracy", "macro_f1", "seconds"]))
    settings = _settings(args, weights)
    settings["seconds"] = round(time.perf_counter() - start, 1)
    paths = write_results(args.out, args.command, rows, settings, figure)
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


def command_prepare(args):
    # here, not at the top: it loads Keras, which waits until the arguments are checked
    from . import online, source
    from .source import source_model

    src = source_model(verbose=True)
    print(f"source model: {src.info['task']}, test accuracy {src.info['test_accuracy']:.1%}")
    others = [n for n, r in source.SOURCE_RECIPES.items() if r is not source.SOURCE_RECIPE]
    for name in (others if args.all_sources else []):
        other = source_model(name, verbose=True)
        print(f"source {name}: test accuracy {other.info['test_accuracy']:.1%}")
    failed = 0
    for name in args.online:
        try:
            paths = online.fetch_online(name, timeout=args.timeout)
            print(f"{name}: cached in {paths[0].parent}")
        except online.OfflineError as exc:
            print(f"{name}: {exc}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


def command_info(args):
    # here, not at the top: it loads Keras, which waits until the arguments are checked
    import numpy
    import sklearn

    from . import __version__, online
    from .environment import cache_dir, describe_device, device_report
    from .source import source_paths

    print(describe_device())
    report = device_report()
    report.update(transferkit=__version__, numpy=numpy.__version__, sklearn=sklearn.__version__)
    for key, value in report.items():
        print(f"  {key:<16} {value}")
    print(f"cache folder       {cache_dir()}")
    weights, _ = source_paths()
    print(f"source model       {'cached' if weights.is_file() else 'not cached yet'} "
          f"({weights.name})")
    for name in list(online.ONLINE_DATASETS) + list(online.BACKBONE_FILES):
        state = "cached" if online.is_cached(name) else "not cached (optional, online)"
        print(f"  {name:<20} {state}")
    from .source import SOURCE_RECIPES, recipe_key
    from .shared_cache import status_lines
    print("\n".join(status_lines({n: recipe_key(r) for n, r in SOURCE_RECIPES.items()})))
    return 0


COMMANDS = {"run": command_train, "compare": command_train, "sweep": command_train,
            "prepare": command_prepare, "info": command_info}
KIT = Path(__file__).resolve().parent


def one_line(exc):
    """``exc`` as the one line the command line prints: the kit's own messages as they are,
    anything else with its type and where to see more."""
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    origin = Path(tb.tb_frame.f_code.co_filename).resolve() if tb is not None else None
    if origin is None or KIT not in origin.parents or "\n" in text:
        line = (f"{type(exc).__name__}: {line} (unexpected; run again with --debug for the "
                "traceback)")
    return line


def main(argv=None):
    """Entry point; returns the exit status (argparse exits with 2 on bad arguments).

    Nothing heavy is imported until the arguments, the environment and the output folder
    are checked.  Errors are one line (``transferkit: error: ...``): status 2 for those
    found before any work, 1 for failures while working; ``--debug`` raises instead.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = getattr(args, "debug", False)
    status = 2
    try:
        preflight(parser, args)
        status = 1
        _load_backend()
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:  # Ctrl-C, or a run that ended early: nothing was written
        if debug:
            raise
        print("transferkit: interrupted; no result was written", file=sys.stderr)
        return 130
    except Exception as exc:
        if debug:
            raise
        print(f"transferkit: error: {one_line(exc)}", file=sys.stderr)
        return status
