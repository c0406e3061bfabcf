"""Strategies (what trains when), run_strategy, sweep and the StrategyLab panel."""
from __future__ import annotations

from types import SimpleNamespace

import keras
import numpy as np
import pytest

import transferkit as tk
from transferkit.strategies import ScaledAdam, split_epochs
from helpers import to_np


@pytest.fixture(scope="module")
def small_task():
    return tk.target_task(train_per_class=4, val_per_class=2, test_per_class=3)


@pytest.fixture(scope="module")
def source_file(tmp_path_factory):
    """A default-architecture 26-class model saved untrained: fast, and enough to check
    which weights move."""
    tk.set_seed(5)
    model = tk.build_model(26, name="source")
    path = tmp_path_factory.mktemp("src") / "source.weights.h5"
    tk.save_weights(model, path)
    return path


def test_unknown_strategy_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown strategy 'fine_tune'.*'fine_tune_top'"):
        tk.get_strategy("fine_tune")


def test_strategies_by_key_or_title():
    assert tk.get_strategy("fine-tune top block") is tk.get_strategy("fine_tune_top")


@pytest.mark.parametrize("epochs", [1, 2, 5, 12])
def test_split_epochs_adds_up_and_gives_every_phase_one(epochs):
    for s in tk.STRATEGIES.values():
        phases = s.phases(["block1", "block2", "block3"])
        parts = split_epochs(phases, epochs)
        assert min(parts) >= 1 and sum(parts) == max(epochs, len(phases))


def test_transfer_strategy_needs_source_weights(small_task):
    with pytest.raises(ValueError, match="source_weights="):
        tk.run_strategy("feature_extraction", small_task.train, None, 10, epochs=1)


def test_feature_extraction_keeps_the_transferred_backbone_bit_identical(small_task, source_file):
    run = tk.run_strategy("feature_extraction", small_task.train, small_task.val, 10,
                          source_file, epochs=2, seed=1)
    stored = tk.read_weights_file(source_file)
    for name, arrays in stored.items():
        if name != "head":
            assert all(np.array_equal(a, b) for a, b in
                       zip(arrays, run.model.get_layer(name).get_weights())), name
    assert run.history.epochs == 2 and run.settings["strategy"] == "feature_extraction"


def test_fine_tune_top_moves_only_the_top_block_and_head(small_task, source_file):
    run = tk.run_strategy("fine_tune_top", small_task.train, small_task.val, 10, source_file,
                          epochs=2, seed=1)
    stored = tk.read_weights_file(source_file)
    same = lambda name: all(np.array_equal(a, b) for a, b in
                            zip(stored[name], run.model.get_layer(name).get_weights()))
    assert same("block1_conv") and same("block2_conv")
    assert same("block3_bn")  # BatchNorm stays frozen (inference mode)
    assert not same("block3_conv")
    assert [p for p, _ in run.history.phases] == ["head", "top block"]


def test_scaled_adam_applies_per_block_multipliers():
    a = keras.Variable(np.ones(3, np.float32), name="kernel")
    opt = ScaledAdam({"block1": 0.0}, learning_rate=0.1)
    # variable paths are 'kernel' here: the multiplier map falls back to 1.0
    opt.apply([keras.ops.ones(3)], [a])
    assert not np.array_equal(to_np(a), np.ones(3))
    model = tk.build_model(3, widths=(4, 8))
    model.compile(optimizer=ScaledAdam({"block1": 0.0, "block2": 1.0}, learning_rate=0.1),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    before = {v.path: to_np(v) for v in model.trainable_weights}
    x = np.random.default_rng(0).random((8, 28, 28, 1)).astype("float32")
    model.fit(x, np.arange(8) % 3, epochs=1, verbose=0)
    after = {v.path: to_np(v) for v in model.trainable_weights}
    assert np.array_equal(before["block1_conv/kernel"], after["block1_conv/kernel"])
    assert not np.array_equal(before["block2_conv/kernel"], after["block2_conv/kernel"])


def test_sweep_returns_one_row_per_strategy_and_size(small_task, source_file):
    calls = []
    rows = tk.sweep(["scratch", "feature_extraction"], small_task, shots=(1, 2),
                    source_weights=source_file, epochs=1, progress=lambda *a: calls.append(a))
    assert [(r["strategy"], r["shots"]) for r in rows] == [
        ("from scratch", 1), ("from scratch", 2), ("feature extraction", 1),
        ("feature extraction", 2)]
    assert all(0 <= r["accuracy"] <= 1 for r in rows) and len(calls) == 4
    fig = tk.plot_sweep(rows)
    assert len(fig.axes[0].lines) == 2


# --------------------------------------------------------------------------- the lab
@pytest.fixture()
def lab(small_task, source_file):
    return tk.StrategyLab(SimpleNamespace(weights_path=source_file), small_task,
                          shots=2, epochs=2, seed=0)


def _rows(lab):
    return lab.table.value.split("<tbody>")[1].count("<tr>")


@pytest.mark.parametrize("settings, message", [
    ({"shots": 0}, "shots=0 is out of range"),
    ({"shots": 99}, "shots=99 is out of range"),
    ({"learning_rate": 0}, "learning_rate=0 is out of range"),
    ({"learning_rate": -1e-3}, "learning_rate=-0.001 is out of range"),
    ({"epochs": 500}, "epochs=500 is out of range"),
    ({"strategy": "magic"}, "unknown strategy 'magic'"),
    ({"colour": "red"}, "unknown setting 'colour'"),
])
def test_bad_settings_give_a_message_not_a_traceback(lab, settings, message):
    lab.run(strategy="feature_extraction")
    assert lab.run(**settings) is None
    assert message in lab.message
    assert len(lab.results) == 1 and _rows(lab) == 1  # earlier results kept


def test_run_adds_a_row_and_a_curve_then_clear_empties(lab):
    row = lab.run(strategy="feature_extraction")
    assert row["strategy"] == "feature extraction" and row["trainable_params"] == 650
    lab.shots.value = 3  # like moving the slider
    lab.run_button.click()  # like pressing Run
    assert [r["shots"] for r in lab.results] == [2, 3] and _rows(lab) == 2
    assert len(lab.histories) == 2
    labels = [line.get_label() for line in lab.curves.figure.axes[0].lines]
    assert any("2 shots" in l for l in labels) and sum("(train)" in l for l in labels) == 2
    assert "feature extraction" in lab.table_text()
    lab.clear_button.click()
    assert lab.results == [] and lab.histories == [] and _rows(lab) == 0


def test_run_while_busy_is_refused(lab):
    lab._busy = True
    assert lab.run() is None and "in progress" in lab.message
    lab._busy = False


def test_interrupting_a_run_keeps_earlier_results(lab, monkeypatch):
    lab.run(strategy="feature_extraction")

    class Interrupting(tk.LiveCurves):
        def on_epoch_end(self, epoch, logs=None):
            raise KeyboardInterrupt

    monkeypatch.setattr("transferkit.lab.LiveCurves", Interrupting)
    assert lab.run(strategy="scratch") is None
    assert "Interrupted" in lab.message
    assert len(lab.results) == 1 and not lab._busy and not lab.run_button.disabled


def test_a_missing_source_weights_file_is_a_message_in_the_panel(small_task, tmp_path):
    gone = tmp_path / "deleted.weights.h5"
    lab = tk.StrategyLab(SimpleNamespace(weights_path=gone), small_task, shots=2, epochs=2)
    assert lab.run(strategy="feature_extraction") is None
    assert "deleted.weights.h5" in lab.message and not lab.results
    assert lab.run(strategy="scratch") is not None  # the panel still works
