"""Knowledge transfer: distillation (teacher -> smaller student) and L2-SP fine-tuning.

Both are backend-neutral (TensorFlow, JAX, torch): no custom ``train_step``.

- **Distillation** (Hinton et al. 2015).  The teacher is frozen, so its logits are
  computed once and packed into the targets next to the hard labels; the student
  then trains with a plain ``model.fit`` and ``DistillationLoss``, written with
  ``keras.ops``.  Examples without a label (``unlabelled=``) still carry the
  teacher's soft labels: that is where a student can learn more than from the
  labelled few alone.
- **L2-SP** (Li et al. 2018).  Fine-tuning with a penalty ``alpha/2 * ||w - w_source||^2``
  that pulls the backbone towards the source weights instead of towards zero: an
  ``L2SP`` weight regularizer holding the reference values, attached to the
  backbone's variables, so Keras adds it to the loss (``model.losses``) itself.

Layer: after ``features`` (above ``training``), below ``plots``.
"""
from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

from .arraychecks import check_finite, label_fix
from .checks import check_integer, check_number
from .datachecks import check_data, checked_outputs
from .models import HEAD, check_kit_model, check_model, outputs_probabilities
from .training import MAX_EPOCHS, check_recompiled, train_loop

LABEL, HAS_LABEL = 0, 1          # columns of the packed targets; teacher logits follow
NO_LABEL = -1                    # the label of an unlabelled example in pack_targets


# --------------------------------------------------------------------------- distillation
def _check_temperature_alpha(temperature, alpha):
    check_number(temperature, "temperature", 0, math.inf,
                 "use a positive number, e.g. temperature=2.0 (1 = the teacher's plain "
                 "probabilities, higher = softer)")
    check_number(alpha, "alpha", 0, 1, "use a number from 0 to 1 (the weight of the hard-label "
                 "loss; 1 - alpha goes to the teacher's soft labels), e.g. alpha=0.5",
                 closed=True)


class DistillationLoss(keras.losses.Loss):
    """``alpha * CE(labels) + (1 - alpha) * T^2 * KL(softmax(teacher/T) || softmax(student/T))``.

    ``y_true`` is ``pack_targets(...)``: column 0 the class index, column 1 whether
    the example has a label (unlabelled ones contribute only the KL term), then the
    teacher's logits.  ``y_pred``: the student's logits.  The ``T^2`` factor keeps the
    soft term's gradients on the same scale whatever the temperature.
    """

    def __init__(self, temperature=2.0, alpha=0.5, name="distillation", **kwargs):
        _check_temperature_alpha(temperature, alpha)
        super().__init__(name=name, **kwargs)
        self.temperature = float(temperature)
        self.alpha = float(alpha)

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, "float32")
        y_pred = ops.cast(y_pred, "float32")
        num_classes = ops.shape(y_pred)[-1]
        has_label = y_true[:, HAS_LABEL]
        labels = ops.cast(ops.maximum(y_true[:, LABEL], 0.0), "int32")
        teacher = y_true[:, 2:]
        hard = -ops.sum(ops.one_hot(labels, num_classes) * ops.log_softmax(y_pred, axis=-1),
                        axis=-1)
        t = self.temperature
        teacher_logp = ops.log_softmax(teacher / t, axis=-1)
        student_logp = ops.log_softmax(y_pred / t, axis=-1)
        kl = ops.sum(ops.exp(teacher_logp) * (teacher_logp - student_logp), axis=-1)
        return self.alpha * has_label * hard + (1.0 - self.alpha) * (t * t) * kl

    def get_config(self):
        return {**super().get_config(), "temperature": self.temperature, "alpha": self.alpha}


def teacher_logits(teacher, data, batch_size=256):
    """The frozen teacher's logits (n, classes) for a Dataset or images, computed once."""
    _check_logits_model(teacher, "teacher")
    x = check_data(data, "images", teacher, labels=False)
    return checked_outputs(teacher, x, batch_size).astype(np.float32)


