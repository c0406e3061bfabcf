"""Honest evaluation: scikit-learn metrics on a hand-checked case, per-class reports, seeds."""
from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn import metrics

import transferkit as tk

# Hand-checked: class 0 precision 1/2 recall 1/2, class 1 precision 2/3 recall 1,
# class 2 precision 1 recall 1/2.
Y_TRUE = np.array([0, 0, 1, 1, 2, 2])
Y_PRED = np.array([0, 1, 1, 1, 2, 0])


def test_score_predictions_matches_hand_computed_and_sklearn():
    s = tk.evaluation.score_predictions(Y_TRUE, Y_PRED, ("a", "b", "c"))
    assert s.accuracy == pytest.approx(4 / 6)
    assert s.precision == pytest.approx((1 / 2 + 2 / 3 + 1) / 3)
    assert s.recall == pytest.approx((1 / 2 + 1 + 1 / 2) / 3)
    assert s.f1 == pytest.approx((1 / 2 + 0.8 + 2 / 3) / 3)
    assert s.f1 == pytest.approx(metrics.f1_score(Y_TRUE, Y_PRED, average="macro"))
    np.testing.assert_array_equal(s.confusion, [[1, 1, 0], [0, 2, 0], [1, 0, 1]])
    assert s.class_names == ("a", "b", "c")


def test_score_predictions_counts_a_never_predicted_class():
    s = tk.evaluation.score_predictions([0, 1, 2], [0, 1, 1], ("a", "b", "c"))
    assert s.confusion.shape == (3, 3)
    assert s.recall == pytest.approx((1 + 1 + 0) / 3)


def test_score_predictions_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="same, non-zero length"):
        tk.evaluation.score_predictions([0, 1], [0])


def test_class_report_agrees_with_evaluate_and_sklearn(trained, letters_val):
    report = tk.class_report(trained.model, letters_val)
    pred = tk.evaluation.predict_classes(trained.model, letters_val)
    p, r, f, s = metrics.precision_recall_fscore_support(letters_val.y, pred, labels=[0, 1, 2],
                                                         zero_division=0)
    np.testing.assert_allclose(report.f1, f)
    np.testing.assert_array_equal(report.support, [5, 5, 5])
    assert report.f1.mean() == pytest.approx(tk.evaluate(trained.model, letters_val).f1)
    assert all(name in str(report) for name in "ABC")
    worst = report.worst(1)
    assert worst[0][1] == pytest.approx(f.min())
    with pytest.raises(ValueError, match=r"\['precision', 'recall', 'f1'\]"):
        report.worst(by="accuracy")


def test_over_seeds_mean_and_sample_std():
    summary = tk.over_seeds(lambda seed: [0.5, 0.7, 0.9][seed], seeds=(0, 1, 2))
    assert summary.values == (0.5, 0.7, 0.9)
    assert summary.mean == pytest.approx(0.7)
    assert summary.std == pytest.approx(0.2)  # sample std (n - 1)
    assert str(summary) == "accuracy: 70.0% ± 20.0% over 3 seeds [50.0%, 70.0%, 90.0%]"


def test_over_seeds_passes_each_seed_and_takes_accuracy_from_scores():
    seen = []

    def fn(seed):
        seen.append(seed)
        return tk.evaluation.score_predictions([0, 1], [0, seed % 2], ("a", "b"))
    summary = tk.over_seeds(fn, seeds=(4, 5))
    assert seen == [4, 5]
    assert summary.values == (0.5, 1.0)


def test_over_seeds_one_seed_has_no_spread():
    summary = tk.over_seeds(lambda s: 0.25, seeds=(0,))
    assert math.isnan(summary.std)
    assert "no spread" in str(summary)


@pytest.mark.parametrize("seeds, match", [((), "one or more"), ((0, 0), "repeats"),
                                          ((-1,), "non-negative")])
def test_over_seeds_rejects_bad_seeds(seeds, match):
    with pytest.raises(ValueError, match=match):
        tk.over_seeds(lambda s: 0.0, seeds=seeds)


def test_over_seeds_rejects_a_non_number():
    with pytest.raises(TypeError, match="return a number"):
        tk.over_seeds(lambda s: "high", seeds=(0,))
