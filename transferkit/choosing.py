"""Choosing a source and a strategy before fine-tuning anything.

    logme(features, labels)       LogME (You et al., 2021): evidence of a Bayesian linear model
    h_score(features, labels)     H-score (Bao et al., 2019): class separation of the features
    probe_accuracy(...)           validation accuracy of a logistic regression on frozen features
    rank_sources(candidates, ...) all three for every candidate source, best first
    recommend_strategy(shots_per_class, similarity) -> Recommendation

Both estimates need only one forward pass of the frozen source network over the
target's training images: ranking ten sources costs seconds, fine-tuning them minutes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from .checks import check_choice
from .datachecks import check_data, checked_outputs
from .models import check_model, feature_extractor
from .strategies import STRATEGIES

__all__ = ["FEW_SHOTS", "PLENTY_SHOTS", "RANK_KEYS", "SIMILAR", "SIMILARITY_WORDS", "Ranking",
           "Recommendation", "h_score", "logme", "probe_accuracy", "rank_sources",
           "recommend_strategy"]


# --------------------------------------------------------------------------- estimates
def _check_features(features, labels):
    f = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels)
    if f.ndim != 2 or y.ndim != 1 or len(f) != len(y) or len(f) < 2:
        raise ValueError(f"features {f.shape} and labels {y.shape} must be (n, d) and (n,) "
                         "with n >= 2: one feature vector per labelled example")
    if y.dtype.kind not in "iu" or y.min() < 0:
        raise ValueError(f"labels must be non-negative integer class indices, got dtype {y.dtype}")
    if not np.isfinite(f).all():
        raise ValueError("features contain NaN or inf; check the network that made them")
    return f, y


def logme(features, labels, max_iter=100, tol=1e-3):
    """LogME: mean log evidence per example of a Bayesian linear model features -> labels.

    For every class, a linear regression onto its one-hot column with a Gaussian
    prior (precision alpha) and noise (precision beta); alpha and beta maximise the
    evidence by the fixed-point updates of You et al. (2021).  Higher = features
    that explain the labels with a simpler linear model.
    """
    f, y = _check_features(features, labels)
    n, d = f.shape
    # eigen-decomposition of F^T F, shared by all classes
    s, v = np.linalg.eigh(f.T @ f)
    s = np.clip(s, 0.0, None)
    evidences = []
    for c in range(int(y.max()) + 1):
        t = (y == c).astype(np.float64)
        proj = v.T @ (f.T @ t)          # V^T F^T t
        alpha, beta = 1.0, 1.0
        for _ in range(max_iter):
            gamma = float(np.sum(beta * s / (alpha + beta * s)))
            m = v @ (beta * proj / (alpha + beta * s))   # posterior mean of the weights
            m2 = float(m @ m)
            residual = float(np.sum((t - f @ m) ** 2))
            # clipped: dead (all-zero) features would drive alpha to 0 and the log to -inf
            new_alpha = min(max(gamma / (m2 + 1e-12), 1e-10), 1e10)
            new_beta = min(max((n - gamma) / (residual + 1e-12), 1e-10), 1e10)
            done = (abs(new_alpha / new_beta - alpha / beta) / (alpha / beta)) < tol
            alpha, beta = new_alpha, new_beta
            if done:
                break
        m = v @ (beta * proj / (alpha + beta * s))
        m2, residual = float(m @ m), float(np.sum((t - f @ m) ** 2))
        evidence = (d / 2 * math.log(alpha) + n / 2 * math.log(beta) - alpha / 2 * m2
                    - beta / 2 * residual - 0.5 * float(np.sum(np.log(alpha + beta * s)))
                    - n / 2 * math.log(2 * math.pi))
        evidences.append(evidence / n)
    return float(np.mean(evidences))


def h_score(features, labels):
    """H-score: tr(cov(f)^-1 cov(E[f | y])) -- how far apart the class means are, in units
    of the features' own spread.  Higher = classes easier to tell apart linearly."""
    f, y = _check_features(features, labels)
    f = f - f.mean(axis=0)
    class_means = np.zeros_like(f)
    for c in np.unique(y):
        class_means[y == c] = f[y == c].mean(axis=0)
    cov_f = np.cov(f, rowvar=False)
    cov_g = np.cov(class_means, rowvar=False)
    return float(np.trace(np.linalg.pinv(cov_f, rcond=1e-10) @ cov_g))


def _features(model, data, what):
    # the labels are the target's: a source model's head has other classes
    x, y = check_data(data, what, model, head=False)
    net = model if len(model.outputs[0].shape) == 2 and model.name.endswith("_features") \
        else feature_extractor(model)
    return checked_outputs(net, x).astype(np.float64), y


