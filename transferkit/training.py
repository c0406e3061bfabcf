"""Compile, train, evaluate: thin, checked wrappers around Keras.

``fit`` validates its inputs, refuses to train a model whose ``trainable``
flags changed since it was compiled, and returns a ``RunHistory`` that can be
plotted and chained across phases (head first, then fine-tuning).
"""
from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field

import keras
import numpy as np

from .checks import check_rate, is_integer
from .data import Dataset
from .models import build_model, check_input
from .transfer import check_recompiled, freeze, remember_fit, unfreeze

METRICS = ("loss", "accuracy", "val_loss", "val_accuracy")
MAX_PIXEL = 2.0  # above this, images are 0-255 values, not the kit's [0, 1] pixels
MIN_TOP_PIXEL = 1.01 / 255  # at or below this, 0-255 images were divided by 255 twice


def _check_number(what, value, low, high, hint):
    try:
        ok = math.isfinite(float(value)) and low < float(value) <= high
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"{what}={value!r} is out of range; {hint}")


def compile_model(model, learning_rate=1e-3):
    """Adam + sparse cross-entropy on logits + accuracy. Call again after changing ``trainable``."""
    check_rate(learning_rate)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


@dataclass
class RunHistory:
    """Per-epoch metrics of one run, possibly made of several phases."""

    label: str = "run"
    metrics: dict = field(default_factory=lambda: {k: [] for k in METRICS})
    phases: list = field(default_factory=list)  # (name, first epoch index)
    seconds: float = 0.0
    interrupted: bool = False

    @property
    def epochs(self):
        return len(self.metrics["loss"])

    def add_epoch(self, logs):
        for key in METRICS:
            value = logs.get(key)
            self.metrics[key].append(float(value) if value is not None else float("nan"))

    def then(self, other, label=None):
        """This run followed by ``other`` (a later phase) as one history."""
        out = RunHistory(label or self.label)
        for key in METRICS:
            out.metrics[key] = self.metrics[key] + other.metrics[key]
        out.phases = (self.phases or [(self.label, 0)]) + [
            (name, start + self.epochs) for name, start in (other.phases or [(other.label, 0)])]
        out.seconds = self.seconds + other.seconds
        return out

    def last(self, key="val_accuracy"):
        return self.metrics[key][-1] if self.metrics[key] else float("nan")

    def __repr__(self):
        return (f"RunHistory({self.label!r}: {self.epochs} epochs, "
                f"loss {self.last('loss'):.3f}, val_accuracy {self.last('val_accuracy'):.3f})")


class _Validation(keras.callbacks.Callback):
    """Validation loss and accuracy after each epoch, from one forward pass in inference mode.

    Keras' own validation pass (``validation_data=``) needs a compiled test step, traced
    again after every ``compile`` -- a second or two per phase on a small CPU, more than
    the pass itself for a validation set of a few hundred images.  The numbers are the
    same: mean cross-entropy of the logits and the share of correct predictions.
    """

    def __init__(self, x, y, batch_size=256):
        super().__init__()
        self.x, self.y, self.batch_size = x, y, batch_size

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        logits = forward(self.model, self.x, self.batch_size)
        losses = keras.losses.sparse_categorical_crossentropy(self.y, logits, from_logits=True)
        logs["val_loss"] = float(np.mean(keras.ops.convert_to_numpy(losses)))
        logs["val_accuracy"] = float(np.mean(logits.argmax(axis=1) == self.y))


def forward(model, x, batch_size=256):
    """The model's outputs in inference mode, in chunks, as one numpy array.

    A direct call runs eagerly: no traced predict step, which Keras would build again
    after every ``compile``; for a few thousand small images that is the faster way.
    """
    parts = [keras.ops.convert_to_numpy(model(x[i:i + batch_size], training=False))
             for i in range(0, len(x), batch_size)]
    return np.concatenate(parts) if parts else np.zeros((0,) + tuple(model.outputs[0].shape[1:]))


class StopSwitch(keras.callbacks.Callback):
    """A Stop button for ``fit``: after ``request()`` (from any thread) training ends at the
    end of the current batch, and the run's history says ``interrupted=True``.

    ``run_strategy`` then starts no further phase.  The model keeps the weights it reached.
    """

    def __init__(self):
        super().__init__()
        self._event = threading.Event()

    def request(self):
        self._event.set()

    @property
    def requested(self):
        return self._event.is_set()

    def on_train_batch_end(self, batch, logs=None):
        if self._event.is_set():
            self.model.stop_training = True


