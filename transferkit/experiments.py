"""Carrying out a plan: the baseline, the fine-tuning recipe, the strategies, the sweep.

``run_strategy`` builds the model, loads the source weights, lets the strategy's
``prepare`` hook change the model, then trains phase by phase: the BatchNorm mode first
(``Strategy.bn_mode_for``; ``"adapt"`` re-estimates the statistics with
``transfer.adapt_batchnorm``), then for each phase the strategy's ``fit_phase`` hook or the
default (open the phase's blocks, ``training.compile_model`` at the phase's rate,
``training.fit``).  Hooks get the run's ``RunContext``.  ``fine_tune`` runs the recipe on a
model you built (``run_phases``); ``sweep`` repeats ``run_strategy`` over shots per class.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .checks import check_flag, check_integer, check_rate
from .data import Task, check_task_values, few_shot
from .datachecks import as_xy, check_classes, check_xy
from .environment import set_seed
from .evaluation import evaluate
from .history import RunHistory
from .models import block_names, build_model
from .settings import check_shots, resolve, takes_settings
from .strategies import (HEAD_LR, STRATEGIES, batchnorm_trains, check_bn_mode,
                         fine_tune_phases, get_strategy, split_epochs)
from .training import MAX_EPOCHS, Validation, compile_model, fit, repeat_for, train_loop
from .transfer import PARTIAL_FIX, adapt_batchnorm, load_matching_weights, train_only

__all__ = ["RunContext", "StrategyRun", "SweepInterrupted", "default_fit_phase", "fine_tune", "run_phases",
           "run_strategy", "sweep", "train_from_scratch", "unlabelled_for"]


@dataclass
class RunContext:
    """One run as a strategy's hooks see it: the model being trained and what it trains on.

    ``model`` is the classifier ``run_strategy`` returns; a ``prepare`` hook may put a
    ``training_model`` beside it (sharing its layers: an extra head, an adapter) for its own
    ``fit_phase`` to train.  ``open``, ``compile`` and ``fit_arrays`` are the kit's training
    primitives, so a strategy file needs only Keras besides them.
    """

    strategy: object
    settings: object
    model: object
    train: object
    val: object = None
    unlabelled: object = None
    bn_mode: str = "frozen"
    callbacks: tuple = ()
    batch_size: int = 32
    repeat: int = 1
    training_model: object = None
    notes: dict = field(default_factory=dict)  # what a strategy wants to keep about the run

    def open(self, phase):
        """Freeze every layer, then open ``phase``'s blocks (BatchNorm as ``bn_mode`` says)."""
        train_only(self.model, phase.blocks, batchnorm_trains(self.bn_mode))

    def compile(self, rate, multipliers=None):
        """The kit's compile (Adam, sparse cross-entropy on logits) of ``model``."""
        return compile_model(self.model, rate, block_lr=multipliers)

    def fit(self, epochs, label):
        """The kit's ``fit`` of ``model`` on the run's data: checked, timed, interruptible."""
        return fit(self.model, self.train, self.val, epochs=int(epochs),
                   batch_size=self.batch_size, callbacks=self.callbacks, label=label,
                   repeat=self.repeat)

    def fit_arrays(self, model, x, y, *, epochs, label, sample_weight=None):
        """Keras' ``fit`` of a compiled ``model`` (e.g. ``training_model``) on arrays,
        through the kit's loop: timed, interruptible, the run's callbacks, and validation
        measured on the classifier ``self.model`` (``val``)."""
        checks = ()
        if self.val is not None:
            vx, vy = as_xy(self.val, "validation data")
            check_xy(self.model, vx, vy, "validation data")
            checks = (Validation(vx, vy, model=self.model),)
        return train_loop(model, x, y, label, epochs=epochs, batch_size=self.batch_size,
                          callbacks=self.callbacks, checks=checks, sample_weight=sample_weight)


def default_fit_phase(run, phase, epochs, rate, multipliers):
    """How a phase trains unless its strategy says otherwise: open its blocks, compile at its
    rate (``multipliers``: per-block factors), fit."""
    run.open(phase)
    run.compile(rate, multipliers)
    return run.fit(epochs, phase.name)


def _train_phases(run, phases, epochs, rates, multipliers, fit_phase=default_fit_phase):
    """Each phase in turn into one ``RunHistory``; an interrupted phase (Stop, Kernel ->
    Interrupt) ends the run.  ``"adapt"`` re-estimates BatchNorm on ``run.unlabelled``
    (default: the training images) first."""
    if run.bn_mode == "adapt":
        adapt_batchnorm(run.model, as_xy(run.train, "training data")[0]
                        if run.unlabelled is None else run.unlabelled)
    history = None
    for phase, phase_epochs, rate, factors in zip(phases, epochs, rates, multipliers):
        part = fit_phase(run, phase, int(phase_epochs), rate, factors)
        part.phases = [(phase.name, 0)]
        history = part if history is None else history.then(part)
        if part.interrupted:
            break
    return history