def probe_accuracy(train_features, train_labels, val_features, val_labels):
    """Validation accuracy of a logistic regression trained on frozen (standardised) features."""
    f, y = _check_features(train_features, train_labels)
    vf, vy = _check_features(val_features, val_labels)
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    return float(probe.fit(f, y).score(vf, vy))


# --------------------------------------------------------------------------- ranking
@dataclass
class Ranking:
    """Candidate sources scored before fine-tuning, best first by ``by``."""

    rows: list      # dicts: name, logme, h_score, probe_accuracy, similarity
    by: str

    @property
    def names(self):
        return [r["name"] for r in self.rows]

    def score(self, name, key=None):
        for r in self.rows:
            if r["name"] == name:
                return r[key or self.by]
        raise KeyError(f"no candidate {name!r}; candidates are {self.names}")

    def __str__(self):
        lines = [f"{'rank':<5}{'source':<18}{'LogME':>8}{'H-score':>9}{'probe (val)':>13}"
                 f"{'similarity':>12}"]
        for i, r in enumerate(self.rows, 1):
            lines.append(f"{i:<5}{r['name']:<18}{r['logme']:8.3f}{r['h_score']:9.2f}"
                         f"{r['probe_accuracy']:13.1%}{r['similarity']:12.2f}")
        return "\n".join(lines) + f"\n(ranked by {self.by})"

    def _repr_pretty_(self, p, cycle):
        p.text(str(self))


RANK_KEYS = ("logme", "h_score", "probe_accuracy")


def rank_sources(candidates, train, val, by="logme"):
    """Score each candidate source on the target, with no fine-tuning; best first.

    ``candidates``: {name: Keras model or tk.source.SourceModel}.  Features come from the
    frozen backbone (``feature_extractor``); LogME and H-score use ``train``, the
    linear probe trains on ``train`` and is scored on ``val`` -- never on test data.
    ``similarity`` = probe accuracy rescaled so 0 is chance and 1 is perfect.
    """
    check_choice(by, "by", RANK_KEYS)
    if not candidates:
        raise ValueError("candidates is empty; pass {name: model} for two or more sources")
    rows = []
    if not isinstance(candidates, dict):
        raise TypeError(f"candidates must be a dict {{name: model}}, got "
                        f"{type(candidates).__name__}; e.g. {{'letters': tk.source_model()}}")
    classes = int(np.max(check_data(train, "train")[1])) + 1
    for name, candidate in candidates.items():
        model = check_model(getattr(candidate, "model", candidate), f"candidates[{name!r}]")
        f, y = _features(model, train, "train")
        vf, vy = _features(model, val, "val")
        probe = probe_accuracy(f, y, vf, vy)
        rows.append({"name": str(name), "logme": logme(f, y), "h_score": h_score(f, y),
                     "probe_accuracy": probe,
                     "similarity": max(0.0, (probe - 1 / classes) / (1 - 1 / classes))})
    rows.sort(key=lambda r: r[by], reverse=True)
    return Ranking(rows, by)


# --------------------------------------------------------------------------- recommending
SIMILARITY_WORDS = {"high": 0.85, "low": 0.2}
# Thresholds from the kit's measurements: the letters source scores about 0.8 on the digits
# (a linear probe on 10 shots), the mismatched sources of notebook 08 0.2-0.6 -- and even
# the 0.6 one ended 14 points below scratch (benchmarks/beyond.py, section negative).
SIMILAR = 0.65         # similarity at or above this counts as a similar source
# Target sizes from the kit's arc (benchmarks/arc.py, results/arc.json: the letters source,
# digits with 200 per class, 3 seeds; tests/test_choosing.py checks them against that file):
FEW_SHOTS = 20         # up to here feature extraction is best or within the seeds' spread of it
PLENTY_SHOTS = 100     # from here scratch beats every transfer strategy on the kit's tasks
# Which registered strategy each case of the arc recommends (and with which BatchNorm mode):
# data, read by recommend_strategy and checked against the registry when it answers.
RECOMMENDED = {"few shots": ("feature_extraction", "frozen"),
               "between": ("fine_tune_all", "train"),
               "plenty": ("scratch", "frozen"),    # the default: scratch's BatchNorm trains anyway
               "dissimilar source": ("scratch", "frozen")}


