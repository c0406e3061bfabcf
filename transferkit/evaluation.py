"""Scoring and honest evaluation: accuracy, macro precision / recall / F1 and the confusion
matrix (``evaluate``), scikit-learn's metrics per class, and results over several seeds.

One run's accuracy is one draw: another seed picks other shots and another
initialisation.  ``over_seeds`` repeats a run and reports mean ± spread, so a
difference can be judged against the noise.  Choices (epochs, learning rate,
strategy) are made on validation data; the test split only reports the result.
"""
from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass

import numpy as np
from sklearn import metrics

from .arraychecks import check_label_values
from .checks import check_choice, check_integer, is_integer
from .data import Dataset
from .datachecks import check_data, check_head_fits, checked_outputs, outputs_of
from .history import RunHistory
from .models import check_model, forward, outputs_probabilities

__all__ = ["ClassReport", "Complexity", "ComplexityReport", "Mistakes", "Predictions", "Scores",
           "SeedSummary", "class_probabilities", "class_report", "complexity", "evaluate",
           "over_seeds", "predict", "predict_classes", "score_predictions", "softmax", "worst_mistakes"]


# --------------------------------------------------------------------------- scores
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
    x = check_data(data, "data", model, labels=False)
    return checked_outputs(model, x, batch_size).argmax(axis=1)


def class_probabilities(model, x, batch_size=256):
    """Class probabilities (float64 rows) of checked images: the softmax of the model's
    logits, or its outputs as they are when its last layer already is a softmax."""
    out = checked_outputs(model, x, batch_size)
    return np.asarray(out, dtype="float64") if outputs_probabilities(model) else softmax(out)


