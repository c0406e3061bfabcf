"""The command line's arguments: the parser built from the settings table, the argument
types, and the checks that run before Keras loads (``preflight``).  No Keras, no NumPy:
``--help`` and every argument error answer at once."""
from __future__ import annotations

import argparse
import re
from pathlib import Path

from .checks import (check_backend, check_cache_location, check_output_folder,
                     check_preset_env)
from .settings import options as setting_options
from .shared_cache import check_shared_cache
from .strategies import STRATEGIES

__all__ = ["DEFAULT_TIMEOUT", "EPILOG", "MAX_POOL", "NEGATIVE_NUMBER", "ONLINE_NAMES", "OUTPUTS",
           "SHOTS", "TARGET_POOL", "TIMEOUT", "TRAINING", "Parser", "build_parser",
           "option_type", "preflight", "resolve_shots", "strategies_of"]

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




# --------------------------------------------------------------------------- checks
TRAINING = ("run", "compare", "sweep")


def strategies_of(args):
    return [args.strategy] if args.command == "run" else list(dict.fromkeys(args.strategies))


def _needs_source_model(args):
    if args.command in ("prepare", "info"):
        return True
    return args.source_weights is None and any(STRATEGIES[s].uses_source
                                               for s in strategies_of(args))


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
        for key in strategies_of(args):
            need = STRATEGIES[key].min_epochs()
            if args.epochs < need:
                parser.error(f"--epochs {args.epochs} is too few for strategy {key!r}: it "
                             f"trains in {need} phases of at least one epoch each; use "
                             f"--epochs {need} or more")
        asked = args.bn_mode != setting_options()["bn_mode"].default
        ignoring = [k for k in strategies_of(args)
                    if STRATEGIES[k].bn_mode_for(args.bn_mode) != args.bn_mode]
        if asked and ignoring and len(ignoring) == len(strategies_of(args)):
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


