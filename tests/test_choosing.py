"""Choosing a source (transferability before fine-tuning) and a strategy."""
from __future__ import annotations

import math

import numpy as np
import pytest

import transferkit as tk
from helpers import tiny_model


def blobs(separated, n_per_class=20, classes=4, dims=8, seed=0):
    """Features with class-dependent means (separated) or pure noise (not)."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(classes), n_per_class)
    f = rng.normal(size=(len(y), dims))
    if separated:
        f[np.arange(len(y)), y] += 4.0  # class c shifts feature c
    return f, y


@pytest.mark.parametrize("score", [tk.choosing.logme, tk.choosing.h_score])
def test_scores_are_finite_and_prefer_separating_features(score):
    good, bad = score(*blobs(True)), score(*blobs(False))
    assert math.isfinite(good) and math.isfinite(bad)
    assert good > bad


def test_logme_prefers_more_separated_features():
    f, y = blobs(True)
    noisy = f + np.random.default_rng(1).normal(0, 3, f.shape)
    assert tk.choosing.logme(f, y) > tk.choosing.logme(noisy, y)


def test_logme_survives_constant_features():
    f, y = blobs(False)
    assert math.isfinite(tk.choosing.logme(np.zeros_like(f), y))


def test_scores_reject_bad_shapes():
    with pytest.raises(ValueError, match="one feature vector per labelled example"):
        tk.choosing.logme(np.zeros((5, 3)), np.zeros(4, dtype=int))
    with pytest.raises(ValueError, match="integer class indices"):
        tk.choosing.h_score(np.zeros((4, 3)), np.array([0.0, 1.0, 0.0, 1.0]))


def test_probe_accuracy_tells_separable_from_noise():
    f, y = blobs(True, seed=0)
    vf, vy = blobs(True, seed=1)
    nf, ny = blobs(False, seed=0)
    nvf, nvy = blobs(False, seed=1)
    assert tk.choosing.probe_accuracy(f, y, vf, vy) > 0.9
    assert tk.choosing.probe_accuracy(nf, ny, nvf, nvy) < 0.6


def test_rank_sources_ranks_a_trained_backbone_above_a_random_one(well_trained, letters,
                                                                  letters_val):
    random_net = tiny_model(3, seed=5, name="random")
    ranking = tk.rank_sources({"trained": well_trained, "random": random_net},
                              letters, letters_val)
    assert set(ranking.names) == {"trained", "random"}
    values = [r["logme"] for r in ranking.rows]
    assert values == sorted(values, reverse=True)
    for r in ranking.rows:
        assert all(math.isfinite(r[k]) for k in ("logme", "h_score", "probe_accuracy"))
        assert 0.0 <= r["similarity"] <= 1.0
    # the trained backbone first, by LogME and by H-score (a probe on 15 validation images
    # and 8 features is too noisy to order these two reliably on every backend)
    assert ranking.names[0] == "trained"
    assert ranking.score("trained", "h_score") > ranking.score("random", "h_score")
    assert "LogME" in str(ranking)
    by_probe = tk.rank_sources({"random": random_net}, letters, letters_val, by="probe_accuracy")
    assert by_probe.by == "probe_accuracy"


def test_rank_sources_validates():
    with pytest.raises(ValueError, match=r"by='accuracy'.*'logme', 'h_score', 'probe_accuracy'"):
        tk.rank_sources({"x": None}, None, None, by="accuracy")
    with pytest.raises(ValueError, match="candidates is empty"):
        tk.rank_sources({}, None, None)


@pytest.mark.parametrize("shots, similarity, expected", [
    (5, "high", "feature_extraction"),
    (20, 0.9, "feature_extraction"),
    (50, "high", "fine_tune_all"),
    (100, 0.7, "scratch"),
    (1000, 0.7, "scratch"),
    (5, "low", "scratch"),
    (5, 0.6, "scratch"),
    (1000, 0.1, "scratch"),
])
def test_recommend_strategy_branches(shots, similarity, expected):
    rec = tk.recommend_strategy(shots, similarity)
    assert rec.strategy == expected and rec.strategy in tk.STRATEGIES
    text = str(rec)
    assert text.startswith(f"Recommended: {tk.STRATEGIES[expected].title}")
    assert "Why:" in text and len(rec.reasons) >= 2
    assert (rec.bn_mode == "train") == (expected == "fine_tune_all")
    assert ("bn_mode='train'" in text.splitlines()[0]) == (rec.bn_mode == "train")


def test_recommender_thresholds_rest_on_the_committed_arc():
    """FEW_SHOTS and PLENTY_SHOTS say what benchmarks/arc.py measured (3 seeds): feature
    extraction best or within the seeds' spread up to FEW_SHOTS, fine-tuning all blocks with
    BatchNorm training clearly ahead of it in between, scratch best from PLENTY_SHOTS on."""
    import json
    from pathlib import Path

    from transferkit.choosing import FEW_SHOTS, PLENTY_SHOTS

    arc = json.loads((Path(__file__).resolve().parents[1] / "benchmarks" / "results"
                      / "arc.json").read_text())
    assert len(arc["config"]["seeds"]) == 3 and arc["device"]["numerics"] == "portable"
    cells = {(s["shots"], s["method"]): (s["accuracy_mean"], s["accuracy_std"])
             for s in arc["summary"]}
    shots = sorted({k for k, _ in cells})
    assert any(FEW_SHOTS < k < PLENTY_SHOTS for k in shots) and max(shots) >= PLENTY_SHOTS
    for k in shots:
        here = {m: v for (kk, m), v in cells.items() if kk == k}
        best = max(here, key=lambda m: here[m][0])
        (fe, fe_std), (bn, bn_std) = here["feature"], here["ft_all_bn"]
        expected = tk.recommend_strategy(k, "high")
        if k <= FEW_SHOTS:
            assert here[best][0] - fe <= max(here[best][1], fe_std), (k, best, here)
            assert expected.strategy == "feature_extraction"
        elif k < PLENTY_SHOTS:
            assert bn - fe > max(bn_std, fe_std) and best == "ft_all_bn", (k, here)
            assert (expected.strategy, expected.bn_mode) == ("fine_tune_all", "train")
        else:
            assert best == "scratch" and expected.strategy == "scratch", (k, here)


@pytest.mark.parametrize("shots, similarity, match", [
    (0, "high", r"shots_per_class=0 is out of range"),
    (2.5, "high", r"shots_per_class=2.5"),
    (True, "high", r"shots_per_class=True"),
    (5, "similar", r"similarity='similar'.*\['high', 'low'\]"),
    (5, 1.5, r"similarity=1.5 is out of range"),
    (5, float("nan"), r"similarity=nan is out of range"),
    (5, None, r"similarity=None is out of range"),
])
def test_recommend_strategy_validates(shots, similarity, match):
    with pytest.raises(ValueError, match=match):
        tk.recommend_strategy(shots, similarity)
