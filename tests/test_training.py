"""Compiling, fitting, evaluating and the recompile guard (training.py, environment.set_seed)."""
from __future__ import annotations

import math

import keras
import numpy as np
import pytest
from sklearn import metrics

import transferkit as tk
from helpers import all_equal, backbone, snapshot, tiny_model, to_np


def _history(label, losses):
    h = tk.history.RunHistory(label)
    for i, loss in enumerate(losses):
        h.add_epoch({"loss": loss, "accuracy": 0.1 * i, "val_loss": loss + 1,
                     "val_accuracy": 0.2 * i})
    h.seconds = 1.5
    return h


# --------------------------------------------------------------------------- fit / history
def test_fit_returns_a_run_history_with_one_entry_per_epoch(trained):
    h = trained.history
    assert isinstance(h, tk.history.RunHistory)
    assert h.epochs == 2 and h.label == "tiny" and not h.interrupted
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert len(h.metrics[key]) == 2
        assert all(math.isfinite(v) for v in h.metrics[key]), key
    assert all(0.0 <= v <= 1.0 for v in h.metrics["accuracy"] + h.metrics["val_accuracy"])
    assert h.last("loss") == h.metrics["loss"][-1]


def test_then_concatenates_phases():
    head, tune = _history("head only", [3.0, 2.0]), _history("fine-tune", [1.5, 1.0, 0.5])
    both = head.then(tune, label="fine-tuned")
    assert both.label == "fine-tuned" and both.epochs == 5
    assert both.metrics["loss"] == [3.0, 2.0, 1.5, 1.0, 0.5]
    assert both.metrics["val_loss"] == [4.0, 3.0, 2.5, 2.0, 1.5]
    assert both.phases == [("head only", 0), ("fine-tune", 2)]
    assert both.seconds == 3.0
    # chaining keeps earlier phase boundaries; the inputs are not modified
    three = both.then(_history("more", [0.1]))
    assert three.phases == [("head only", 0), ("fine-tune", 2), ("more", 5)]
    assert three.epochs == 6
    assert head.epochs == 2 and head.phases == [] and tune.metrics["loss"] == [1.5, 1.0, 0.5]


def test_fit_interrupted_returns_history_so_far(letters, capsys):
    class StopAfterFirstEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise KeyboardInterrupt

    model = tk.compile_model(tiny_model(3))
    h = tk.fit(model, (letters.x, letters.y), epochs=5, batch_size=64,
               callbacks=[StopAfterFirstEpoch()])
    assert h.interrupted and h.epochs == 1
    assert "Interrupted after 1 epochs" in capsys.readouterr().out
    # no validation data: validation metrics are recorded as NaN, not left out
    assert math.isfinite(h.metrics["loss"][0])
    assert math.isnan(h.metrics["val_loss"][0]) and math.isnan(h.last("val_accuracy"))


def test_fine_tune_runs_both_phases_and_leaves_batchnorm_frozen(letters, letters_val):
    """Phase 1 trains the head on a frozen backbone; phase 2 unfreezes (default: BatchNorm
    stays frozen), recompiles and trains the convolutions too."""
    model = tiny_model(3)
    before = snapshot(model)
    h = tk.fine_tune(model, letters, letters_val, head_epochs=1, finetune_epochs=1,
                     batch_size=64)
    assert h.epochs == 2 and h.label == "fine-tuned"
    assert h.phases == [("head only", 0), ("fine-tune", 1)]
    assert all(math.isfinite(v) for v in h.metrics["val_loss"])
    flags = {l.name: l.trainable for l in model.layers if l.weights}
    assert flags == {"block1_conv": True, "block1_bn": False, "block2_conv": True,
                     "block2_bn": False, "head": True}
    after = snapshot(model)
    for bn in ("block1_bn", "block2_bn"):  # gamma, beta, moving mean and variance
        assert all(np.array_equal(a, b) for a, b in zip(after[bn], before[bn])), bn
    for layer in ("block1_conv", "block2_conv", "head"):
        assert not np.array_equal(after[layer][0], before[layer][0]), layer


def test_train_from_scratch_builds_and_trains_a_fresh_model(letters, letters_val):
    model, h = tk.train_from_scratch(letters, letters_val, num_classes=3, epochs=1,
                                     batch_size=64)
    assert model.name == "scratch" and model.output_shape == (None, 3)
    assert tk.models.block_names(model) == ["block1", "block2", "block3"]  # the default widths
    assert h.label == "from scratch" and h.epochs == 1
    assert math.isfinite(h.last("val_loss"))


