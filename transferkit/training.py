"""Compile and train: thin, checked wrappers around Keras.

``fit`` validates its inputs, refuses to train a model whose ``trainable``
flags changed since it was compiled (the recompile guard, below), and returns a
``RunHistory`` that can be plotted and chained across phases.  ``distill``
(knowledge.py) trains through the same loop, ``train_loop``.
"""
from __future__ import annotations

import math
import time
import weakref

import keras
import numpy as np

from .checks import check_integer, check_number, check_rate
from .datachecks import as_xy, check_classes, check_xy
from .history import HistoryRecorder, RunHistory, StopSwitch
from .models import HEAD, block_names, check_model, forward, outputs_probabilities

__all__ = ["MAX_EPOCHS", "RecompileError", "ScaledAdam", "Validation", "check_recompiled",
           "compile_model", "fit", "remember_fit", "repeat_for", "steps_per_epoch", "train_loop"]

MAX_EPOCHS = 10_000
# A block's rate as a multiple of the base: rates range over 1e-6..1 (settings), so a head at
# the base rate over blocks at a small finetune_lr is a legitimate ratio up to 1e6.
MAX_MULTIPLIER = 1e6


def compile_model(model, learning_rate=1e-3, *, block_lr=None):
    """Adam + sparse cross-entropy on logits + accuracy. Call again after changing ``trainable``.

    ``learning_rate``: a number, or a Keras schedule (``keras.optimizers.schedules.CosineDecay``
    and the like: a rate per optimizer step; ``steps_per_epoch`` converts epochs to steps).
    ``block_lr``: a learning-rate multiplier per block (``ScaledAdam``), e.g. {"block1": 0.1}.
    """
    check_model(model)
    if not isinstance(learning_rate, keras.optimizers.schedules.LearningRateSchedule):
        check_rate(learning_rate)
    if outputs_probabilities(model):
        raise ValueError(f"model {model.name!r} ends in a softmax ({model.layers[-1].name!r}), "
                         "but tk.compile_model's loss reads logits; build the last layer without "
                         "an activation (tk.build_model does), or compile it yourself with "
                         "loss='sparse_categorical_crossentropy'")
    block_lr = _check_block_lr(model, block_lr)
    optimizer = (ScaledAdam(block_lr, learning_rate=learning_rate) if block_lr else
                 keras.optimizers.Adam(learning_rate))
    model.compile(optimizer=optimizer,
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


def _check_block_lr(model, block_lr):
    """{block name: multiplier}: blocks of this model, positive finite multipliers."""
    if block_lr is None:
        return None
    blocks = block_names(model) + [HEAD]
    if not isinstance(block_lr, dict):
        raise TypeError(f"block_lr={block_lr!r} must be a dict of learning-rate multipliers by "
                        f"block, e.g. block_lr={{{blocks[0]!r}: 0.1}}")
    for name, multiplier in block_lr.items():
        if name not in blocks:
            raise ValueError(f"block_lr names {name!r}, which is not a block of model "
                             f"{model.name!r} ({blocks}); use those names, e.g. "
                             f"block_lr={{{blocks[0]!r}: 0.1}}")
        check_number(multiplier, f"block_lr[{name!r}]", 0, MAX_MULTIPLIER,
                     f"use a positive multiplier of the learning rate up to {MAX_MULTIPLIER:,.0f}, "
                     "e.g. 0.1 (1 = the base rate; to stop a block learning, tk.freeze it)")
    return dict(block_lr)


class ScaledAdam(keras.optimizers.Adam):
    """Adam with a learning-rate multiplier per variable, chosen by its layer's block."""

    def __init__(self, multipliers, learning_rate=1e-3, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.multipliers = dict(multipliers)

    def _multiplier(self, variable):
        path = self._trainable_variables[self._get_variable_index(variable)].path
        return self.multipliers.get(path.split("/")[0].split("_")[0], 1.0)

    def update_step(self, gradient, variable, learning_rate):
        scaled = keras.ops.multiply(learning_rate, self._multiplier(variable))
        super().update_step(gradient, variable, scaled)


class Validation(keras.callbacks.Callback):
    """Validation loss and accuracy after each epoch, from one forward pass in inference mode.

    Keras' own validation pass (``validation_data=``) needs a compiled test step, traced
    again after every ``compile`` -- a second or two per phase on a small CPU, more than
    the pass itself for a validation set of a few hundred images.  The numbers are the
    same: mean cross-entropy of the logits and the share of correct predictions.
    ``model``: validate this classifier instead of the model being trained (a strategy's
    training model that shares its layers, e.g. with an extra head).
    """

    def __init__(self, x, y, batch_size=256, model=None):
        super().__init__()
        self.x, self.y, self.batch_size = x, y, batch_size
        self.classifier = model  # the model to validate, if not the one being trained

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        model = self.classifier or self.model
        logits = forward(model, self.x, self.batch_size)
        # a model of one's own may end in a softmax: its outputs are probabilities then
        losses = keras.losses.sparse_categorical_crossentropy(
            self.y, logits, from_logits=not outputs_probabilities(model))
        logs["val_loss"] = float(np.mean(keras.ops.convert_to_numpy(losses)))
        logs["val_accuracy"] = float(np.mean(logits.argmax(axis=1) == self.y))


def train_loop(model, x, y, label, *, epochs, batch_size, callbacks=(), verbose=0,
               validation_data=None, checks=(), who="the model", sample_weight=None):
    """``model.fit`` on checked arrays into a new ``RunHistory``: timed, remembered by the
    recompile guard, and interruptible (Kernel -> Interrupt keeps the weights reached).

    ``checks``: callbacks that run before the recorder (so it sees their numbers).
    ``y`` and ``sample_weight`` may be dicts by output name (a model with several outputs).
    """
    history = RunHistory(label)
    start = time.perf_counter()
    try:
        extra = {} if sample_weight is None else {"sample_weight": sample_weight}
        model.fit(x, y, validation_data=validation_data, epochs=int(epochs),
                  batch_size=int(min(batch_size, len(x))), shuffle=True, verbose=verbose,
                  callbacks=[*checks, HistoryRecorder(history), *callbacks], **extra)
    except KeyboardInterrupt:
        history.interrupted = True
        print(f"Interrupted after {history.epochs} epochs: {who} keeps its current "
              "weights and the history so far is returned.")
    finally:
        history.seconds = time.perf_counter() - start
        remember_fit(model)
    if any(isinstance(c, StopSwitch) and c.requested for c in callbacks):
        history.interrupted = True
    return history


def fit(model, train, val=None, *, epochs=10, batch_size=32, callbacks=(), label="run",
        verbose=0, repeat=1):
    """Train ``model`` on ``train`` (checked), return a ``RunHistory``.

    ``repeat``: show each training example this many times per epoch.  With a
    handful of examples an epoch is a single step; repeating keeps the number of
    epochs (and of validation passes, which cost time) small.

    Interrupting (Kernel -> Interrupt, Ctrl-C) stops after the current step: the
    model keeps the weights it had reached and the history so far is returned
    with ``interrupted=True``.
    """
    check_integer(epochs, "epochs", 1, MAX_EPOCHS)
    check_integer(batch_size, "batch_size", 1)
    check_model(model)
    if not getattr(model, "compiled", False):
        raise RuntimeError(f"model {model.name!r} is not compiled; call "
                           "tk.compile_model(model, learning_rate=...) first")
    check_recompiled(model)
    x, y = as_xy(train, "training data")
    check_xy(model, x, y, "training data")
    check_classes(y)
    val_data = None
    if val is not None:
        vx, vy = as_xy(val, "validation data")
        check_xy(model, vx, vy, "validation data")
        val_data = (vx, vy)
    check_integer(repeat, "repeat", 1)
    if repeat > 1:
        x, y = np.concatenate([x] * repeat), np.concatenate([y] * repeat)
    # validation first, so the recorder and the user's callbacks see its numbers
    checks = [Validation(*val_data)] if val_data is not None else []
    return train_loop(model, x, y, label, epochs=epochs, batch_size=batch_size,
                      callbacks=callbacks, verbose=verbose, checks=checks)


def steps_per_epoch(n_examples, *, batch_size=32, repeat=1):
    """Optimizer steps in one epoch of ``fit`` on ``n_examples`` shown ``repeat`` times each
    (what a schedule's ``decay_steps`` counts): ``epochs * steps_per_epoch(...)`` for a run."""
    check_integer(n_examples, "n_examples", 1)
    check_integer(batch_size, "batch_size", 1)
    check_integer(repeat, "repeat", 1)
    return math.ceil(n_examples * repeat / min(batch_size, n_examples * repeat))


def repeat_for(n_examples, batch_size=32, steps_per_epoch=10):
    """How often to repeat a small training set so one epoch is about ``steps_per_epoch`` steps."""
    return max(1, math.ceil(steps_per_epoch * batch_size / max(1, n_examples)))


# --------------------------------------------------------------------------- the recompile guard
_fit_state = weakref.WeakKeyDictionary()


def _trainable_signature(model):
    return tuple(v.path for v in model.trainable_weights)


def _optimizer_signature(model):
    """The trainable set the model's optimizer was built for, or None if not built yet.

    Keras builds the optimizer at the first training step; JAX refuses (and breaks the
    model) when the trainable set no longer matches it, so it is the set to check.
    """
    optimizer = getattr(model, "optimizer", None)
    variables = getattr(optimizer, "_trainable_variables", None)
    if not getattr(optimizer, "built", False) or variables is None:
        return None
    return tuple(v.path for v in variables)


class RecompileError(RuntimeError):
    """``trainable`` changed after ``fit`` without a new ``compile``."""


def check_recompiled(model):
    """Raise if ``trainable`` changed since the training step was built without a recompile.

    On TensorFlow and torch Keras would silently keep training the old set of
    weights; on JAX it raises deep inside ``fit``.  Either way: compile again.
    """
    state = _fit_state.get(model)
    config = getattr(model, "_compile_config", None)
    if state is not None and state[0] is config:
        built_for = state[1]
    else:  # not trained by tk.fit since the last compile (maybe by Keras' own model.fit)
        built_for = _optimizer_signature(model)
    if built_for is not None and built_for != _trainable_signature(model):
        raise RecompileError(
            f"model {model.name!r}: `trainable` changed after fit() but the model was not "
            "compiled again, so training would still use the old set of weights; call "
            "tk.compile_model(model, learning_rate=...) (or model.compile(...)) first")


def remember_fit(model):
    """Record the trainable set the compiled training step was built with."""
    state = _fit_state.get(model)
    config = getattr(model, "_compile_config", None)
    if state is None or state[0] is not config:
        _fit_state[model] = (config, _trainable_signature(model))
