"""Strategies (what trains when), run_strategy, sweep and the StrategyLab panel."""
from __future__ import annotations

from types import SimpleNamespace

import keras
import numpy as np
import pytest

import transferkit as tk
from transferkit.strategies import split_epochs
from transferkit.training import ScaledAdam
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
        tk.strategies.get_strategy("fine_tune")


def test_strategies_by_key_or_title():
    get = tk.strategies.get_strategy
    assert get("fine-tune top block") is get("fine_tune_top")


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
                          source_weights=source_file, epochs=2, seed=1)
    stored = tk.read_weights_file(source_file)
    for name, arrays in stored.items():
        if name != "head":
            assert all(np.array_equal(a, b) for a, b in
                       zip(arrays, run.model.get_layer(name).get_weights())), name
    assert run.history.epochs == 2 and run.settings["strategy"] == "feature_extraction"


def test_fine_tune_top_moves_only_the_top_block_and_head(small_task, source_file):
    run = tk.run_strategy("fine_tune_top", small_task.train, small_task.val, 10, source_weights=source_file,
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


def test_sweep_all_shots_is_the_whole_pool(small_task):
    rows = tk.sweep(["scratch"], small_task, shots=(1, "all"), epochs=1)
    assert [r["shots"] for r in rows] == [1, 4]  # 4 training images per class


# --------------------------------------------------------------------------- the lab
@pytest.fixture()
def lab(small_task, source_file):
    return tk.StrategyLab(SimpleNamespace(weights_path=source_file), small_task,
                          shots=2, epochs=2, seed=0)


def _rows(lab):
    return lab.table.value.split("<tbody>")[1].count("<tr ")


@pytest.mark.parametrize("settings, message", [
    ({"shots": 0}, "shots=0 is out of range"),
    ({"shots": 99}, "shots=99 is out of range"),
    ({"learning_rate": 0}, "learning_rate=0 is out of range"),
    ({"learning_rate": -1e-3}, "learning_rate=-0.001 is out of range"),
    ({"epochs": tk.settings.MAX_RUN_EPOCHS + 1},
     f"epochs={tk.settings.MAX_RUN_EPOCHS + 1} is out of range"),
    ({"strategy": "magic"}, "unknown strategy 'magic'"),
    ({"bn_mode": "adabn"}, "bn_mode='adabn' is unknown"),
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
    lab.run_button.click()  # like pressing Run: trains in a worker thread
    assert lab.wait(timeout=120)
    assert [r["shots"] for r in lab.results] == [2, 3] and _rows(lab) == 2
    assert len(lab.histories) == 2
    labels = [line.get_label() for line in lab.curves.figure.axes[0].lines]
    assert any("2 shots" in l for l in labels) and sum("(train)" in l for l in labels) == 2
    assert "feature extraction" in lab.table_text()
    lab.clear_button.click()
    assert lab.results == [] and lab.histories == [] and _rows(lab) == 0


def test_batchnorm_menu_reaches_the_run_and_the_table(lab):
    row = lab.run(strategy="feature_extraction", bn_mode="adapt")
    assert row["bn_mode"] == "adapt" and lab.bn_mode.value == "adapt"
    assert lab.table_text().splitlines()[0].split()[:2] == ["strategy", "BatchNorm"]
    assert "adapt" in lab.table_text().splitlines()[1]
    assert lab.last_model.get_layer("block1_bn").moving_mean.numpy().any()
    scratch = lab.run(strategy="scratch")  # scratch trains BatchNorm whatever the menu says
    assert scratch["bn_mode"] == "train (scratch)"


def test_run_while_busy_is_refused(lab):
    assert lab._runner.claim()
    assert lab.run() is None and "in progress" in lab.message
    lab._runner.release()


def test_interrupting_a_run_keeps_earlier_results(lab, monkeypatch):
    lab.run(strategy="feature_extraction")

    class Interrupting(tk.LiveCurves):
        def on_epoch_end(self, epoch, logs=None):
            raise KeyboardInterrupt

    monkeypatch.setattr("transferkit.lab.LiveCurves", Interrupting)
    assert lab.run(strategy="scratch") is None
    assert "Interrupted" in lab.message
    assert len(lab.results) == 1 and not lab.busy and not lab.run_button.disabled


def test_a_missing_source_weights_file_is_a_message_in_the_panel(small_task, tmp_path,
                                                                source_file):
    gone = tmp_path / "deleted.weights.h5"
    gone.write_bytes(source_file.read_bytes())
    lab = tk.StrategyLab(SimpleNamespace(weights_path=gone), small_task, shots=2, epochs=2)
    gone.unlink()  # deleted after the panel was built
    assert lab.run(strategy="feature_extraction") is None
    assert "deleted.weights.h5" in lab.message and not lab.results
    assert lab.run(strategy="scratch") is not None  # the panel still works


# ------------------------------------------------------------------ the lab, live (issue 11)
def _wait_for(condition, timeout=60):
    import time
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.02)


def test_run_button_trains_in_a_thread_with_frames_progress_and_one_run_per_click(
        lab, monkeypatch):
    monkeypatch.setattr("transferkit.lab.FRAME_INTERVAL", 0.0)  # a frame after every epoch
    lab.epochs.value = 6
    frames = lab.frames
    lab.run_button.click()
    assert lab.busy and lab.run_button.disabled and not lab.stop_button.disabled
    lab.run_button.click()                      # a second click while it trains
    assert lab.ignored_clicks == 1 and "this click was ignored" in lab.message
    assert lab.run() is None and "in progress" in lab.message   # nor from code
    seen = set()
    while not lab.wait(timeout=0.02):
        seen.add(lab.progress_text.value)
    assert len(lab.results) == 1 and _rows(lab) == 1 and "Done" in lab.message
    assert not lab.busy and not lab.run_button.disabled and lab.stop_button.disabled
    # frames while it ran (at most every 10x a frame's cost), plus the finished plot
    assert lab.frames - frames >= 3 and lab.plot.value[:8] == b"\x89PNG\r\n\x1a\n"
    assert lab.progress.value == 1.0
    assert any("epoch 3 of 6" in v and "phase 1 of 1: all layers" in v for v in seen), seen


def test_stop_ends_the_run_after_the_current_batch_and_keeps_earlier_results(lab):
    import time
    first = lab.run(strategy="feature_extraction")
    lab.epochs.value = 40
    lab.run_button.click()
    _wait_for(lambda: lab.curves.current.epochs >= 1)
    t = time.monotonic()
    lab.stop_button.click()
    assert lab.wait(timeout=10)
    assert time.monotonic() - t < 2.0
    assert "Stopped after" in lab.message and "not added" in lab.message
    assert lab.results == [first] and len(lab.histories) == 1 and _rows(lab) == 1
    assert lab.curves.current.epochs < 40
    # the stopped model is usable, and the panel runs again
    predicted = tk.evaluation.predict_classes(lab.last_model, lab.task.test)
    assert predicted.shape == (len(lab.task.test),)
    lab.stop_button.click()
    assert "nothing to stop" in lab.message
    assert lab.run(epochs=2) is not None and len(lab.results) == 2


def test_sigint_stops_a_run_started_by_the_button(lab):
    """Kernel -> Interrupt sends SIGINT to the kernel; a button-started run stops."""
    import os
    import signal
    lab.epochs.value = 40
    try:
        lab.run_button.click()
        _wait_for(lambda: lab.curves.current.epochs >= 1)
        os.kill(os.getpid(), signal.SIGINT)
        assert lab.wait(timeout=10)
        assert "Stopped after" in lab.message and lab.results == []
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def test_an_interrupted_cell_starts_none_of_its_later_runs(lab, monkeypatch):
    class Interrupting(tk.LiveCurves):
        def on_epoch_end(self, epoch, logs=None):
            raise KeyboardInterrupt

    monkeypatch.setattr("transferkit.lab_runner.current_cell", lambda: 7)
    with monkeypatch.context() as patch:
        patch.setattr("transferkit.lab.LiveCurves", Interrupting)
        assert lab.run(strategy="scratch") is None and "Interrupted" in lab.message
    assert lab.run(strategy="scratch") is None and "Skipped" in lab.message
    monkeypatch.setattr("transferkit.lab_runner.current_cell", lambda: 8)   # the next cell
    assert lab.run(strategy="scratch") is not None


def test_results_table_aligns_numbers_marks_the_best_and_sorts(lab):
    from transferkit.lab import lr_text
    assert [lr_text(v) for v in (3e-3, 1e-2, 0.3, 1e-5)] == ["3e-3", "1e-2", "3e-1", "1e-5"]
    lab.run(strategy="scratch", learning_rate=3e-3)
    lab.run(strategy="feature_extraction")
    best = max(range(2), key=lambda i: lab.results[i]["accuracy"])
    html = lab.table.value
    assert html.split("<tbody>")[1].split("</tbody>")[0].count("★ ") == 1 and "text-align:right" in html and "3e-3" in html
    rows = html.split("<tbody>")[1].split("</tr>")[:2]
    assert "★ " in rows[best]
    lab.sort.value = "accuracy"
    rows = lab.table.value.split("<tbody>")[1].split("</tr>")[:2]
    assert "★ " in rows[0]
    assert "3e-3" in lab.table_text() and lab.results[0]["learning_rate"] == 3e-3


def _history(label, losses):
    h = tk.history.RunHistory(label)
    for v in losses:
        h.add_epoch({"loss": v, "accuracy": 0.5})
    return h


def test_a_diverging_run_is_cut_off_and_named_not_flattening_the_others():
    from transferkit.curves import loss_limit
    runs = [_history(f"run {i}", [2.3, 1.5, 1.0 + 0.1 * i]) for i in range(6)]
    runs.append(_history("lr 0.3", [2.3, 12.0, 9.0]))
    top, clipped = loss_limit(runs)
    assert clipped == [6] and 6.9 < top < 7.3
    fig = tk.plot_history(*runs)
    assert fig.axes[0].get_ylim()[1] == pytest.approx(top)
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "lr 0.3 ↑" in labels and "cut at 7.2" in fig.axes[0].get_title()


def test_twelve_runs_legend_beside_the_axes_in_their_own_colours():
    from transferkit.curves import run_color
    runs = [_history(f"strategy {i} (10 shots)", [2.3, 1.0, 0.5]) for i in range(12)]
    fig = tk.plot_history(*runs)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    legend = fig.legends[0].get_window_extent(renderer)
    for ax in fig.axes:
        assert not legend.overlaps(ax.get_window_extent(renderer))
    assert legend.x1 <= fig.bbox.x1 + 1 and legend.y1 <= fig.bbox.y1 + 1
    colors = [line.get_color() for line in fig.axes[0].get_lines()[:12]]
    assert colors == [run_color(i) for i in range(12)] and len(set(colors)) == 12


def test_epochs_slider_starts_at_one_epoch_per_phase_and_the_table_says_what_transferred(lab):
    lab.epochs.value = 2
    lab.strategy.value = "gradual_unfreezing"          # 4 phases: 4 epochs at least
    assert lab.epochs.value == 4 and "raised to 4" in lab.message
    assert lab.run(epochs=2) is None and "epochs=2 is too few" in lab.message
    assert lab.epochs.value == 4 and not lab.busy  # refused before anything changed
    row = lab.run(strategy="feature_extraction", epochs=2)
    assert row["transferred"] == "6 of 6 layers"
    assert "loaded 6 of 6 backbone layers" in lab.message
    assert lab.run(strategy="scratch")["transferred"] == "none"
    assert "6 of 6 layers" in lab.table_text() and "none" in lab.table.value


def test_the_panels_plot_puts_twelve_runs_legend_under_the_axes_within_the_figure():
    import io

    from PIL import Image
    from transferkit.lab import PLOT
    runs = [_history(f"{i + 1} · fine-tune top block, 10 shots, lr 1e-2", [2.3, 1.0, 0.5])
            for i in range(12)]
    curves = tk.LiveCurves("x", epochs=3, on_frame=lambda png: None, **PLOT)
    png = curves.final_frame(runs)
    fig = curves._figure
    renderer = fig.canvas.get_renderer()
    legend = fig.legends[0].get_window_extent(renderer)
    assert legend.x0 >= 0 and legend.x1 <= fig.bbox.x1
    assert all(legend.y1 <= ax.get_tightbbox(renderer).y0 + 1 for ax in fig.axes)  # labels too
    assert len(fig.legends[0].get_texts()) == 14 and Image.open(io.BytesIO(png)).size[0] == 768


@pytest.mark.parametrize("finetune_lr", [None, 1e-3, 5e-5])
def test_discriminative_keeps_the_head_at_the_base_rate(small_task, source_file, finetune_lr):
    """Phase 2 trains the blocks at the fine-tuning rate (3x slower per block down) and the
    head at the base rate, with or without finetune_lr (it once trained at finetune_lr / 0.03:
    3.3e-2 for 1e-3)."""
    base = 2e-2
    run = tk.run_strategy("discriminative", small_task.train, None, 10,
                          source_weights=source_file, epochs=2, learning_rate=base,
                          finetune_lr=finetune_lr, repeat=1)
    optimizer = run.model.optimizer
    assert isinstance(optimizer, ScaledAdam)
    rate = float(keras.ops.convert_to_numpy(optimizer.learning_rate))
    tuned = base * tk.strategies.FINE_TUNE_SCALE if finetune_lr is None else finetune_lr
    assert rate == pytest.approx(tuned)
    assert rate * optimizer.multipliers["head"] == pytest.approx(base)
    assert rate * optimizer.multipliers["block3"] == pytest.approx(tuned)
    assert rate * optimizer.multipliers["block1"] == pytest.approx(tuned / 9)
