"""Transfer strategies: a registry of small objects, one file each, found by their package.

A ``Strategy`` *describes* a plan -- which blocks train in which phase, how fast -- and may
carry hooks for what the plan alone cannot say; ``experiments.run_strategy`` carries it out.
Every module of this package (``builtin.py``: the six below) registers its strategies with
``register``; the package imports each module when it loads, so a new strategy is one new
file here (see CONTRIBUTING.md), and the lab, the command line, ``sweep`` and
``recommend_strategy`` list whatever is registered.

    scratch               no transfer: every layer trains from a random start
    feature_extraction    transferred backbone frozen, a new head trains
    fine_tune_top         head first, then the top block too, with a low learning rate
    fine_tune_all         head first, then every block, with a low learning rate
    gradual_unfreezing    head first, then open one more block per phase, top down
    discriminative        head first, then every block, blocks nearer the input learning slower

Keras-free (the hooks import what they need when they run), so the command line lists the
strategies and checks its arguments before the backend loads.  A hook gets the run's
``StrategyRun`` context (``experiments.py``): the model, the data, the settings and the
kit's training primitives, so a strategy file needs nothing but Keras and this package.
"""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from typing import Callable

from ..checks import check_choice
from ..options import Option

__all__ = ["BASE_RATE", "BN_MODE", "BN_MODES", "DEFAULT_BLOCKS", "DEPTH_DECAY", "FINE_TUNE_SCALE", "HEAD",
           "HEAD_LR", "STRATEGIES", "Phase", "Strategy", "batchnorm_trains", "check_bn_mode",
           "fine_tune_phases", "get_strategy", "register", "split_epochs"]

HEAD = "head"  # the classifier layer's name, as models.HEAD
DEFAULT_BLOCKS = ("block1", "block2", "block3")  # the kit's CNN in both presets

# The fine-tuning recipe's constants, the only place they are written.
HEAD_LR = 1e-2             # the head's (base) learning rate
FINE_TUNE_SCALE = 3 / 100  # fine-tuning learning rate relative to the head's: 3e-4
DEPTH_DECAY = 1 / 3        # discriminative: each block nearer the input learns 3x slower
BASE_RATE = "base"         # in Phase.block_lr: this block trains at the run's base rate

# What a transfer strategy does with the source's BatchNorm layers (``bn_mode=``):
BN_MODES = {
    "frozen": "the source's statistics, in inference mode, not trained (the default)",
    "adapt": "AdaBN: statistics re-estimated on unlabelled target images before training, "
             "then frozen",
    "train": "trainable and in training mode (batch statistics) whenever their block is open",
}


@dataclass(frozen=True)
class Phase:
    """One phase of a plan: ``blocks`` train (``"head"`` included) for ``share`` of the
    epochs, at ``lr_scale`` x the base rate -- or, for a ``finetune`` phase, at the run's
    ``finetune_lr`` when one is given.  ``block_lr``: per-block multipliers of the phase's
    rate (discriminative rates); ``BASE_RATE`` keeps a block at the base rate."""

    name: str
    blocks: tuple
    lr_scale: float = 1.0
    share: float = 1.0
    block_lr: dict = field(default_factory=dict)
    finetune: bool = False

    def rate(self, base, finetune_lr=None):
        """This phase's learning rate for a run at ``base`` (and ``finetune_lr``, if set)."""
        if self.finetune and finetune_lr is not None:
            return finetune_lr
        return base * self.lr_scale

    def multipliers(self, base, finetune_lr=None):
        """``block_lr`` as numbers for ``rate(base, finetune_lr)`` (None: every block at it)."""
        if not self.block_lr:
            return None
        to_base = 1 / self.lr_scale if not (self.finetune and finetune_lr is not None) \
            else base / finetune_lr
        return {block: to_base if m == BASE_RATE else m for block, m in self.block_lr.items()}


@dataclass(frozen=True)
class Strategy:
    """A registered strategy.

    ``plan(blocks)``: its phases for a model whose backbone blocks are ``blocks`` (bottom to
    top).  ``uses_source``: it loads the source weights first.  ``bn_modes``: the BatchNorm
    modes it honours; any other asked for runs as ``bn_modes[0]`` (scratch: its BatchNorm
    layers train from their random start whatever ``bn_mode`` says -- the kit's one rule,
    ``bn_mode_for``).  ``needs_unlabelled``: it trains on unlabelled target images too.
    ``options``: its own settings (``Option``s, named after the strategy), which the lab,
    the command line and ``sweep`` offer like the common ones.  Hooks, each given the run's
    context: ``prepare(run)`` after the weights load, before training (add layers, build a
    training model); ``fit_phase(run, phase, epochs, rate, multipliers)`` trains one phase
    and returns its ``RunHistory`` (default: open the phase's blocks, ``compile_model``,
    ``fit``).
    """

    key: str
    title: str
    summary: str
    plan: Callable
    uses_source: bool = True
    bn_modes: tuple = tuple(BN_MODES)
    needs_unlabelled: bool = False
    options: tuple = ()
    prepare: Callable = None
    fit_phase: Callable = None

    def phases(self, blocks=DEFAULT_BLOCKS):
        """The phases for a model whose backbone blocks are ``blocks`` (bottom to top)."""
        return list(self.plan(tuple(blocks)))

    def min_epochs(self, blocks=DEFAULT_BLOCKS):
        """The fewest epochs this strategy can run: one per phase."""
        return len(self.phases(blocks))

    def bn_mode_for(self, bn_mode):
        """The BatchNorm mode this strategy runs with when ``bn_mode`` is asked for."""
        check_bn_mode(bn_mode)
        return bn_mode if bn_mode in self.bn_modes else self.bn_modes[0]