def test_repeat_for():
    assert tk.repeat_for(10, batch_size=32, steps_per_epoch=10) == 32
    assert tk.repeat_for(1000, batch_size=32, steps_per_epoch=10) == 1
    assert tk.repeat_for(0) >= 1


# --------------------------------------------------------------------------- evaluate
def test_evaluate_matches_sklearn_on_the_same_predictions(trained, letters_val):
    scores = tk.evaluate(trained.model, letters_val)
    logits = np.asarray(trained.model.predict(letters_val.x, verbose=0))
    pred = logits.argmax(axis=1)
    y = letters_val.y
    np.testing.assert_array_equal(tk.evaluation.predict_classes(trained.model, letters_val), pred)
    labels = [0, 1, 2]
    assert scores.accuracy == metrics.accuracy_score(y, pred)
    assert scores.precision == metrics.precision_score(y, pred, labels=labels,
                                                       average="macro", zero_division=0)
    assert scores.recall == metrics.recall_score(y, pred, labels=labels, average="macro",
                                                 zero_division=0)
    assert scores.f1 == metrics.f1_score(y, pred, labels=labels, average="macro",
                                         zero_division=0)
    np.testing.assert_array_equal(scores.confusion, metrics.confusion_matrix(y, pred,
                                                                             labels=labels))
    assert scores.confusion.shape == (3, 3)
    assert scores.confusion.sum() == len(letters_val)
    assert scores.class_names == ("A", "B", "C")
    assert "accuracy" in str(scores)


def test_evaluate_accepts_an_xy_pair(trained, letters_val):
    scores = tk.evaluate(trained.model, (letters_val.x, letters_val.y))
    assert scores.class_names == ("0", "1", "2")
    assert scores.confusion.sum() == len(letters_val)


# --------------------------------------------------------------------------- bad inputs
@pytest.fixture(scope="module")
def compiled():
    """A compiled, never-trained model for input-validation tests (validation fails first)."""
    return tk.compile_model(tiny_model(3, name="checked"))


@pytest.mark.parametrize("shape", [(6, 28, 28), (6, 32, 32, 1), (6, 28, 28, 3)])
def test_wrong_input_shape_names_the_expected_shape(compiled, shape):
    bad = (np.zeros(shape, np.float32), np.zeros(6, np.int64))
    for call in (lambda: tk.fit(compiled, bad, epochs=1), lambda: tk.evaluate(compiled, bad)):
        with pytest.raises(ValueError) as err:
            call()
        msg = str(err.value)
        assert str(shape) in msg and "(batch, 28, 28, 1)" in msg and "reshape" in msg


@pytest.mark.parametrize("bad_label", [3, 7, -1])
def test_labels_out_of_range(compiled, letters, bad_label):
    y = letters.y.copy()
    y[4] = bad_label
    for call in (lambda: tk.fit(compiled, (letters.x, y), epochs=1),
                 lambda: tk.evaluate(compiled, (letters.x, y))):
        with pytest.raises(ValueError) as err:
            call()
        msg = str(err.value)
        assert f"label {bad_label}" in msg and "3 outputs" in msg and "num_classes" in msg


def test_labels_out_of_range_in_validation_data(compiled, letters):
    y = letters.y.copy()
    y[0] = 9
    with pytest.raises(ValueError, match="validation data has label 9"):
        tk.fit(compiled, letters, (letters.x, y), epochs=1)


def test_empty_data(compiled, letters):
    empty = tk.Dataset(letters.x[:0], letters.y[:0], letters.class_names, "empty")
    with pytest.raises(ValueError, match="training data is empty"):
        tk.fit(compiled, empty, epochs=1)
    with pytest.raises(ValueError, match="test data is empty"):
        tk.evaluate(compiled, empty)


def test_image_label_count_mismatch(compiled, letters):
    with pytest.raises(ValueError, match="36 images but 30 labels"):
        tk.fit(compiled, (letters.x, letters.y[:30]), epochs=1)


def test_images_with_no_labels_get_the_count_mismatch_message(compiled, letters):
    with pytest.raises(ValueError, match="36 images but 0 labels"):
        tk.fit(compiled, (letters.x, letters.y[:0]), epochs=1)


@pytest.mark.parametrize("y", [np.zeros(36, np.float32), np.zeros((36, 3), np.int64)])
def test_labels_must_be_integer_class_indices(compiled, letters, y):
    with pytest.raises(ValueError, match="1-D array of integer class indices"):
        tk.fit(compiled, (letters.x, y), epochs=1)