class _Recorder(keras.callbacks.Callback):
    def __init__(self, history):
        super().__init__()
        self.history_ = history

    def on_epoch_end(self, epoch, logs=None):
        self.history_.add_epoch(logs or {})


def _as_xy(data, what):
    if isinstance(data, Dataset):
        return data.x, data.y
    if isinstance(data, (tuple, list)) and len(data) == 2:
        return np.asarray(data[0]), np.asarray(data[1])
    hint = ("pass task.train, task.val or task.test" if hasattr(data, "train") else
            "pass (x, y): the images and their integer labels")
    raise TypeError(f"{what} must be a tk.Dataset or an (x, y) pair, got "
                    f"{type(data).__name__}; {hint}")


def _check_xy(model, x, y, what):
    if len(x) == 0:
        raise ValueError(f"{what} is empty: there is nothing to train or test on; "
                         "check the split or the k-shot sampler")
    check_input(model, x)
    if x.dtype.kind not in "fiu":
        raise TypeError(f"{what} images have dtype {x.dtype}; convert with x.astype('float32')")
    finite = np.isfinite(x) if x.dtype.kind == "f" else None
    if finite is not None and not finite.all():
        bad = int(np.count_nonzero(~finite.reshape(len(x), -1).all(axis=1)))
        raise ValueError(f"{what} has {bad} image(s) with NaN or infinite pixels; drop or "
                         "repair them, e.g. x = np.nan_to_num(x, nan=0.0)")
    _check_pixels(x, what)
    y = np.asarray(y)
    if len(x) != len(y):
        raise ValueError(f"{what}: {len(x)} images but {len(y)} labels; pass one label per image")
    if y.dtype.kind not in "iu" or y.ndim != 1:
        raise ValueError(f"{what} labels must be a 1-D array of integer class indices, got "
                         f"dtype {y.dtype} and shape {y.shape}; {_label_fix(y)}")
    outputs = int(model.outputs[0].shape[-1])
    if y.min() < 0 or y.max() >= outputs:
        bad = int(y.max() if y.max() >= outputs else y.min())
        raise ValueError(f"{what} has label {bad} but the model's head has {outputs} outputs "
                         f"(labels 0..{outputs - 1}); build the model with num_classes matching "
                         "the task")


def _check_pixels(x, what):
    """The kit's pixels lie in [0, 1] and reach about 1: anything else trains (or scores)
    without an error, just wrongly."""
    low, top = float(np.min(x)), float(np.max(x))
    if low < 0:
        kind, fix = (("[-1, 1] values", "x = (x + 1) / 2") if top <= 1.0 + 1e-6 else
                     ("standardised values (mean 0, std 1)",
                      "x = (x - x.min()) / (x.max() - x.min())"))
        raise ValueError(f"{what} pixel values range from {low:.3g} to {top:.3g}: they look like "
                         f"{kind}, but the kit's models expect pixels in [0, 1]; rescale first, "
                         f"e.g. {fix}")
    if top > MAX_PIXEL:
        # raw 0-255 images train without any error, just badly (saturated BatchNorm, huge logits)
        raise ValueError(f"{what} pixel values reach {top:g}: they look like 0-255 values, but "
                         "the kit's models expect pixels in [0, 1]; divide first, e.g. "
                         "x.astype('float32') / 255")
    if top == 0:
        raise ValueError(f"every pixel of {what} is 0: the images are blank, there is nothing to "
                         "learn or test; check how they were loaded or converted (e.g. "
                         "x.astype('float32') / 255, not x // 255)")
    if top <= MIN_TOP_PIXEL:
        raise ValueError(f"{what} pixel values reach only {top:.3g}: they look divided by 255 "
                         "twice, but the kit's pixels reach about 1; divide 0-255 values once, "
                         "e.g. x = raw.astype('float32') / 255")


def _label_fix(y):
    """The fix for labels that are not a 1-D array of integer class indices."""
    if y.dtype.kind in "USO":
        return ("map class names to indices, e.g. names, y = np.unique(y, return_inverse=True)")
    if y.ndim == 2 and y.shape[1] == 1:
        return "it is a column: flatten it, e.g. y = y.ravel()" + (
            ".astype('int64')" if y.dtype.kind not in "iu" else "")
    if y.ndim == 2:
        return "one row per image looks one-hot: take the class index, e.g. y = y.argmax(axis=1)"
    if y.ndim != 1:
        return "pass one class index per image, e.g. y.reshape(len(x))"
    if y.dtype.kind == "b":
        return "convert with y.astype('int64')"
    if y.dtype.kind == "f" and len(y) and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
        return "convert with y.astype('int64')"
    return "these are not whole numbers: pass the class indices 0..n-1 (class scores: y.argmax(axis=1))"


