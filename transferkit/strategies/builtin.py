"""The kit's six strategies (notebooks 04-05): plans only, carried out by the default phase
training of ``experiments.run_strategy`` (open the phase's blocks, compile, fit)."""
from __future__ import annotations

from . import (DEPTH_DECAY, FINE_TUNE_SCALE, HEAD, BASE_RATE, Phase, Strategy,
               fine_tune_phases, register)

__all__ = ["SCRATCH", "FEATURE_EXTRACTION", "FINE_TUNE_TOP", "FINE_TUNE_ALL",
           "GRADUAL_UNFREEZING", "DISCRIMINATIVE"]


def _scratch(blocks):
    return [Phase("all layers", blocks + (HEAD,), 1.0, 1.0)]


def _feature_extraction(blocks):
    return [Phase("head", (HEAD,), 1.0, 1.0)]


def _gradual(blocks):
    share = 1 / (len(blocks) + 1)
    return [Phase("head", (HEAD,), 1.0, share)] + [
        Phase(f"top {n}", blocks[-n:] + (HEAD,), FINE_TUNE_SCALE, share, finetune=True)
        for n in range(1, len(blocks) + 1)]


def _discriminative(blocks):
    rates = {b: DEPTH_DECAY ** (len(blocks) - 1 - i) for i, b in enumerate(blocks)}
    rates[HEAD] = BASE_RATE  # the head keeps learning at the base rate
    return [Phase("head", (HEAD,), 1.0, 0.5),
            Phase("per-block rates", blocks + (HEAD,), FINE_TUNE_SCALE, 0.5, block_lr=rates,
                  finetune=True)]


# scratch has no source statistics to keep: its BatchNorm layers always train
SCRATCH = register(Strategy(
    "scratch", "from scratch", "random start, every layer trains on the target only",
    _scratch, uses_source=False, bn_modes=("train",)))
FEATURE_EXTRACTION = register(Strategy(
    "feature_extraction", "feature extraction",
    "transferred backbone frozen; only the new head trains", _feature_extraction))
FINE_TUNE_TOP = register(Strategy(
    "fine_tune_top", "fine-tune top block",
    "head first, then the top block too at a 33x lower learning rate",
    lambda blocks: fine_tune_phases(blocks[-1:], "top block")))
FINE_TUNE_ALL = register(Strategy(
    "fine_tune_all", "fine-tune all", "head first, then every block at a 33x lower learning rate",
    lambda blocks: fine_tune_phases(blocks, "all blocks")))
GRADUAL_UNFREEZING = register(Strategy(
    "gradual_unfreezing", "gradual unfreezing",
    "head first, then one more block per phase, top down", _gradual))
DISCRIMINATIVE = register(Strategy(
    "discriminative", "discriminative rates",
    "head first, then all blocks, each block nearer the input 3x slower", _discriminative))