STRATEGIES = {}


def register(strategy):
    """Add ``strategy`` to ``STRATEGIES`` (a strategy file calls this); returns it.

    Refused: a key or title already registered, an option whose name another strategy or the
    common settings use (``settings.RUN_OPTIONS``), or a plan without phases.
    """
    if not isinstance(strategy, Strategy):
        raise TypeError(f"register() takes a tk.strategies.Strategy, got {strategy!r}")
    for other in STRATEGIES.values():
        if strategy.key == other.key or strategy.title == other.title:
            raise ValueError(f"a strategy named {strategy.key!r} / {strategy.title!r} is "
                             "registered already; choose another key and title")
    taken = {o.name for s in STRATEGIES.values() for o in s.options} | set(COMMON_OPTION_NAMES)
    for option in strategy.options:
        if not isinstance(option, Option) or option.name in taken:
            raise ValueError(f"strategy {strategy.key!r}: option {option!r} is not a new "
                             f"tk.options.Option (names in use: {sorted(taken)})")
    if not strategy.phases(DEFAULT_BLOCKS):
        raise ValueError(f"strategy {strategy.key!r} plans no phase")
    STRATEGIES[strategy.key] = strategy
    return strategy


# settings.RUN_OPTIONS' names, here so that register() refuses a clash without importing it
COMMON_OPTION_NAMES = ("learning_rate", "finetune_lr", "epochs", "seed", "bn_mode")


def get_strategy(name):
    """A strategy by key (``'fine_tune_top'``) or title (``'fine-tune top block'``)."""
    if isinstance(name, Strategy):
        return name
    for s in STRATEGIES.values():
        if name == s.title:
            return s
    return STRATEGIES[check_choice(name, "strategy", STRATEGIES, described=True)]


# the option of the settings table (settings.RUN_OPTIONS), here so check_bn_mode says the same
BN_MODE = Option("bn_mode", "choice", "frozen", choices=tuple(BN_MODES), example="train",
                 help="the transferred BatchNorm layers: " + "; ".join(
                     f"{key}: {text.split(' (')[0]}" for key, text in BN_MODES.items()))


def check_bn_mode(bn_mode):
    """``bn_mode`` names one of ``BN_MODES``; a one-line ValueError listing them if not."""
    if not isinstance(bn_mode, str):
        raise ValueError(f"bn_mode={bn_mode!r} is unknown; choose {BN_MODE.rule()}, e.g. "
                         "bn_mode='train'")
    return BN_MODE.check(bn_mode)


def batchnorm_trains(bn_mode):
    """Do the BatchNorm layers of a phase's open blocks train under ``bn_mode`` (as
    ``Strategy.bn_mode_for`` gives it)?  Only under ``"train"``; ``"frozen"`` and ``"adapt"``
    keep them in inference mode (``"adapt"`` re-estimated their statistics first, see
    ``transfer.adapt_batchnorm``).  Blocks that stay frozen keep BatchNorm frozen always."""
    return check_bn_mode(bn_mode) == "train"


def fine_tune_phases(opened, name, head_name="head"):
    """The fine-tuning recipe: the head alone at the base rate, then ``opened`` blocks and the
    head at ``FINE_TUNE_SCALE`` of it (or the run's ``finetune_lr``), half the epochs each."""
    return [Phase(head_name, (HEAD,), 1.0, 0.5),
            Phase(name, tuple(opened) + (HEAD,), FINE_TUNE_SCALE, 0.5, finetune=True)]


def split_epochs(phases, epochs):
    """Whole epochs per phase, at least one each, adding up to ``epochs`` (or len(phases))."""
    raw = [p.share * epochs for p in phases]
    out = [max(1, int(r)) for r in raw]
    for i in sorted(range(len(raw)), key=lambda i: raw[i] - int(raw[i]), reverse=True):
        if sum(out) >= epochs:
            break
        out[i] += 1
    return out


def _discover():
    """Import every module of this package: each registers its strategies."""
    for module in sorted(pkgutil.iter_modules(__path__), key=lambda m: (m.name != "builtin",
                                                                         m.name)):
        if not module.name.startswith("_"):
            importlib.import_module(f"{__name__}.{module.name}")


_discover()