def _check_logits_model(model, what):
    """Distillation softens logits (divides them by T): a softmax output is not logits."""
    check_model(model, what)
    if outputs_probabilities(model):
        raise ValueError(f"{what} {model.name!r} ends in a softmax ({model.layers[-1].name!r}): "
                         "distillation needs logits; pass a model whose last layer has no "
                         "activation (as tk.build_model builds it)")


def unlabelled_rest(pool, labelled):
    """The images of ``pool`` that are not in ``labelled``, without labels (an array).

    E.g. ``unlabelled_rest(target.train, tk.few_shot(target.train, 10))``: the rest of
    the training pool, for a teacher to label softly.
    """
    px = check_data(pool, "pool", labels=False)
    lx = check_data(labelled, "labelled data", labels=False)
    if px.shape[1:] != lx.shape[1:] or px.dtype != lx.dtype:
        raise ValueError(f"labelled images {lx.shape[1:]} {lx.dtype} are not images of the pool "
                         f"({px.shape[1:]} {px.dtype}); pass a subset of the pool, e.g. "
                         "unlabelled_rest(task.train, tk.few_shot(task.train, 10))")
    pool_bytes = [img.tobytes() for img in px]
    missing = len({img.tobytes() for img in lx} - set(pool_bytes))
    if missing:
        raise ValueError(f"{missing} of the {len(lx)} labelled images are not in the pool; pass "
                         "the pool they were drawn from, e.g. unlabelled_rest(task.train, "
                         "tk.few_shot(task.train, 10))")
    seen = {img.tobytes() for img in lx}
    return px[np.array([b not in seen for b in pool_bytes], dtype=bool)]


def pack_targets(labels, logits):
    """Targets for ``DistillationLoss``: [label, has_label, teacher logits...] per example.

    ``labels``: class indices, ``-1`` (``NO_LABEL``) for an unlabelled example.
    """
    labels = np.asarray(labels)
    try:
        logits = np.asarray(logits, dtype=np.float32)
    except (TypeError, ValueError):
        raise TypeError("logits must be an array of numbers (n, classes), e.g. "
                        "tk.teacher_logits(teacher, images)") from None
    if labels.ndim != 1 or logits.ndim != 2 or len(labels) != len(logits):
        raise ValueError(f"labels of shape {labels.shape} and logits of shape {logits.shape} "
                         "do not match; pass one label (or -1) and one row of logits per example")
    if labels.dtype.kind not in "iu":
        raise ValueError(f"labels must be integer class indices (-1: no label), got dtype "
                         f"{labels.dtype}; {label_fix(labels)}")
    check_finite(logits, "logits", "compute them with tk.teacher_logits from finite images")
    if labels.size and (labels.min() < NO_LABEL or labels.max() >= logits.shape[1]):
        bad = int(labels.max() if labels.max() >= logits.shape[1] else labels.min())
        raise ValueError(f"labels has label {bad} but the logits have {logits.shape[1]} classes "
                         f"(labels 0..{logits.shape[1] - 1}, or -1 for 'no label'); pass one "
                         "such label per example")
    has_label = (labels >= 0).astype(np.float32)
    return np.concatenate([labels.astype(np.float32)[:, None], has_label[:, None], logits], axis=1)