def _check_classes(y):
    present = np.unique(y)
    if len(present) < 2:
        raise ValueError(f"training data has a single class (label {int(present[0])}, all "
                         f"{len(y)} examples): a classifier learns nothing from one class; pass "
                         "examples of at least 2 classes (check the labels or the k-shot sampler)")


def fit(model, train, val=None, epochs=10, batch_size=32, callbacks=(), label="run", verbose=0,
        repeat=1):
    """Train ``model`` on ``train`` (checked), return a ``RunHistory``.

    ``repeat``: show each training example this many times per epoch.  With a
    handful of examples an epoch is a single step; repeating keeps the number of
    epochs (and of validation passes, which cost time) small.

    Interrupting (Kernel -> Interrupt, Ctrl-C) stops after the current step: the
    model keeps the weights it had reached and the history so far is returned
    with ``interrupted=True``.
    """
    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or not 1 <= epochs <= 10_000:
        raise ValueError(f"epochs={epochs!r} is out of range; use an integer from 1 to 10000")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r} is out of range; use an integer >= 1")
    if not getattr(model, "compiled", False):
        raise RuntimeError(f"model {model.name!r} is not compiled; call "
                           "tk.compile_model(model, learning_rate=...) first")
    check_recompiled(model)
    x, y = _as_xy(train, "training data")
    _check_xy(model, x, y, "training data")
    _check_classes(y)
    val_data = None
    if val is not None:
        vx, vy = _as_xy(val, "validation data")
        _check_xy(model, vx, vy, "validation data")
        val_data = (vx, vy)
    if isinstance(repeat, bool) or not isinstance(repeat, (int, np.integer)) or repeat < 1:
        raise ValueError(f"repeat={repeat!r} is out of range; use an integer >= 1")
    if repeat > 1:
        x, y = np.concatenate([x] * repeat), np.concatenate([y] * repeat)
    history = RunHistory(label)
    start = time.perf_counter()
    try:
        # validation first, so the recorder and the user's callbacks see its numbers
        checks = [_Validation(*val_data)] if val_data is not None else []
        model.fit(x, y, epochs=int(epochs), batch_size=int(min(batch_size, len(x))),
                  shuffle=True, verbose=verbose,
                  callbacks=[*checks, _Recorder(history), *callbacks])
    except KeyboardInterrupt:
        history.interrupted = True
        print(f"Interrupted after {history.epochs} epochs: the model keeps its current "
              "weights and the history so far is returned.")
    finally:
        history.seconds = time.perf_counter() - start
        remember_fit(model)
    if any(isinstance(c, StopSwitch) and c.requested for c in callbacks):
        history.interrupted = True
    return history


# --------------------------------------------------------------------------- evaluation
@dataclass
class Scores:
    accuracy: float
    precision: float
    recall: float
    f1: float
    confusion: np.ndarray
    class_names: tuple = ()

    def __str__(self):
        return (f"accuracy {self.accuracy:.1%} | macro precision {self.precision:.1%} | "
                f"macro recall {self.recall:.1%} | macro F1 {self.f1:.1%}")

    def _repr_pretty_(self, p, cycle):
        p.text(str(self))


def predict_classes(model, data, batch_size=256):
    x, _ = _as_xy(data, "data")
    check_input(model, x)
    return forward(model, x, batch_size).argmax(axis=1)


def score_predictions(y_true, y_pred, class_names=None):
    """``Scores`` (accuracy, macro precision / recall / F1, confusion) from labels and predictions."""
    from sklearn import metrics

    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape or y_true.ndim != 1 or len(y_true) == 0:
        raise ValueError(f"y_true {y_true.shape} and y_pred {y_pred.shape} must be two 1-D arrays "
                         "of the same, non-zero length: one prediction per label")
    n = len(class_names) if class_names else int(max(y_true.max(), y_pred.max())) + 1
    labels = np.arange(n)
    p, r, f, _ = metrics.precision_recall_fscore_support(y_true, y_pred, labels=labels,
                                                         average="macro", zero_division=0)
    names = tuple(class_names) if class_names else tuple(map(str, labels))
    return Scores(float(metrics.accuracy_score(y_true, y_pred)), float(p), float(r), float(f),
                  metrics.confusion_matrix(y_true, y_pred, labels=labels), names)


