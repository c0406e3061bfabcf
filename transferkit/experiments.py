"""Carrying out a plan: the baseline, the fine-tuning recipe, the strategies, the sweep.

``run_phases`` is the one executor: it applies the BatchNorm mode (``bn_mode``: the rule is
``strategies.batchnorm_trains``; ``"adapt"`` re-estimates the statistics first with
``transfer.adapt_batchnorm``), then for each phase opens the phase's blocks, compiles at the phase's learning rate
(``training.compile_model``) and trains (``training.fit``).  ``fine_tune`` and
``run_strategy`` build their phases from ``strategies`` and run them with it; ``sweep``
repeats ``run_strategy`` over shots per class.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .checks import check_flag, check_integer, check_rate, is_integer
from .data import Task, few_shot
from .datachecks import as_xy, check_classes, check_xy
from .environment import set_seed
from .evaluation import evaluate
from .history import RunHistory
from .models import block_names, build_model
from .strategies import (FINE_TUNE_SCALE, HEAD_LR, STRATEGIES, batchnorm_trains, check_bn_mode,
                         fine_tune_phases, get_strategy, split_epochs)
from .training import MAX_EPOCHS, compile_model, fit, repeat_for
from .transfer import PARTIAL_FIX, adapt_batchnorm, load_matching_weights, train_only

__all__ = ["StrategyRun", "fine_tune", "run_phases", "run_strategy", "sweep",
           "train_from_scratch"]


def _check_unlabelled(bn_mode, unlabelled):
    check_bn_mode(bn_mode)
    if unlabelled is not None and bn_mode != "adapt":
        raise ValueError(f"unlabelled images are used only with bn_mode='adapt' (got "
                         f"bn_mode={bn_mode!r}); pass bn_mode='adapt' or leave out unlabelled=")


def run_phases(model, train, val, phases, epochs, learning_rates, *, batch_size=32,
               callbacks=(), repeat=1, bn_mode="frozen", unlabelled=None):
    """Train ``model`` phase by phase (``epochs`` and ``learning_rates``: one per phase) into
    one ``RunHistory``; an interrupted phase (Stop, Kernel -> Interrupt) ends the run.

    ``bn_mode`` (``strategies.BN_MODES``): ``"frozen"`` keeps the BatchNorm layers of
    transferred blocks in inference mode with the statistics they have; ``"adapt"`` first
    re-estimates them on ``unlabelled`` target images (default: the training images, labels
    unused), then keeps them frozen; ``"train"`` trains them with their blocks.
    """
    _check_unlabelled(bn_mode, unlabelled)
    if bn_mode == "adapt":
        adapt_batchnorm(model, as_xy(train, "training data")[0] if unlabelled is None
                        else unlabelled)
    history = None
    for phase, phase_epochs, lr in zip(phases, epochs, learning_rates):
        train_only(model, phase.blocks, batchnorm_trains(phase, bn_mode))
        compile_model(model, lr, block_lr=phase.block_lr or None)
        part = fit(model, train, val, epochs=int(phase_epochs), batch_size=batch_size,
                   callbacks=callbacks, label=phase.name, repeat=repeat)
        part.phases = [(phase.name, 0)]
        history = part if history is None else history.then(part)
        if part.interrupted:
            break
    return history


def train_from_scratch(train, val, num_classes, *, epochs, learning_rate=3e-3, batch_size=32,
                       callbacks=(), seed=0, repeat=1):
    """A freshly initialised model trained on ``train`` only: the baseline to beat."""
    set_seed(seed)
    model = compile_model(build_model(num_classes, name="scratch"), learning_rate)
    history = fit(model, train, val, epochs=epochs, batch_size=batch_size, callbacks=callbacks,
                  label="from scratch", repeat=repeat)
    return model, history


def fine_tune(model, train, val, *, head_epochs, finetune_epochs, head_lr=HEAD_LR,
              finetune_lr=None, unfreeze_top=None, batch_size=32, callbacks=(), repeat=1,
              bn_mode="frozen", unlabelled=None):
    """The fine-tuning recipe: train the new head on a frozen backbone, then open the top
    blocks and train gently (``finetune_lr``, by default ``head_lr * FINE_TUNE_SCALE``).

    ``unfreeze_top``: how many of the top blocks to open in phase 2 (default: all).
    ``bn_mode``: what the BatchNorm layers do (``run_phases``; ``"train"``: they train in
    phase 2 with their blocks).
    Returns the history of both phases as one ``RunHistory``.
    """
    _check_unlabelled(bn_mode, unlabelled)
    blocks = block_names(model)
    if unfreeze_top is not None:
        check_integer(unfreeze_top, "unfreeze_top", 0, len(blocks))
    opened = blocks if unfreeze_top is None else blocks[len(blocks) - unfreeze_top:]
    phases = fine_tune_phases(opened, "fine-tune", head_name="head only")
    rates = [head_lr, head_lr * phases[1].lr_scale if finetune_lr is None else finetune_lr]
    history = run_phases(model, train, val, phases, [head_epochs, finetune_epochs], rates,
                         batch_size=batch_size, callbacks=callbacks, repeat=repeat,
                         bn_mode=bn_mode, unlabelled=unlabelled)
    history.label = "fine-tuned"
    return history


@dataclass
class StrategyRun:
    strategy: object
    model: object
    history: RunHistory
    settings: dict
    transfer: object = None  # the LoadReport of the source weights (None: nothing transferred)

    def describe_transfer(self):
        """One line: what the strategy took from the source weights."""
        if self.transfer is None:
            return "nothing transferred (from scratch)"
        return self.transfer.summary()


def _check_source(strategy, source_weights):
    if strategy.uses_source and source_weights is None:
        raise ValueError(f"strategy {strategy.key!r} transfers weights: pass source_weights= "
                         "(e.g. tk.source_model().weights_path) or use 'scratch'")


def run_strategy(strategy, train, val, num_classes, *, source_weights=None, epochs=12,
                 learning_rate=HEAD_LR, seed=0, batch_size=32, repeat=None, callbacks=(),
                 allow_partial=False, bn_mode="frozen", unlabelled=None, finetune_lr=None):
    """Build a model, transfer weights if the strategy uses them, run its phases.

    ``learning_rate`` is the base (head) rate; fine-tuning phases scale it down as the
    strategy says, or run at ``finetune_lr`` if given (e.g. 1e-3 under a domain shift; the
    per-block multipliers of ``discriminative`` apply on top).  ``repeat`` defaults to
    ``repeat_for(len(train))``.  ``epochs`` are shared by the phases, at least one each
    (``strategy.min_epochs()``).

    A transfer strategy refuses source weights that leave part of the backbone at its
    random start (another architecture, a narrower CNN): it would train a random backbone
    and call it transfer.  ``allow_partial=True`` transfers what fits anyway.  The result's
    ``transfer`` is the ``LoadReport`` (``run.describe_transfer()`` in one line).

    ``bn_mode`` (``"frozen"``, ``"adapt"``, ``"train"``): what the transferred BatchNorm
    layers do, see ``run_phases``; ``unlabelled``: target images for ``"adapt"`` (default:
    the training images).  Scratch trains its BatchNorm layers in every mode and adapts none.
    """
    strategy = get_strategy(strategy)
    _check_unlabelled(bn_mode, unlabelled)
    check_rate(learning_rate, example="1e-2")
    if finetune_lr is not None:
        check_rate(finetune_lr, "finetune_lr", example="1e-3")
    check_integer(epochs, "epochs", 1, MAX_EPOCHS)
    _check_source(strategy, source_weights)
    check_flag(allow_partial, "allow_partial")
    x, y = as_xy(train, "training data")
    repeat = repeat_for(len(x), batch_size) if repeat is None else repeat
    set_seed(seed)
    model = build_model(num_classes, name=strategy.key)
    phases = strategy.phases(block_names(model))
    if epochs < len(phases):
        raise ValueError(f"epochs={epochs} is too few for strategy {strategy.key!r}: it trains "
                         f"in {len(phases)} phases ({', '.join(p.name for p in phases)}) of at "
                         f"least one epoch each; use epochs >= {len(phases)}")
    check_xy(model, x, y, "training data")  # before the source weights are even read
    check_classes(y)
    if unlabelled is not None:  # the image checks of training data, without labels
        ux = np.asarray(getattr(unlabelled, "x", unlabelled))
        check_xy(model, ux, np.zeros(len(ux), dtype=int), "unlabelled images")
    report = None
    if strategy.uses_source:
        report = load_matching_weights(
            model, source_weights, require_backbone=not allow_partial,
            fix=f"{PARTIAL_FIX}, or run_strategy(..., allow_partial=True) to transfer what fits")
    rates = [learning_rate * phase.lr_scale if finetune_lr is None or phase.lr_scale == 1
             else finetune_lr * phase.lr_scale / FINE_TUNE_SCALE for phase in phases]
    history = run_phases(model, train, val, phases, split_epochs(phases, epochs), rates,
                         batch_size=batch_size, callbacks=callbacks, repeat=repeat,
                         bn_mode=bn_mode if strategy.uses_source else "frozen",
                         unlabelled=unlabelled if strategy.uses_source else None)
    history.label = strategy.title
    settings = {"strategy": strategy.key, "epochs": epochs, "learning_rate": learning_rate,
                "seed": seed, "train_examples": int(len(x)), "repeat": repeat,
                "bn_mode": bn_mode, "finetune_lr": finetune_lr}
    return StrategyRun(strategy, model, history, settings, report)


def sweep(strategies, task, *, shots=(1, 2, 5, 10, 20, 40), source_weights=None, epochs=6,
          learning_rate=HEAD_LR, seed=0, progress=None, allow_partial=False, bn_mode="frozen",
          unlabelled=None, finetune_lr=None):
    """Test accuracy of each strategy for each number of shots per class (one seed).

    ``shots``: images per class; ``"all"`` is the whole training pool (its smallest class).
    A larger pool: ``tk.target_task(train_per_class=200)``.

    ``bn_mode``, ``unlabelled`` and ``finetune_lr``: as for ``run_strategy``, for every
    transfer strategy.

    Returns a list of dicts (strategy, shots, accuracy, macro_f1, seconds, transfer).
    ``progress(done, total, row)`` is called after every run if given.
    Every argument is checked before the first run.
    """
    if isinstance(strategies, str) or not isinstance(strategies, (list, tuple)) or not strategies:
        raise ValueError(f"strategies={strategies!r}: pass a non-empty list of strategy names, "
                         f"e.g. ['scratch', 'fine_tune_top'] (any of {list(STRATEGIES)})")
    chosen = [get_strategy(s) for s in strategies]
    if not isinstance(task, Task):
        raise TypeError(f"sweep needs a tk.Task (train and test splits), got "
                        f"{type(task).__name__}; pass e.g. tk.target_task()")
    if isinstance(shots, (str, bytes)) or not hasattr(shots, "__iter__") or not list(shots):
        raise ValueError(f"shots={shots!r}: pass a non-empty list of shots per class, "
                         "e.g. shots=(1, 5, 10)")
    given = list(shots)
    most = min(task.train.counts())
    shots = [most if k == "all" else k for k in given]
    for k in shots:
        if not is_integer(k) or not 1 <= k <= most:
            raise ValueError(f"shots={given!r} holds {k!r}; use integers from 1 to {most} "
                             f"(the fewest images of a class in {task.train.name!r}) or 'all', "
                             "or a larger pool: tk.target_task(train_per_class=200)")
    check_rate(learning_rate, example="1e-2")
    if finetune_lr is not None:
        check_rate(finetune_lr, "finetune_lr", example="1e-3")
    check_integer(epochs, "epochs", 1, MAX_EPOCHS)
    _check_unlabelled(bn_mode, unlabelled)
    for s in chosen:
        if epochs < s.min_epochs():
            raise ValueError(f"epochs={epochs} is too few for strategy {s.key!r}: it trains in "
                             f"{s.min_epochs()} phases of at least one epoch each; use epochs "
                             f">= {max(c.min_epochs() for c in chosen)}")
        _check_source(s, source_weights)
    set_seed(seed)
    rows, total = [], len(chosen) * len(shots)
    for s in chosen:
        for k in shots:
            train = few_shot(task.train, k, seed)
            # no validation pass: a sweep reports test accuracy only, and it saves time
            run = run_strategy(s, train, None, task.num_classes, source_weights=source_weights,
                               epochs=epochs, learning_rate=learning_rate, seed=seed,
                               allow_partial=allow_partial, bn_mode=bn_mode,
                               unlabelled=unlabelled, finetune_lr=finetune_lr)
            scores = evaluate(run.model, task.test)
            rows.append({"strategy": run.strategy.title, "shots": k, "bn_mode": bn_mode,
                         "accuracy": scores.accuracy, "macro_f1": scores.f1,
                         "seconds": run.history.seconds, "transfer": run.describe_transfer()})
            if progress:
                progress(len(rows), total, rows[-1])
    return rows
