"""The full workflow of notebook 11 and the complexity table of notebook 07: augmentation layers
in the model, learning-rate schedules and the rate per epoch, early stopping through tk.fit, a
kept model saved and reloaded, predictions, the worst mistakes, what a model costs."""
from __future__ import annotations

import math

import keras
import numpy as np
import pytest

import transferkit as tk
from helpers import TINY_WIDTHS, tiny_model


def _np(tensor):
    return keras.ops.convert_to_numpy(tensor)


# --------------------------------------------------------------------------- augmentation
def test_augmentation_layers_change_images_in_training_only(letters):
    augment = tk.augmentation_layers(rotation=0.05, translation=0.1, zoom=0.1)
    assert augment.name == "augment"
    assert [type(layer).__name__ for layer in augment.layers] == [
        "RandomRotation", "RandomTranslation", "RandomZoom"]
    x = letters.x[:6]
    np.testing.assert_array_equal(_np(augment(x, training=False)), x)
    drawn = _np(augment(x, training=True))
    assert drawn.shape == x.shape and np.abs(drawn - x).max() > 0.1
    assert not np.array_equal(drawn, _np(augment(x, training=True))), "a new draw every call"
    # a factor of 0 leaves its layer out
    only_zoom = tk.augmentation_layers(rotation=0, translation=0, zoom=0.2)
    assert [type(layer).__name__ for layer in only_zoom.layers] == ["RandomZoom"]


def test_a_model_with_augmentation_loads_the_same_weights_and_predicts_as_without(trained,
                                                                                 letters, tmp_path):
    path = tk.save_weights(trained.model, tmp_path / "tiny.weights.h5")
    tk.set_seed(0)
    plain = tk.build_model(3, widths=TINY_WIDTHS, name="plain")
    augmented = tk.build_model(3, widths=TINY_WIDTHS, name="augmented",
                               augmentation=tk.augmentation_layers())
    assert augmented.layers[1].name == "augment"
    assert tk.models.block_names(augmented) == tk.models.block_names(plain)
    assert tk.param_summary(augmented).rows == tk.param_summary(plain).rows
    for model in (plain, augmented):
        report = tk.load_matching_weights(model, path)
        assert report.complete and "augment" not in [*report.skipped, *report.not_in_file]
    np.testing.assert_array_equal(tk.models.forward(augmented, letters.x),
                                  tk.models.forward(plain, letters.x))
    # and it trains: fit runs the augmentation, the kept file holds it
    tk.compile_model(augmented, learning_rate=1e-2)
    tk.fit(augmented, letters, epochs=1, batch_size=12)
    kept = tk.save_model(augmented, tmp_path / "augmented.keras")
    reloaded = keras.saving.load_model(kept)
    assert reloaded.get_layer("augment").layers[0].__class__.__name__ == "RandomRotation"
    np.testing.assert_array_equal(tk.models.forward(reloaded, letters.x),
                                  tk.models.forward(augmented, letters.x))


@pytest.mark.parametrize("kwargs, match", [
    ({"rotation": 0.7}, r"rotation=0\.7 is out of range; use a fraction from 0 to 0\.5"),
    ({"zoom": -0.1}, r"zoom=-0\.1 is out of range"),
    ({"translation": "0.1"}, r"translation='0\.1' is out of range"),
    ({"rotation": 0, "translation": 0, "zoom": 0}, r"all 0: nothing to augment"),
])
def test_augmentation_layers_reject_bad_factors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        tk.augmentation_layers(**kwargs)


def test_build_model_refuses_an_augmentation_that_is_not_a_layer():
    with pytest.raises(TypeError, match=r"augmentation=.* is not a Keras layer"):
        tk.build_model(3, widths=TINY_WIDTHS, augmentation=lambda x: x)


# --------------------------------------------------------------------------- schedules, stopping
def test_steps_per_epoch_counts_what_fit_runs():
    assert tk.steps_per_epoch(100, repeat=4) == 13          # 400 images in batches of 32
    assert tk.steps_per_epoch(36, batch_size=8) == 5
    assert tk.steps_per_epoch(10) == 1                      # a batch never exceeds the data
    with pytest.raises(ValueError, match="repeat=0 is out of range"):
        tk.steps_per_epoch(10, repeat=0)


def test_fit_with_a_schedule_records_the_rate_of_every_epoch(letters):
    steps = tk.steps_per_epoch(len(letters), batch_size=8)
    schedule = keras.optimizers.schedules.CosineDecay(1e-2, decay_steps=4 * steps)
    model = tk.compile_model(tiny_model(3), learning_rate=schedule)
    h = tk.fit(model, letters, epochs=4, batch_size=8)
    expected = [float(_np(schedule(steps * (epoch + 1)))) for epoch in range(4)]
    np.testing.assert_allclose(h.learning_rates, expected, rtol=1e-6)
    assert h.learning_rates[-1] == pytest.approx(0.0, abs=1e-9)
    # a constant rate, and both phases of a chained history
    tk.compile_model(model, learning_rate=3e-3)
    more = tk.fit(model, letters, epochs=2, batch_size=8)
    np.testing.assert_allclose(more.learning_rates, [3e-3, 3e-3], rtol=1e-6)
    assert h.then(more).learning_rates == h.learning_rates + more.learning_rates


def test_compile_model_still_refuses_a_bad_number_next_to_schedules():
    with pytest.raises(ValueError, match=r"learning_rate=5 is out of range"):
        tk.compile_model(tiny_model(3), learning_rate=5)