@pytest.mark.parametrize("lr", [0, -1e-3, float("nan"), 5.0, "fast"])
def test_learning_rate_out_of_range(lr):
    with pytest.raises(ValueError, match=r"learning_rate=.* (out of range|is a string, not a number); use a positive value"):
        tk.compile_model(tiny_model(3), lr)


@pytest.mark.parametrize("epochs", [0, -3, 10_001])
def test_epochs_out_of_range(compiled, letters, epochs):
    with pytest.raises(ValueError, match=rf"epochs={epochs!r} is out of range"):
        tk.fit(compiled, letters, epochs=epochs)


def test_a_fractional_count_is_a_type_error_everywhere(compiled, letters):
    """One exception type per kind of mistake: not a whole number is a TypeError."""
    with pytest.raises(TypeError, match=r"epochs=2.5 is not a whole number"):
        tk.fit(compiled, letters, epochs=2.5)
    with pytest.raises(TypeError, match=r"1.5"):
        tk.few_shot(letters, k=1.5)


def test_uncompiled_model_says_compile_first(letters):
    with pytest.raises(RuntimeError, match="not compiled; call tk.compile_model"):
        tk.fit(tiny_model(3, name="raw"), letters, epochs=1)


# --------------------------------------------------------------------------- recompile guard
def test_changing_trainable_after_fit_without_compiling_is_refused(letters):
    model = tk.compile_model(tiny_model(3, name="guarded"), 1e-2)
    tk.fit(model, letters, epochs=1)
    tk.freeze(model)
    with pytest.raises(tk.RecompileError, match="compiled again.*tk.compile_model"):
        tk.fit(model, letters, epochs=1)
    tk.compile_model(model, 1e-2)  # the fix the message names
    frozen = {w.path: to_np(w) for w in model.weights if not w.path.startswith("head")}
    tk.fit(model, letters, epochs=1)
    assert all(np.array_equal(frozen[w.path], to_np(w)) for w in model.weights
               if w.path in frozen)


def test_changing_trainable_between_compile_and_first_fit_is_fine(letters):
    model = tk.compile_model(tiny_model(3, name="early"), 1e-2)
    tk.freeze(model)  # before the training step is built: nothing stale yet
    tk.fit(model, letters, epochs=1)


# --------------------------------------------------------------------------- seeds
def test_same_seed_gives_identical_training(letters):
    def run(seed):
        model = tk.compile_model(tiny_model(3, seed=seed, name="repeat"), 1e-2)
        init = [to_np(w) for w in model.weights]
        history = tk.fit(model, letters, letters, epochs=2, batch_size=8)
        scores = tk.evaluate(model, letters)
        return init, [to_np(w) for w in model.weights], history.metrics, scores

    init_a, final_a, metrics_a, scores_a = run(7)
    init_b, final_b, metrics_b, scores_b = run(7)
    assert all(np.array_equal(a, b) for a, b in zip(init_a, init_b))
    assert all(np.array_equal(a, b) for a, b in zip(final_a, final_b))
    # the numbers a learner sees are identical too, so nbval can compare them strictly
    assert metrics_a == metrics_b
    assert (scores_a.accuracy, scores_a.precision, scores_a.recall, scores_a.f1) == (
        scores_b.accuracy, scores_b.precision, scores_b.recall, scores_b.f1)
    assert np.array_equal(scores_a.confusion, scores_b.confusion)
    assert not all(np.array_equal(a, b) for a, b in zip(init_a, final_a))  # it did train
    other = [to_np(w) for w in tiny_model(3, seed=8).weights]
    assert not np.array_equal(other[0], init_a[0])  # the seed matters


@pytest.mark.parametrize("seed", [-1, 1.5, "0", True, None])
def test_set_seed_rejects_bad_seeds(seed):
    with pytest.raises(ValueError, match="non-negative integer"):
        tk.set_seed(seed)


def test_validation_numbers_equal_keras_evaluate(letters, letters_val):
    """tk.fit measures validation with its own forward pass: same numbers as model.evaluate."""
    from helpers import TINY_WIDTHS

    tk.set_seed(0)
    model = tk.compile_model(tk.build_model(3, widths=TINY_WIDTHS), 1e-2)
    history = tk.fit(model, letters, letters_val, epochs=2, batch_size=8)
    loss, accuracy = model.evaluate(letters_val.x, letters_val.y, verbose=0)
    assert history.last("val_loss") == pytest.approx(loss, rel=1e-5)
    assert history.last("val_accuracy") == pytest.approx(accuracy, abs=1e-6)  # Keras: float32
