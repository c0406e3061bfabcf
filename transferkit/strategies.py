"""Transfer strategies as small named objects: which blocks train in which phase, how fast.

A strategy only *describes* the plan; ``experiments.run_strategy`` carries it out.  The
fine-tuning recipe (head first at ``HEAD_LR``, then blocks opened at ``FINE_TUNE_SCALE`` of
it) is written once, in ``fine_tune_phases``: ``tk.fine_tune``, the strategies, the lab
and the command line all train with it.

    scratch               no transfer: every layer trains from a random start
    feature_extraction    transferred backbone frozen, a new head trains
    fine_tune_top         head first, then the top block too, with a low learning rate
    fine_tune_all         head first, then every block, with a low learning rate
    gradual_unfreezing    head first, then open one more block per phase, top down
    discriminative        head first, then every block, blocks nearer the input learning slower
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .checks import check_choice

# Keras-free, so the command line lists the strategies (and checks --epochs against their
# phases) without importing the backend.  ScaledAdam, the discriminative optimizer, lives in
# training.py.
__all__ = ["BN_MODES", "DEFAULT_BLOCKS", "DEPTH_DECAY", "FINE_TUNE_SCALE", "HEAD", "HEAD_LR",
           "STRATEGIES", "Phase", "Strategy", "batchnorm_trains", "check_bn_mode",
           "fine_tune_phases", "get_strategy", "split_epochs"]

HEAD = "head"  # the classifier layer's name, as models.HEAD
DEFAULT_BLOCKS = ("block1", "block2", "block3")  # the kit's CNN in both presets

# The fine-tuning recipe's constants, the only place they are written.
HEAD_LR = 1e-2             # the head's (base) learning rate
FINE_TUNE_SCALE = 3 / 100  # fine-tuning learning rate relative to the head's: 3e-4
DEPTH_DECAY = 1 / 3        # discriminative: each block nearer the input learns 3x slower

# What a transfer strategy does with the source's BatchNorm layers (``bn_mode=``):
BN_MODES = {
    "frozen": "the source's statistics, in inference mode, not trained (the default)",
    "adapt": "AdaBN: statistics re-estimated on unlabelled target images before training, "
             "then frozen",
    "train": "trainable and in training mode (batch statistics) whenever their block is open",
}


@dataclass(frozen=True)
class Phase:
    name: str
    blocks: tuple           # blocks that train in this phase ("head" included)
    lr_scale: float         # x the base learning rate
    share: float            # share of the epochs
    block_lr: dict = field(default_factory=dict)  # per-block multiplier (discriminative)
    train_batchnorm: bool = False


@dataclass(frozen=True)
class Strategy:
    key: str
    title: str
    uses_source: bool
    summary: str

    def phases(self, blocks):
        """The phases for a model whose backbone blocks are ``blocks`` (bottom to top)."""
        blocks = tuple(blocks)
        head = Phase("head", (HEAD,), 1.0, 0.5)
        if self.key == "scratch":
            return [Phase("all layers", blocks + (HEAD,), 1.0, 1.0, train_batchnorm=True)]
        if self.key == "feature_extraction":
            return [Phase("head", (HEAD,), 1.0, 1.0)]
        if self.key == "fine_tune_top":
            return fine_tune_phases(blocks[-1:], "top block")
        if self.key == "fine_tune_all":
            return fine_tune_phases(blocks, "all blocks")
        if self.key == "gradual_unfreezing":
            share = 1 / (len(blocks) + 1)
            out = [Phase("head", (HEAD,), 1.0, share)]
            for n in range(1, len(blocks) + 1):
                out.append(Phase(f"top {n}", blocks[-n:] + (HEAD,), FINE_TUNE_SCALE, share))
            return out
        if self.key == "discriminative":
            rates = {b: DEPTH_DECAY ** (len(blocks) - 1 - i) for i, b in enumerate(blocks)}
            rates[HEAD] = 1 / FINE_TUNE_SCALE  # the head keeps learning at the base rate
            return [head, Phase("per-block rates", blocks + (HEAD,), FINE_TUNE_SCALE, 0.5,
                                block_lr=rates)]
        raise AssertionError(self.key)

    def min_epochs(self, blocks=DEFAULT_BLOCKS):
        """The fewest epochs this strategy can run: one per phase."""
        return len(self.phases(blocks))


def check_bn_mode(bn_mode):
    """``bn_mode`` names one of ``BN_MODES``; a one-line ValueError listing them if not."""
    if not isinstance(bn_mode, str) or bn_mode not in BN_MODES:
        raise ValueError(f"unknown bn_mode {bn_mode!r}; choose one of {list(BN_MODES)} "
                         "(e.g. bn_mode='adapt' to re-estimate BatchNorm on target images)")
    return bn_mode


def batchnorm_trains(phase, bn_mode="frozen"):
    """The kit's one BatchNorm rule: do the BatchNorm layers of ``phase``'s open blocks train?

    Scratch always trains them (``phase.train_batchnorm``); a transfer phase only under
    ``bn_mode="train"``.  ``"frozen"`` and ``"adapt"`` keep them in inference mode (``"adapt"``
    has re-estimated their statistics first, see ``transfer.adapt_batchnorm``).  Blocks that
    stay frozen keep their BatchNorm frozen in every mode.
    """
    return phase.train_batchnorm or check_bn_mode(bn_mode) == "train"


def fine_tune_phases(opened, name, head_name="head"):
    """The fine-tuning recipe: the head alone at the base rate, then ``opened`` blocks and the
    head at ``FINE_TUNE_SCALE`` of it (BatchNorm as ``bn_mode`` says, frozen by default),
    half the epochs each."""
    return [Phase(head_name, (HEAD,), 1.0, 0.5),
            Phase(name, tuple(opened) + (HEAD,), FINE_TUNE_SCALE, 0.5)]


STRATEGIES = {s.key: s for s in (
    Strategy("scratch", "from scratch", False,
             "random start, every layer trains on the target only"),
    Strategy("feature_extraction", "feature extraction", True,
             "transferred backbone frozen; only the new head trains"),
    Strategy("fine_tune_top", "fine-tune top block", True,
             "head first, then the top block too at a 33x lower learning rate"),
    Strategy("fine_tune_all", "fine-tune all", True,
             "head first, then every block at a 33x lower learning rate"),
    Strategy("gradual_unfreezing", "gradual unfreezing", True,
             "head first, then one more block per phase, top down"),
    Strategy("discriminative", "discriminative rates", True,
             "head first, then all blocks, each block nearer the input 3x slower"),
)}


def get_strategy(name):
    """A strategy by key (``'fine_tune_top'``) or title (``'fine-tune top block'``)."""
    if isinstance(name, Strategy):
        return name
    for s in STRATEGIES.values():
        if name == s.title:
            return s
    return STRATEGIES[check_choice(name, "strategy", STRATEGIES, described=True)]


def split_epochs(phases, epochs):
    """Whole epochs per phase, at least one each, adding up to ``epochs`` (or len(phases))."""
    raw = [p.share * epochs for p in phases]
    out = [max(1, int(r)) for r in raw]
    for i in sorted(range(len(raw)), key=lambda i: raw[i] - int(raw[i]), reverse=True):
        if sum(out) >= epochs:
            break
        out[i] += 1
    return out