def test_early_stopping_through_tk_fit_restores_the_best_validation_epoch(letters, letters_val):
    """EarlyStopping reads the kit's validation numbers (they are in the logs before any user
    callback runs) and puts back the weights of the epoch with the lowest validation loss."""
    model = tk.compile_model(tiny_model(3), learning_rate=3e-2)
    stopper = keras.callbacks.EarlyStopping(monitor="val_loss", patience=2,
                                            restore_best_weights=True)
    h = tk.fit(model, letters, letters_val, epochs=12, batch_size=8, callbacks=[stopper])
    best = int(np.argmin(h.metrics["val_loss"]))
    assert stopper.best_epoch == best
    probabilities = tk.predict(model, letters_val).probabilities
    now = -np.log(probabilities[np.arange(len(letters_val)), letters_val.y]).mean()
    assert now == pytest.approx(h.metrics["val_loss"][best], abs=1e-5)
    if h.epochs < 12:
        assert h.epochs == best + 1 + 2, "stopped after `patience` epochs without a new best"


# --------------------------------------------------------------------------- predictions
def test_predict_gives_class_name_and_probability(trained, letters):
    said = tk.predict(trained.model, letters)
    logits = tk.models.forward(trained.model, letters.x)
    np.testing.assert_array_equal(said.labels, logits.argmax(axis=1))
    np.testing.assert_allclose(said.probabilities, _np(keras.ops.softmax(logits)), atol=1e-6)
    np.testing.assert_allclose(said.probabilities.sum(axis=1), 1.0)
    assert said.names == tuple(letters.class_names[i] for i in said.labels)
    np.testing.assert_allclose(said.confidence, said.probabilities.max(axis=1))
    one = tk.predict(trained.model, letters.x[3], class_names=letters.class_names)
    assert len(one) == 1 and one.names[0] == said.names[3]
    assert str(one) == f"image 0: {said.names[3]!r} ({said.confidence[3]:.1%})"
    assert tk.predict(trained.model, letters.x[:2]).names == tuple(str(i) for i in said.labels[:2])


def test_predict_checks_the_images(trained, letters):
    with pytest.raises(ValueError, match=r"does not fit model"):
        tk.predict(trained.model, letters.x[:2, ..., 0])
    with pytest.raises(ValueError, match=r"0-255"):
        tk.predict(trained.model, letters.x[:2] * 255)


def test_worst_mistakes_are_the_highest_losses_first(trained, letters):
    mistakes = tk.worst_mistakes(trained.model, letters, n=5)
    logits = tk.models.forward(trained.model, letters.x)
    losses = _np(keras.losses.sparse_categorical_crossentropy(letters.y, logits, from_logits=True))
    np.testing.assert_array_equal(mistakes.indices, np.argsort(-losses, kind="stable")[:5])
    np.testing.assert_allclose(mistakes.loss, losses[mistakes.indices], rtol=1e-4)
    assert list(mistakes.loss) == sorted(mistakes.loss, reverse=True)
    np.testing.assert_array_equal(mistakes.images, letters.x[mistakes.indices])
    np.testing.assert_array_equal(mistakes.true, letters.y[mistakes.indices])
    np.testing.assert_array_equal(mistakes.predicted, logits[mistakes.indices].argmax(axis=1))
    assert mistakes.wrong == int(np.sum(mistakes.true != mistakes.predicted))
    assert len(str(mistakes).splitlines()) == 6 and mistakes.class_names == letters.class_names
    with pytest.raises(ValueError, match=r"n=37 is out of range; use an integer from 1 to 36"):
        tk.worst_mistakes(trained.model, letters, n=37)


# --------------------------------------------------------------------------- complexity
def test_complexity_counts_parameters_and_bytes_and_times_both(trained, letters):
    tk.set_seed(0)
    small = tk.build_model(3, widths=(2, 4), name="small")
    report = tk.complexity({"big": trained.model, "small": small}, letters,
                           histories={"big": trained.history}, repeats=2)
    big = report["big"]
    assert big.parameters == trained.model.count_params()
    assert big.weight_bytes == 4 * big.parameters            # float32, BatchNorm statistics too
    assert report["small"].parameters == small.count_params() < big.parameters
    assert big.train_s_per_epoch == pytest.approx(trained.history.seconds / trained.history.epochs)
    assert math.isnan(report["small"].train_s_per_epoch)
    assert big.predict_ms > 0 and report["small"].predict_ms > 0
    table = str(report).splitlines()
    assert table[0].split() == ["model", "parameters", "weights", "train/epoch", "predict/image"]
    assert table[1].startswith("big") and f"{big.parameters:,}" in table[1]
    assert " - " in table[2] + " ", "no run given: no training time"
    assert str(big).startswith(f"big: {big.parameters:,} parameters")


@pytest.mark.parametrize("models, histories, error, match", [
    ({}, None, TypeError, r"pass a dict of one or more \{label: model\}"),
    ("teacher", None, TypeError, r"models=str"),
    ("ok", {"other": None}, ValueError, r"labels of models \(\['m'\]\)"),
    ("ok", {"m": [1.0]}, TypeError, r"histories\['m'\] is a list, not the RunHistory"),
])
def test_complexity_rejects_what_it_cannot_measure(trained, letters, models, histories, error,
                                                   match):
    models = {"m": trained.model} if models == "ok" else models
    with pytest.raises(error, match=match):
        tk.complexity(models, letters, histories=histories)