def run_phases(model, train, val, phases, epochs, learning_rates, *, batch_size=32,
               callbacks=(), repeat=1, bn_mode="frozen", unlabelled=None):
    """Train ``model`` phase by phase (``epochs`` and ``learning_rates``: one per phase) into
    one ``RunHistory``; an interrupted phase (Stop, Kernel -> Interrupt) ends the run.

    ``bn_mode`` (``strategies.BN_MODES``): ``"frozen"`` keeps the BatchNorm layers of
    transferred blocks in inference mode with the statistics they have; ``"adapt"`` first
    re-estimates them on ``unlabelled`` target images (default: the training images, labels
    unused), then keeps them frozen; ``"train"`` trains them with their blocks.
    """
    _check_unlabelled(check_bn_mode(bn_mode), unlabelled)
    run = RunContext(None, None, model, train, val, unlabelled, bn_mode, tuple(callbacks),
                     batch_size, repeat)
    return _train_phases(run, phases, epochs, learning_rates, [p.multipliers(None)
                                                              for p in phases])


def _check_unlabelled(bn_mode, unlabelled, strategy=None):
    if unlabelled is not None and bn_mode != "adapt" and not (
            strategy is not None and strategy.needs_unlabelled):
        raise ValueError(f"unlabelled images are used only with bn_mode='adapt' or a strategy "
                         f"that trains on them (got bn_mode={bn_mode!r}); pass "
                         "bn_mode='adapt' or leave out unlabelled=")


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
    _check_unlabelled(check_bn_mode(bn_mode), unlabelled)
    # every argument named as given, before the head phase trains
    for value, what in ((head_epochs, "head_epochs"), (finetune_epochs, "finetune_epochs")):
        check_integer(value, what, 1, MAX_EPOCHS)
    check_rate(head_lr, "head_lr", example="1e-2")
    if finetune_lr is not None:
        check_rate(finetune_lr, "finetune_lr", example="1e-3 (or leave it out: head_lr x 0.03)")
    blocks = block_names(model)
    if unfreeze_top is not None:
        check_integer(unfreeze_top, "unfreeze_top", 0, len(blocks))
    opened = blocks if unfreeze_top is None else blocks[len(blocks) - unfreeze_top:]
    phases = fine_tune_phases(opened, "fine-tune", head_name="head only")
    rates = [phases[0].rate(head_lr), phases[1].rate(head_lr, finetune_lr)]
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


def unlabelled_for(strategy, task, unlabelled=None, bn_mode="frozen"):
    """The unlabelled images one run of ``strategy`` gets from an entry point that holds a
    ``task``: a strategy that trains on them gets ``unlabelled``, else the task's whole
    training pool (its labels unused); under ``bn_mode="adapt"`` the others get
    ``unlabelled`` (None: AdaBN on the training images); otherwise none."""
    if strategy.needs_unlabelled:
        return task.train.x if unlabelled is None else unlabelled
    return unlabelled if bn_mode == "adapt" else None