def score_predictions(y_true, y_pred, class_names=None):
    """``Scores`` (accuracy, macro precision / recall / F1, confusion) from labels and predictions."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape or y_true.ndim != 1 or len(y_true) == 0:
        raise ValueError(f"y_true {y_true.shape} and y_pred {y_pred.shape} must be two 1-D arrays "
                         "of the same, non-zero length: one prediction per label")
    classes = len(class_names) if class_names else None
    for values, what in ((y_true, "y_true"), (y_pred, "y_pred")):
        check_label_values(values, what, classes, why=f"{classes} class names are given",
                           fix="pass class_names with one name per class, or labels in range")
    n = classes or int(max(y_true.max(), y_pred.max())) + 1
    labels = np.arange(n)
    p, r, f, _ = metrics.precision_recall_fscore_support(y_true, y_pred, labels=labels,
                                                         average="macro", zero_division=0)
    names = tuple(class_names) if class_names else tuple(map(str, labels))
    return Scores(float(metrics.accuracy_score(y_true, y_pred)), float(p), float(r), float(f),
                  metrics.confusion_matrix(y_true, y_pred, labels=labels), names)


def evaluate(model, data):
    """Accuracy, macro precision / recall / F1 and the confusion matrix (scikit-learn)."""
    x, y = check_data(data, "test data", model)
    outputs = outputs_of(model)
    check_head_fits(model, data, outputs)
    names = (data.class_names if isinstance(data, Dataset) and len(data.class_names) == outputs
             else tuple(map(str, range(outputs))))
    return score_predictions(y, predict_classes(model, (x, y)), names)


# --------------------------------------------------------------------------- per class


@dataclass
class ClassReport:
    """Precision, recall, F1 and support of every class (scikit-learn), printable as a table."""

    class_names: tuple
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    support: np.ndarray
    text: str

    def worst(self, n=3, by="f1"):
        """The ``n`` classes with the lowest score ``by`` ('precision', 'recall' or 'f1')."""
        check_choice(by, "by", ("precision", "recall", "f1"))
        values = getattr(self, by)
        order = np.argsort(values, kind="stable")[:n]
        return [(self.class_names[i], float(values[i])) for i in order]

    def __str__(self):
        return self.text

    def _repr_pretty_(self, p, cycle):
        p.text(self.text)


def class_report(model, data, digits=3):
    """Per-class precision / recall / F1 of ``model`` on ``data`` (a Dataset or (x, y))."""
    x, y = check_data(data, "test data", model)
    check_head_fits(model, data, outputs_of(model))
    pred = predict_classes(model, (x, y))
    labels = np.arange(int(model.outputs[0].shape[-1]))
    names = tuple(data.class_names) if hasattr(data, "class_names") else tuple(map(str, labels))
    p, r, f, s = metrics.precision_recall_fscore_support(y, pred, labels=labels, zero_division=0)
    text = metrics.classification_report(y, pred, labels=labels, target_names=list(names),
                                         digits=digits, zero_division=0)
    return ClassReport(names, p, r, f, s, text)


@dataclass
class SeedSummary:
    """Values of one measurement over several seeds: mean and sample standard deviation."""

    seeds: tuple
    values: tuple
    label: str = "value"
    percent: bool = True

    @property
    def mean(self):
        return statistics.fmean(self.values)

    @property
    def std(self):
        """Sample standard deviation (n - 1); NaN for a single seed (no spread measurable)."""
        return statistics.stdev(self.values) if len(self.values) > 1 else float("nan")

    def _fmt(self, v):
        return f"{v:.1%}" if self.percent else f"{v:.3g}"

    def __str__(self):
        spread = ("(one seed: no spread)" if math.isnan(self.std)
                  else f"± {self._fmt(self.std)}")
        each = ", ".join(self._fmt(v) for v in self.values)
        return (f"{self.label}: {self._fmt(self.mean)} {spread} over {len(self.values)} "
                f"seeds [{each}]")

    def _repr_pretty_(self, p, cycle):
        p.text(str(self))


def over_seeds(fn, seeds=(0, 1, 2), label="accuracy", percent=True):
    """Run ``fn(seed)`` for every seed and summarise: a ``SeedSummary`` (mean, std, values).

    ``fn`` returns a number, or a ``Scores`` whose accuracy is used.
    """
    if not callable(fn):
        raise TypeError(f"fn={fn!r} is not a function; pass one that takes a seed and returns "
                        "a number, e.g. over_seeds(lambda seed: run(seed).accuracy)")
    if isinstance(seeds, (str, bytes)) or not hasattr(seeds, "__iter__"):
        raise ValueError(f"seeds={seeds!r} is not a sequence of seeds; pass several, e.g. "
                         "seeds=(0, 1, 2) or seeds=range(3)")
    seeds = tuple(seeds)
    if not seeds or any(not is_integer(s) or s < 0 for s in seeds):
        raise ValueError(f"seeds={seeds!r}: give one or more non-negative integers, e.g. (0, 1, 2)")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds={seeds!r} repeats a seed; a repeat adds no information")
    values = []
    for seed in seeds:
        out = fn(int(seed))
        out = out.accuracy if isinstance(out, Scores) else out
        try:
            value = float(out)
        except (TypeError, ValueError):
            raise TypeError(f"fn(seed={seed}) returned {type(out).__name__}; return a number "
                            "(e.g. an accuracy) or a tk.Scores") from None
        if not math.isfinite(value):
            raise ValueError(f"fn(seed={seed}) returned {value}: a mean over seeds would be "
                             f"{value} too; check that run (a NaN loss? an empty test set?)")
        values.append(value)
    return SeedSummary(seeds, tuple(values), label, percent)


# --------------------------------------------------------------------------- predictions
def softmax(logits):
    """Probabilities from logits (rows), computed stably in float64."""
    z = np.asarray(logits, dtype="float64")
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


@dataclass
class Predictions:
    """What a model says about some images: class index, name and probability of each."""

    labels: np.ndarray
    names: tuple
    confidence: np.ndarray       # the probability of the predicted class
    probabilities: np.ndarray    # (images, classes)

    def __len__(self):
        return len(self.labels)

    def __str__(self):
        return "\n".join(f"image {i}: {name!r} ({p:.1%})"
                         for i, (name, p) in enumerate(zip(self.names, self.confidence)))

    def _repr_pretty_(self, p, cycle):
        p.text(str(self))


def predict(model, images, *, class_names=None):
    """Classify ``images`` (one image of the model's input shape, or a batch) in inference mode:
    a ``Predictions`` with each image's class index, class name and probability."""
    check_model(model)
    x = np.asarray(images.x) if isinstance(images, Dataset) else images
    if getattr(x, "shape", None) == tuple(model.inputs[0].shape[1:]):
        x = x[None]  # one image
    x = check_data(x, "images", model, labels=False)
    if class_names is None and isinstance(images, Dataset):
        class_names = images.class_names
    outputs = outputs_of(model)
    if class_names is not None and (isinstance(class_names, (str, bytes)) or
                                    len(class_names) != outputs):
        raise ValueError(f"class_names={class_names!r} must name each of the model's {outputs} "
                         "classes, in order; pass e.g. class_names=task.class_names")
    probabilities = class_probabilities(model, x)
    labels = probabilities.argmax(axis=1)
    names = (tuple(str(class_names[i]) for i in labels) if class_names is not None
             else tuple(str(i) for i in labels))
    return Predictions(labels, names, probabilities[np.arange(len(x)), labels], probabilities)


@dataclass
class Mistakes:
    """The test images a model is most wrong about (highest cross-entropy loss first)."""

    indices: np.ndarray          # positions in the data, highest loss first
    images: np.ndarray
    true: np.ndarray
    predicted: np.ndarray
    confidence: np.ndarray       # probability of the predicted class
    loss: np.ndarray             # -log p(true class)
    class_names: tuple

    @property
    def wrong(self):
        """How many of these images are misclassified."""
        return int(np.count_nonzero(self.true != self.predicted))

    def __len__(self):
        return len(self.indices)

    def __str__(self):
        lines = [f"{'image':>6} {'true':>6} {'predicted':>10} {'confidence':>11} {'loss':>7}"]
        for i, t, p, c, l in zip(self.indices, self.true, self.predicted, self.confidence,
                                 self.loss):
            lines.append(f"{i:>6} {self.class_names[t]:>6} {self.class_names[p]:>10} "
                         f"{c:>11.1%} {l:>7.2f}")
        return "\n".join(lines)

    def _repr_pretty_(self, p, cycle):
        p.text(str(self))


def worst_mistakes(model, data, *, n=12):
    """The ``n`` images of ``data`` with the highest loss (the true class's probability is
    lowest): the model's worst mistakes, with what it predicted and how sure it was."""
    x, y = check_data(data, "test data", model)
    check_head_fits(model, data, outputs_of(model))
    check_integer(n, "n", 1, len(x))
    probabilities = class_probabilities(model, x)
    loss = -np.log(np.maximum(probabilities[np.arange(len(y)), y], 1e-300))
    order = np.argsort(-loss, kind="stable")[:n]
    predicted = probabilities[order].argmax(axis=1)
    names = (tuple(data.class_names) if isinstance(data, Dataset)
             else tuple(map(str, range(probabilities.shape[1]))))
    return Mistakes(order, x[order], y[order], predicted,
                    probabilities[order, predicted], loss[order], names)


# --------------------------------------------------------------------------- model complexity
@dataclass
class Complexity:
    """What one model costs: parameters, bytes of weights, time to train and to predict."""

    label: str
    parameters: int
    weight_bytes: int
    predict_ms: float            # milliseconds per image, inference mode, batches of 256
    train_s_per_epoch: float     # seconds per epoch of the given run (NaN without one)

    def __str__(self):
        return (f"{self.label}: {self.parameters:,} parameters, {self.weight_bytes / 1024:,.1f} "
                f"KiB of weights, {_seconds(self.train_s_per_epoch)} per training epoch, "
                f"{self.predict_ms:.3f} ms per image to predict")


def _seconds(value):
    return "-" if math.isnan(value) else f"{value:.2f} s"


@dataclass
class ComplexityReport:
    """``Complexity`` of several models side by side; ``report["teacher"]`` is one row."""

    rows: dict

    def __getitem__(self, label):
        return self.rows[label]

    def __str__(self):
        width = max(len("model"), *(len(k) for k in self.rows))
        lines = [f"{'model':<{width}} {'parameters':>11} {'weights':>10} {'train/epoch':>12} "
                 f"{'predict/image':>14}"]
        for label, c in self.rows.items():
            lines.append(f"{label:<{width}} {c.parameters:>11,} {c.weight_bytes / 1024:>7,.1f} KiB "
                         f"{_seconds(c.train_s_per_epoch):>12} {c.predict_ms:>11.3f} ms")
        return "\n".join(lines)

    def _repr_pretty_(self, p, cycle):
        p.text(str(self))


def complexity(models, data, *, histories=None, repeats=3):
    """What each model of ``models`` ({label: model}) costs: parameters, bytes of its weights
    (every variable, BatchNorm statistics included), milliseconds per image to predict
    ``data`` (the best of ``repeats`` timed passes, after one untimed warm-up) and, from
    ``histories`` ({label: RunHistory}), seconds per training epoch.  Times depend on the
    machine and its load; counts and bytes do not."""
    if not isinstance(models, dict) or not models:
        raise TypeError(f"models={type(models).__name__}: pass a dict of one or more "
                        "{label: model}, e.g. {'teacher': teacher, 'student': student}")
    histories = {} if histories is None else histories
    if not isinstance(histories, dict) or set(histories) - set(models):
        raise ValueError(f"histories={histories!r}: pass {{label: RunHistory}} with labels of "
                         f"models ({list(models)})")
    check_integer(repeats, "repeats", 1)
    rows = {}
    for label, model in models.items():
        check_model(model, f"models[{label!r}]")
        x = check_data(data, "data", model, labels=False)
        history = histories.get(label)
        if history is not None and not isinstance(history, RunHistory):
            raise TypeError(f"histories[{label!r}] is a {type(history).__name__}, not the "
                            "RunHistory that tk.fit / tk.fine_tune / tk.distill return")
        forward(model, x[:256])  # warm-up: the first call builds what later calls reuse
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            forward(model, x)
            times.append(time.perf_counter() - start)
        per_epoch = (history.seconds / history.epochs if history is not None and history.epochs
                     else float("nan"))
        rows[label] = Complexity(label, int(model.count_params()),
                                 int(sum(np.dtype(w.dtype).itemsize * int(np.prod(w.shape))
                                         for w in model.weights)),
                                 1e3 * min(times) / len(x), float(per_epoch))
    return ComplexityReport(rows)