def distill(student, teacher, train, unlabelled=None, val=None, epochs=10, temperature=2.0,
            alpha=0.5, learning_rate=3e-3, batch_size=32, repeat=1, callbacks=(),
            label="distilled"):
    """Train ``student`` on ``train``'s labels plus ``teacher``'s soft labels; returns a ``RunHistory``.

    ``unlabelled``: extra images (a Dataset, whose labels are ignored, or an array):
    the student sees only the teacher's soft labels for them.  The teacher is not
    trained.  ``val``: labelled validation data (its loss uses the teacher too).
    The history records the distillation loss; score the student with ``tk.evaluate``.
    """
    _check_temperature_alpha(temperature, alpha)
    check_number(learning_rate, "learning_rate", 0, 1.0, "use a positive value such as 3e-3")
    check_integer(epochs, "epochs", 1, MAX_EPOCHS)
    check_integer(repeat, "repeat", 1)
    _check_logits_model(student, "student")
    _check_logits_model(teacher, "teacher")
    if teacher.outputs[0].shape[-1] != student.outputs[0].shape[-1]:
        raise ValueError(f"teacher has {teacher.outputs[0].shape[-1]} outputs but student "
                         f"{student.outputs[0].shape[-1]}; build both with the task's num_classes")
    x, y = check_data(train, "training data", student)
    labels = np.asarray(y)
    if unlabelled is not None:
        ux = check_data(unlabelled, "unlabelled images", student, labels=False)
        x = np.concatenate([x, ux]).astype(np.float32)
        labels = np.concatenate([labels, np.full(len(ux), NO_LABEL)])
    targets = pack_targets(labels, teacher_logits(teacher, x))
    val_data = None
    if val is not None:
        vx, vy = check_data(val, "validation data", student)
        val_data = (vx, pack_targets(vy, teacher_logits(teacher, vx)))
    if repeat > 1:
        x, targets = np.concatenate([x] * repeat), np.concatenate([targets] * repeat)
    student.compile(optimizer=keras.optimizers.Adam(learning_rate),
                    loss=DistillationLoss(temperature, alpha))
    check_recompiled(student)
    return train_loop(student, x, targets, label, epochs=epochs, batch_size=batch_size,
                      callbacks=callbacks, validation_data=val_data, who="the student")


# --------------------------------------------------------------------------- L2-SP
def _check_penalty(alpha):
    check_number(alpha, "alpha", 0, math.inf, "use a non-negative number (the L2-SP penalty "
                 "strength), e.g. alpha=1e-2, or 0 for no penalty", closed=True)


class L2SP(keras.regularizers.Regularizer):
    """``alpha / 2 * ||w - reference||^2``: weight decay towards the source weights, not zero."""

    def __init__(self, reference, alpha=1e-2):
        _check_penalty(alpha)
        self.reference = np.array(reference, dtype=np.float32, copy=True)
        self.alpha = float(alpha)

    def __call__(self, x):
        # ops.subtract converts the NumPy reference on every backend (torch tensors refuse `-`)
        diff = ops.subtract(ops.cast(x, "float32"), ops.convert_to_tensor(self.reference))
        return 0.5 * self.alpha * ops.sum(ops.square(diff))

    def get_config(self):
        # the reference values are data of one model, not configuration
        return {"alpha": self.alpha}


def _penalised_variables(model):
    """The backbone's learned weights (conv kernels, BatchNorm scale/offset): not the new head."""
    return [v for layer in model.layers if layer.name != HEAD and layer.weights
            for v in layer.weights if "moving_" not in v.path]


def attach_l2sp(model, alpha=1e-2):
    """Pull the backbone towards its *current* values during later training; returns the count.

    Call it right after loading the source weights and before compiling (a compiled
    training step does not see regularizers added later).  ``detach_l2sp`` removes it.
    """
    _check_penalty(alpha)
    check_kit_model(model, needs=("head",), purpose="L2-SP anchors every layer but the new head",
                    fix="build it with tk.build_model (its classifier is the layer 'head')")
    variables = _penalised_variables(model)
    if not variables:
        raise ValueError(f"model {model.name!r} has no backbone weights to anchor; "
                         "build it with tk.build_model")
    for v in variables:
        v.regularizer = L2SP(keras.ops.convert_to_numpy(v), alpha)
    return len(variables)


def detach_l2sp(model):
    """Remove ``L2SP`` regularizers (compile again afterwards)."""
    for v in model.weights:
        if isinstance(v.regularizer, L2SP):
            v.regularizer = None


def l2sp_penalty(model):
    """The current L2-SP penalty of every anchored variable (trainable or not), as a float."""
    check_model(model)
    total = 0.0
    for v in model.weights:
        if isinstance(v.regularizer, L2SP):
            total += float(keras.ops.convert_to_numpy(v.regularizer(v.value)))
    return total


__all__ = ["DistillationLoss", "L2SP", "NO_LABEL", "attach_l2sp", "detach_l2sp", "distill",
           "l2sp_penalty", "pack_targets", "teacher_logits", "unlabelled_rest"]
