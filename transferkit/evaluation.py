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
from dataclasses import dataclass

import numpy as np
from sklearn import metrics

from .checks import check_choice, is_integer
from .data import Dataset
from .datachecks import as_xy, check_head_fits, check_xy
from .models import check_input, forward

__all__ = ["ClassReport", "Scores", "SeedSummary", "class_report", "evaluate", "over_seeds",
           "predict_classes", "score_predictions"]


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
    x, _ = as_xy(data, "data")
    check_input(model, x)
    return forward(model, x, batch_size).argmax(axis=1)


def score_predictions(y_true, y_pred, class_names=None):
    """``Scores`` (accuracy, macro precision / recall / F1, confusion) from labels and predictions."""
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


def evaluate(model, data):
    """Accuracy, macro precision / recall / F1 and the confusion matrix (scikit-learn)."""
    x, y = as_xy(data, "test data")
    check_xy(model, x, y, "test data")
    outputs = int(model.outputs[0].shape[-1])
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
    x, y = as_xy(data, "test data")
    check_xy(model, x, y, "test data")
    check_head_fits(model, data, int(model.outputs[0].shape[-1]))
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
