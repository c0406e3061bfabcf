"""BatchNorm modes for transfer (bn_mode) and AdaBN (tk.adapt_batchnorm)."""
from __future__ import annotations

import keras
import numpy as np
import pytest

import transferkit as tk
from transferkit.strategies import batchnorm_trains
from transferkit.transfer import batchnorm_layers
from helpers import TINY_WIDTHS, snapshot

STATS = ("moving_mean", "moving_variance")


@pytest.fixture(scope="module")
def small_task():
    return tk.target_task(train_per_class=4, val_per_class=2, test_per_class=3)


@pytest.fixture(scope="module")
def source_file(tmp_path_factory, letters):
    """A default-architecture source trained one epoch: its BatchNorm statistics are the
    letters', not the initial 0 and 1."""
    tk.set_seed(5)
    model = tk.compile_model(tk.build_model(3, name="source"), 1e-2)
    tk.fit(model, letters, None, epochs=1, batch_size=8)
    path = tmp_path_factory.mktemp("src") / "source.weights.h5"
    tk.save_weights(model, path)
    return path


def input_stats(model, layer, x):
    """Per-channel mean and population variance of ``layer``'s input over ``x``."""
    out = keras.ops.convert_to_numpy(keras.Model(model.input, layer.input)(x, training=False))
    out = out.astype(np.float64).reshape(-1, out.shape[-1])
    return out.mean(axis=0), out.var(axis=0)


def stats(model):
    return {l.name: [np.array(l.moving_mean.numpy()), np.array(l.moving_variance.numpy())]
            for l in batchnorm_layers(model)}