def _check_head_fits(model, data, outputs):
    """A Dataset names its classes: a head with another number of outputs was built for
    another task, and its scores would mean nothing."""
    if isinstance(data, Dataset) and data.class_names and len(data.class_names) != outputs:
        names = ", ".join(map(str, data.class_names[:3])) + (", ..." if data.num_classes > 3
                                                             else "")
        raise ValueError(f"model {model.name!r} has {outputs} outputs but {data.name!r} has "
                         f"{data.num_classes} classes ({names}): the head was built for another "
                         "task; evaluate a model built for this one (e.g. "
                         f"tk.build_model({data.num_classes}) trained on it, or tk.with_head)")


def evaluate(model, data):
    """Accuracy, macro precision / recall / F1 and the confusion matrix (scikit-learn)."""
    x, y = _as_xy(data, "test data")
    _check_xy(model, x, y, "test data")
    outputs = int(model.outputs[0].shape[-1])
    _check_head_fits(model, data, outputs)
    names = (data.class_names if isinstance(data, Dataset) and len(data.class_names) == outputs
             else tuple(map(str, range(outputs))))
    return score_predictions(y, predict_classes(model, (x, y)), names)


# --------------------------------------------------------------------------- recipes
def repeat_for(n_examples, batch_size=32, steps_per_epoch=10):
    """How often to repeat a small training set so one epoch is about ``steps_per_epoch`` steps."""
    return max(1, math.ceil(steps_per_epoch * batch_size / max(1, n_examples)))


def train_from_scratch(train, val, num_classes, epochs, learning_rate=3e-3, batch_size=32,
                       callbacks=(), seed=0, repeat=1):
    """A freshly initialised model trained on ``train`` only: the baseline to beat."""
    from .environment import set_seed

    set_seed(seed)
    model = compile_model(build_model(num_classes, name="scratch"), learning_rate)
    history = fit(model, train, val, epochs, batch_size, callbacks, label="from scratch",
                  repeat=repeat)
    return model, history


def fine_tune(model, train, val, head_epochs, finetune_epochs, head_lr=1e-2, finetune_lr=3e-4,
              unfreeze_top=None, batch_size=32, callbacks=(), repeat=1):
    """Two-phase recipe: train the new head on a frozen backbone, then unfreeze and train gently.

    ``unfreeze_top``: how many of the top blocks to open in phase 2 (default: all).
    Returns the history of both phases as one ``RunHistory``.
    """
    freeze(model)
    compile_model(model, head_lr)
    head = fit(model, train, val, head_epochs, batch_size, callbacks, label="head only",
               repeat=repeat)
    if head.interrupted:
        return head
    unfreeze(model, top=unfreeze_top)
    compile_model(model, finetune_lr)
    tuned = fit(model, train, val, finetune_epochs, batch_size, callbacks, label="fine-tune",
                repeat=repeat)
    return head.then(tuned, label="fine-tuned")


# --------------------------------------------------------------------------- strategies
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


def _check_epochs(epochs):
    if not is_integer(epochs) or not 1 <= epochs <= 10_000:
        raise ValueError(f"epochs={epochs!r} is out of range; use an integer from 1 to 10000")


