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

import sys
import time
from pathlib import Path

from .cli_args import (DEFAULT_TIMEOUT, EPILOG, MAX_POOL, ONLINE_NAMES, OUTPUTS, SHOTS,
                       TARGET_POOL, TIMEOUT, TRAINING, Parser, build_parser, option_type,
                       preflight, resolve_shots, strategies_of)
from .cli_output import epoch_line, table, write_results
from .settings import options as setting_options
from .strategies import STRATEGIES

__all__ = ["COMMANDS", "DEFAULT_TIMEOUT", "EPILOG", "KIT", "ONLINE_NAMES", "OUTPUTS",
           "MAX_POOL", "SHOTS", "TARGET_POOL", "TIMEOUT", "TRAINING", "Interrupted", "Parser",
           "build_parser", "command_info", "command_prepare", "command_train", "epoch_line",
           "main", "one_line", "option_type", "preflight", "resolve_shots", "table",
           "write_results"]

# --------------------------------------------------------------------------- commands
def _load_backend():
    """Import the kit (Keras, the backend) now that everything cheap is checked."""
    from . import environment  # noqa: F401  (first: it sets the backend up)
    return environment


def _source_weights(args):
    # here, not at the top: it loads Keras, which waits until the arguments are checked
    from .source import source_model

    if args.source_weights is not None:
        needed = [s for s in strategies_of(args) if STRATEGIES[s].uses_source]
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
    needed = [s for s in strategies_of(args) if STRATEGIES[s].uses_source]
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
    for key in strategies_of(args):
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
    rows = sweep(strategies_of(args), task, shots=sorted(set(args.shots)),
                 source_weights=weights, progress=progress, allow_partial=args.allow_partial, **_chosen(args))
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

    from . import __version__
    from .cachecheck import cache_report
    from .environment import cache_dir, describe_device, device_report

    print(describe_device())
    report = device_report()
    report.update(transferkit=__version__, numpy=numpy.__version__, sklearn=sklearn.__version__)
    for key, value in report.items():
        print(f"  {key:<16} {value}")
    print(f"cache folder       {cache_dir()}")
    # each cached item verified (checksum, whole file, finite weights), not just present
    for item in cache_report():
        print(item.line())
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