@pytest.mark.parametrize("widths", [TINY_WIDTHS, tk.models.DEFAULT_WIDTHS])
def test_adapt_batchnorm_sets_each_layer_to_its_inputs_statistics(widths, letters):
    tk.set_seed(1)
    model = tk.build_model(3, widths=widths)
    images = tk.shift(letters, "inverted").x
    names = tk.adapt_batchnorm(model, images, batch_size=7)  # uneven chunks on purpose
    layers_ = batchnorm_layers(model)
    assert names == [l.name for l in layers_] and len(names) == len(widths)
    for layer in layers_:
        mean, var = input_stats(model, layer, images)
        np.testing.assert_allclose(layer.moving_mean.numpy(), mean, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(layer.moving_variance.numpy(), var, rtol=1e-3, atol=1e-5)
        assert not np.allclose(layer.moving_variance.numpy(), 1.0)  # not the initial values


def test_adapt_batchnorm_changes_no_other_weight_nor_trainable_flag(letters):
    tk.set_seed(2)
    model = tk.build_model(3)
    tk.freeze(model, top=1)
    flags = {l.name: l.trainable for l in model.layers}
    before = snapshot(model)
    tk.adapt_batchnorm(model, tk.shift(letters, "noisy"))  # a Dataset works too
    after = snapshot(model)
    assert {l.name: l.trainable for l in model.layers} == flags
    changed = []
    for layer in model.layers:
        for i, w in enumerate(layer.weights):
            same = np.array_equal(before[layer.name][i], after[layer.name][i])
            if not same:
                changed.append(w.path.split("/")[-1])
    assert changed and set(changed) <= set(STATS), changed


def test_adapt_batchnorm_refuses_a_single_image(letters):
    with pytest.raises(ValueError, match="at least 2 images"):
        tk.adapt_batchnorm(tk.build_model(3, widths=TINY_WIDTHS), letters.x[:1])


def test_the_batchnorm_rule():
    """One rule: scratch's BatchNorm layers train whatever is asked; a transfer strategy's
    train only under bn_mode="train"."""
    scratch, tuned = tk.STRATEGIES["scratch"], tk.STRATEGIES["fine_tune_all"]
    for mode in tk.BN_MODES:
        assert batchnorm_trains(scratch.bn_mode_for(mode))
        assert tuned.bn_mode_for(mode) == mode
    assert not batchnorm_trains("frozen") and not batchnorm_trains("adapt")
    assert batchnorm_trains("train")


@pytest.mark.parametrize("mode", ["frozen", "adapt", "train"])
def test_run_strategy_with_each_batchnorm_mode(mode, small_task, source_file):
    """Frozen: the source's statistics, BN never trainable; adapt: the target's statistics
    (the backbone of feature extraction never trains, so they stay as adapted); train: the
    BN layers of the opened blocks train."""
    strategy = "fine_tune_all" if mode == "train" else "feature_extraction"
    run = tk.run_strategy(strategy, small_task.train, None, 10, source_weights=source_file,
                          epochs=2, seed=0, bn_mode=mode)
    assert run.settings["bn_mode"] == mode
    source = tk.build_model(10)
    tk.load_matching_weights(source, source_file)
    got, was = stats(run.model), stats(source)
    bns = batchnorm_layers(run.model)
    if mode == "frozen":
        assert all(np.array_equal(got[n][i], was[n][i]) for n in got for i in (0, 1))
        assert not any(l.trainable for l in bns)
    elif mode == "adapt":
        tk.adapt_batchnorm(source, small_task.train.x)
        want = stats(source)
        for n in got:
            np.testing.assert_allclose(got[n][0], want[n][0], rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(got[n][1], want[n][1], rtol=1e-5, atol=1e-6)
        assert not np.allclose(got["block1_bn"][0], was["block1_bn"][0])
        assert not any(l.trainable for l in bns)
    else:  # the last phase opened every block: its BN layers train and their statistics move
        assert all(l.trainable for l in bns)
        assert not np.allclose(got["block3_bn"][0], was["block3_bn"][0])
        assert not np.allclose(run.model.get_layer("block3_bn").gamma.numpy(),
                               source.get_layer("block3_bn").gamma.numpy())


def test_bn_mode_train_opens_only_the_open_blocks_batchnorm(small_task, source_file):
    run = tk.run_strategy("fine_tune_top", small_task.train, None, 10,
                          source_weights=source_file, epochs=2, bn_mode="train")
    assert run.model.get_layer("block3_bn").trainable
    assert not run.model.get_layer("block1_bn").trainable


def test_adapt_uses_the_unlabelled_images_given(small_task, source_file):
    extra = tk.shift(small_task.test, "noisy")
    run = tk.run_strategy("feature_extraction", small_task.train, None, 10,
                          source_weights=source_file, epochs=1, bn_mode="adapt",
                          unlabelled=extra)
    want = tk.build_model(10)
    tk.load_matching_weights(want, source_file)
    tk.adapt_batchnorm(want, extra.x)
    np.testing.assert_allclose(stats(run.model)["block2_bn"][1], stats(want)["block2_bn"][1],
                               rtol=1e-5, atol=1e-6)


def test_fine_tune_with_bn_mode_train_trains_batchnorm(small_task, source_file):
    model = tk.build_model(10)
    tk.load_matching_weights(model, source_file)
    tk.fine_tune(model, small_task.train, None, head_epochs=1, finetune_epochs=1,
                 bn_mode="train")
    assert all(l.trainable for l in batchnorm_layers(model))


def test_sweep_records_the_bn_mode(small_task, source_file):
    rows = tk.sweep(["feature_extraction"], small_task, shots=[1], source_weights=source_file,
                    epochs=1, bn_mode="adapt")
    assert rows[0]["bn_mode"] == "adapt" and 0 <= rows[0]["accuracy"] <= 1


def test_run_strategy_finetune_lr_is_the_fine_tune_recipe_at_that_rate(small_task, source_file):
    """run_strategy("fine_tune_all", finetune_lr=...) trains exactly what tk.fine_tune does by
    hand with the same rate: the benchmark's 1e-3 method is reachable from every entry point."""
    train = tk.few_shot(small_task.train, 2, 0)
    run = tk.run_strategy("fine_tune_all", train, None, small_task.num_classes,
                          source_weights=source_file, epochs=2, seed=3, finetune_lr=1e-3,
                          bn_mode="train", repeat=1)
    assert run.settings["finetune_lr"] == 1e-3
    tk.set_seed(3)
    model = tk.build_model(small_task.num_classes, name="fine_tune_all")
    tk.load_matching_weights(model, source_file)
    tk.fine_tune(model, train, None, head_epochs=1, finetune_epochs=1, finetune_lr=1e-3,
                 bn_mode="train", repeat=1)
    for a, b in zip(run.model.weights, model.weights):
        assert np.array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b)), a.path
    slower = tk.run_strategy("fine_tune_all", train, None, small_task.num_classes,
                             source_weights=source_file, epochs=2, seed=3, bn_mode="train",
                             repeat=1)
    kernels = [keras.ops.convert_to_numpy(r.model.get_layer("block1_conv").kernel)
               for r in (slower, run)]
    assert not np.array_equal(*kernels)
    with pytest.raises(ValueError, match=r"finetune_lr='1e-3' is a string"):
        tk.run_strategy("fine_tune_all", train, None, small_task.num_classes,
                        source_weights=source_file, epochs=2, finetune_lr="1e-3")