def run_strategy(strategy, train, val, num_classes, source_weights=None, epochs=12,
                 learning_rate=1e-2, seed=0, batch_size=32, repeat=None, callbacks=(),
                 allow_partial=False):
    """Build a model, transfer weights if the strategy uses them, run its phases.

    ``learning_rate`` is the base (head) rate; fine-tuning phases scale it down as the
    strategy says.  ``repeat`` defaults to ``repeat_for(len(train))``.  ``epochs`` are
    shared by the phases, at least one each (``strategy.min_epochs()``).

    A transfer strategy refuses source weights that leave part of the backbone at its
    random start (another architecture, a narrower CNN): it would train a random backbone
    and call it transfer.  ``allow_partial=True`` transfers what fits anyway.  The result's
    ``transfer`` is the ``LoadReport`` (``run.describe_transfer()`` in one line).
    """
    from .environment import set_seed
    from .models import block_layers, block_names
    from .strategies import get_strategy, split_epochs
    from .transfer import PARTIAL_FIX, load_matching_weights

    strategy = get_strategy(strategy)
    check_rate(learning_rate, example="1e-2")
    _check_epochs(epochs)
    if strategy.uses_source and source_weights is None:
        raise ValueError(f"strategy {strategy.key!r} transfers weights: pass source_weights= "
                         "(e.g. tk.source_model().weights_path) or use 'scratch'")
    if not isinstance(allow_partial, bool):
        raise TypeError(f"allow_partial={allow_partial!r}; pass True or False")
    x, y = _as_xy(train, "training data")
    repeat = repeat_for(len(x), batch_size) if repeat is None else repeat
    set_seed(seed)
    model = build_model(num_classes, name=strategy.key)
    phases = strategy.phases(block_names(model))
    if epochs < len(phases):
        raise ValueError(f"epochs={epochs} is too few for strategy {strategy.key!r}: it trains "
                         f"in {len(phases)} phases ({', '.join(p.name for p in phases)}) of at "
                         f"least one epoch each; use epochs >= {len(phases)}")
    _check_xy(model, x, y, "training data")  # before the source weights are even read
    _check_classes(y)
    report = None
    if strategy.uses_source:
        report = load_matching_weights(
            model, source_weights, require_backbone=not allow_partial,
            fix=f"{PARTIAL_FIX}, or run_strategy(..., allow_partial=True) to transfer what fits")
    history = None
    for phase, phase_epochs in zip(phases, split_epochs(phases, epochs)):
        for layer in model.layers:
            layer.trainable = False
        for block in phase.blocks:
            for layer in block_layers(model, block):
                is_bn = layer.__class__.__name__ == "BatchNormalization"
                layer.trainable = phase.train_batchnorm or not is_bn
        # (never `model.trainable = True` here: on JAX and torch it unfreezes every layer)
        lr = learning_rate * phase.lr_scale
        if phase.block_lr:
            model.compile(optimizer=ScaledAdam(phase.block_lr, learning_rate=lr),
                          loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                          metrics=["accuracy"])
        else:
            compile_model(model, lr)
        part = fit(model, train, val, int(phase_epochs), batch_size, callbacks,
                   label=phase.name, repeat=repeat)
        part.phases = [(phase.name, 0)]
        history = part if history is None else history.then(part)
        if part.interrupted:
            break
    history.label = strategy.title
    settings = {"strategy": strategy.key, "epochs": epochs, "learning_rate": learning_rate,
                "seed": seed, "train_examples": int(len(x)), "repeat": repeat}
    return StrategyRun(strategy, model, history, settings, report)


def sweep(strategies, task, shots=(1, 2, 5, 10, 20, 40), source_weights=None, epochs=6,
          learning_rate=1e-2, seed=0, progress=None, allow_partial=False):
    """Test accuracy of each strategy for each number of shots per class (one seed).

    Returns a list of dicts (strategy, shots, accuracy, macro_f1, seconds, transfer).
    ``progress(done, total, row)`` is called after every run if given.
    Every argument is checked before the first run.
    """
    from .data import Task, few_shot
    from .strategies import STRATEGIES, get_strategy

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
    shots = list(shots)
    most = min(task.train.counts())
    for k in shots:
        if not is_integer(k) or not 1 <= k <= most:
            raise ValueError(f"shots={shots!r} holds {k!r}; use integers from 1 to {most} "
                             f"(the fewest images of a class in {task.train.name!r})")
    check_rate(learning_rate, example="1e-2")
    _check_epochs(epochs)
    for s in chosen:
        if epochs < s.min_epochs():
            raise ValueError(f"epochs={epochs} is too few for strategy {s.key!r}: it trains in "
                             f"{s.min_epochs()} phases of at least one epoch each; use epochs "
                             f">= {max(c.min_epochs() for c in chosen)}")
        if s.uses_source and source_weights is None:
            raise ValueError(f"strategy {s.key!r} transfers weights: pass source_weights= "
                             "(e.g. tk.source_model().weights_path) or use 'scratch'")
    from .environment import set_seed
    set_seed(seed)
    rows, total = [], len(chosen) * len(shots)
    for s in chosen:
        for k in shots:
            train = few_shot(task.train, k, seed)
            # no validation pass: a sweep reports test accuracy only, and it saves time
            run = run_strategy(s, train, None, task.num_classes, source_weights, epochs,
                               learning_rate, seed, allow_partial=allow_partial)
            scores = evaluate(run.model, task.test)
            rows.append({"strategy": run.strategy.title, "shots": k,
                         "accuracy": scores.accuracy, "macro_f1": scores.f1,
                         "seconds": run.history.seconds, "transfer": run.describe_transfer()})
            if progress:
                progress(len(rows), total, rows[-1])
    return rows