@dataclass
class Recommendation:
    strategy: str                 # a key of tk.STRATEGIES
    shots_per_class: int
    similarity: float
    reasons: list = field(default_factory=list)
    bn_mode: str = "frozen"       # for tk.run_strategy(..., bn_mode=) and the lab

    @property
    def title(self):
        return STRATEGIES[self.strategy].title

    def __str__(self):
        why = "\n".join(f"  - {r}" for r in self.reasons)
        how = f"{self.strategy!r}" + (f", bn_mode={self.bn_mode!r}" if self.bn_mode != "frozen"
                                      else "")
        return (f"Recommended: {self.title} ({how}) for {self.shots_per_class} shots "
                f"per class, source similarity {self.similarity:.2f}\nWhy:\n{why}")

    def _repr_pretty_(self, p, cycle):
        p.text(str(self))


def _similarity_value(similarity):
    if isinstance(similarity, str):
        if similarity not in SIMILARITY_WORDS:
            raise ValueError(f"similarity={similarity!r}; use one of {list(SIMILARITY_WORDS)} "
                             "or a number from 0 (unrelated) to 1 (same task)")
        return SIMILARITY_WORDS[similarity]
    try:
        value = float(similarity)
    except (TypeError, ValueError):
        value = float("nan")
    if isinstance(similarity, bool) or not 0.0 <= value <= 1.0:
        raise ValueError(f"similarity={similarity!r} is out of range; use a number from 0 "
                         f"(unrelated) to 1 (same task) or one of {list(SIMILARITY_WORDS)}")
    return value


def _recommend(case, shots, similarity, reasons):
    key, bn_mode = RECOMMENDED[case]
    if key not in STRATEGIES:  # the arc measured a strategy that is no longer registered
        raise LookupError(f"recommend_strategy: the {case!r} case recommends {key!r}, which is "
                          f"not registered (tk.STRATEGIES: {list(STRATEGIES)}); measure the "
                          "arc again (benchmarks/arc.py) and update choosing.RECOMMENDED")
    return Recommendation(key, shots, similarity, reasons, bn_mode=bn_mode)


def recommend_strategy(shots_per_class, similarity):
    """Which strategy to try first, and why, from the target's size and the source's similarity.

    ``similarity``: 'high' / 'low' or a number in [0, 1], e.g. a ranking's
    ``similarity`` (linear-probe accuracy above chance).  The rules follow the kit's
    own measurements: the arc of a similar source over target sizes (benchmarks/arc.py,
    notebook 09) and the mismatched sources of notebook 08.  ``bn_mode`` of the result is the
    BatchNorm mode to run the strategy with.
    """
    if isinstance(shots_per_class, bool) or not isinstance(shots_per_class, (int, np.integer)) \
            or shots_per_class < 1:
        raise ValueError(f"shots_per_class={shots_per_class!r} is out of range; use an integer "
                         ">= 1 (labelled target examples per class)")
    k, sim = int(shots_per_class), _similarity_value(similarity)
    if sim >= SIMILAR:
        why = [f"similarity {sim:.2f} >= {SIMILAR}: the source's features already separate "
               "the target's classes"]
        if k <= FEW_SHOTS:
            return _recommend("few shots", k, sim, why + [
                f"{k} <= {FEW_SHOTS} shots per class: in the kit's arc (benchmarks/arc.py, 3 "
                "seeds) feature extraction was best at 1-5 shots, and fine-tuning within the "
                "seeds' spread of it up to 20: too few labels to move a backbone reliably",
                "a frozen backbone also cannot forget the source task"])
        if k < PLENTY_SHOTS:
            return _recommend("between", k, sim, why + [
                f"{FEW_SHOTS} < {k} < {PLENTY_SHOTS} shots per class: enough to adapt every "
                "block; in the kit's arc fine-tuning all blocks with BatchNorm training beat "
                "feature extraction by more than the seeds' spread at 50 shots",
                "bn_mode='train': the BatchNorm statistics follow the target as the blocks move "
                "(with them frozen it was no better than feature extraction there)"])
        return _recommend("plenty", k, sim, why + [
            f"{k} >= {PLENTY_SHOTS} shots per class: in the kit's arc scratch beat every "
            "transfer strategy from 100 shots on (the kit's small CNN learns the ten digits "
            "from 1,000 images; the transferred ones keep letter features)",
            "unlike the usual rule (fine-tune when data is plenty): a larger network or a "
            "harder target moves this point; compare with fine_tune_all, bn_mode='train' on "
            "validation data"])
    return _recommend("dissimilar source", k, sim, [
        f"similarity {sim:.2f} < {SIMILAR}: the source's features fit the target poorly",
        "measured in the kit (notebook 08, which prints the gaps): from mismatched sources, "
        "transfer ended far below scratch at 10 shots per class -- a frozen or gently tuned "
        "backbone keeps the mismatch",
        "try another source first (rank candidates with tk.rank_sources); compare any transfer "
        "run with scratch on validation data"])