@takes_settings
def run_strategy(strategy, train, val, num_classes, *, source_weights=None, settings=None,
                 batch_size=32, repeat=None, callbacks=(), allow_partial=False,
                 unlabelled=None, **options):
    """Build a model, transfer weights if the strategy uses them, run its phases.

    ``learning_rate`` is the base (head) rate; fine-tuning phases scale it down as the
    strategy says, or run at ``finetune_lr`` if given (e.g. 1e-3 under a domain shift; the
    per-block multipliers of ``discriminative`` apply on top, its head at the base rate).
    ``repeat`` defaults to ``repeat_for(len(train))``.  ``epochs`` are shared by the phases,
    at least one each (``strategy.min_epochs()``).  ``settings``: a ``tk.settings.Settings``
    (the keywords below override it).

    A transfer strategy refuses source weights that leave part of the backbone at its
    random start (another architecture, a narrower CNN): it would train a random backbone
    and call it transfer.  ``allow_partial=True`` transfers what fits anyway.  The result's
    ``transfer`` is the ``LoadReport`` (``run.describe_transfer()`` in one line).

    ``bn_mode`` (``"frozen"``, ``"adapt"``, ``"train"``): what the transferred BatchNorm
    layers do, see ``run_phases``; ``unlabelled``: target images for ``"adapt"`` (default:
    the training images) or for a strategy that trains on them.  Scratch trains its
    BatchNorm layers in every mode and adapts none (``Strategy.bn_mode_for``); the result's
    ``settings`` record the mode that ran.
    """
    strategy = get_strategy(strategy)
    _check_source(strategy, source_weights)
    settings = resolve(settings, **options).for_strategy(strategy)
    bn_mode = strategy.bn_mode_for(settings.bn_mode)
    _check_unlabelled(settings.bn_mode, unlabelled, strategy)
    if strategy.needs_unlabelled and unlabelled is None:
        raise ValueError(f"strategy {strategy.key!r} trains on unlabelled target images too: "
                         "pass unlabelled= (e.g. task.train.x, labels unused)")
    check_flag(allow_partial, "allow_partial")
    x, y = as_xy(train, "training data")
    repeat = repeat_for(len(x), batch_size) if repeat is None else repeat
    set_seed(settings.seed)
    model = build_model(num_classes, name=strategy.key)
    phases = strategy.phases(block_names(model))
    settings.for_strategy(strategy, block_names(model))
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
    uses_unlabelled = bn_mode == "adapt" or strategy.needs_unlabelled
    run = RunContext(strategy, settings, model, train, val,
                     unlabelled if uses_unlabelled else None, bn_mode, tuple(callbacks),
                     batch_size, repeat)
    if strategy.prepare is not None:
        strategy.prepare(run)
    base, tuned = settings.learning_rate, settings.finetune_lr
    history = _train_phases(run, phases, split_epochs(phases, settings.epochs),
                            [p.rate(base, tuned) for p in phases],
                            [p.multipliers(base, tuned) for p in phases],
                            strategy.fit_phase or default_fit_phase)
    history.label = strategy.title
    recorded = {"strategy": strategy.key, **settings.as_dict(), "bn_mode": bn_mode,
                "train_examples": int(len(x)), "repeat": repeat}
    return StrategyRun(strategy, model, history, recorded, report)


class SweepInterrupted(KeyboardInterrupt):
    """A sweep interrupted mid-run (Kernel -> Interrupt, Ctrl-C): the finished rows are in
    ``rows``; the interrupted run is not among them."""

    def __init__(self, rows, total):
        super().__init__(f"sweep interrupted after {len(rows)} of {total} runs; the finished "
                         "rows are in error.rows")
        self.rows = list(rows)


@takes_settings
def sweep(strategies, task, *, shots=(1, 2, 5, 10, 20, 40), source_weights=None, settings=None,
          progress=None, allow_partial=False, unlabelled=None, **options):
    """Test accuracy of each strategy for each number of shots per class (one seed).

    ``shots``: images per class; ``"all"`` is the whole training pool (its smallest class).
    A larger pool: ``tk.target_task(train_per_class=200)``.

    The options (``epochs``, ``learning_rate``, ``bn_mode``, ...) and ``unlabelled``: as for
    ``run_strategy``, for every strategy (a strategy that needs unlabelled images and gets
    none trains on the task's whole pool, labels unused).

    Returns a list of dicts (strategy, shots, bn_mode, accuracy, macro_f1, seconds, transfer).
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
    check_task_values(task)
    most = min(task.train.counts())
    shots = [check_shots(k, most, allow_all=True, shown=f"shots={given!r} holds {k!r}, which")
             for k in given]
    settings = resolve(settings, **options)
    for s in chosen:
        settings.for_strategy(s)
        _check_source(s, source_weights)
    _check_unlabelled(settings.bn_mode, unlabelled,
                      next((s for s in chosen if s.needs_unlabelled), None))
    set_seed(settings.seed)
    rows, total = [], len(chosen) * len(shots)
    for s in chosen:
        for k in shots:
            train = few_shot(task.train, k, settings.seed)
            # no validation pass: a sweep reports test accuracy only, and it saves time
            run = run_strategy(s, train, None, task.num_classes, source_weights=source_weights,
                               settings=settings, allow_partial=allow_partial,
                               unlabelled=unlabelled_for(s, task, unlabelled,
                                                         settings.bn_mode))
            if run.history.interrupted:
                raise SweepInterrupted(rows, total)
            scores = evaluate(run.model, task.test)
            rows.append({"strategy": run.strategy.title, "shots": k,
                         "bn_mode": run.settings["bn_mode"],
                         "accuracy": scores.accuracy, "macro_f1": scores.f1,
                         "seconds": run.history.seconds, "transfer": run.describe_transfer()})
            if progress:
                progress(len(rows), total, rows[-1])
    return rows

