"""The named-block CNN, weight transfer, atomic saves, freezing (models.py, transfer.py)."""
from __future__ import annotations

import re
from pathlib import Path

import keras
import numpy as np
import pytest

import transferkit as tk
from helpers import TINY_WIDTHS, all_equal, backbone, snapshot, tiny_model, to_np
from transferkit.files import save_atomically

BACKBONE_WITH_WEIGHTS = ["block1_conv", "block1_bn", "block2_conv", "block2_bn"]


def _trainable(model):
    return {layer.name: layer.trainable for layer in model.layers if layer.weights}


def _keras_summary_counts(model):
    """Total / trainable / non-trainable counts as printed by keras' model.summary()."""
    lines = []
    model.summary(print_fn=lambda line, **kw: lines.append(line))
    text = "\n".join(lines)
    counts = {}
    for key in ("Total", "Trainable", "Non-trainable"):
        match = re.search(rf"{key} params: ([\d,]+)", text)
        counts[key] = int(match.group(1).replace(",", ""))
    return counts


# --------------------------------------------------------------------------- models
def test_build_model_has_named_blocks_and_head():
    model = tiny_model(3)
    assert model.output_shape == (None, 3)
    assert tuple(model.inputs[0].shape[1:]) == (28, 28, 1)
    assert tk.models.block_names(model) == ["block1", "block2"]
    assert [l.name for l in tk.models.block_layers(model, "block1")] == [
        "block1_conv", "block1_bn", "block1_relu"]
    assert tk.models.block_layers(model, "head") == [model.get_layer("head")]
    assert len(tk.models.block_names(tk.build_model(4, widths=(2, 2, 2)))) == 3


@pytest.mark.parametrize("kwargs, error", [
    (dict(num_classes=1), ValueError), (dict(num_classes=2.0), TypeError),
    (dict(num_classes=True), TypeError), (dict(num_classes=3, widths=()), ValueError),
    (dict(num_classes=3, widths=(4, 0)), ValueError)])
def test_build_model_rejects_bad_arguments(kwargs, error):
    """Not a whole number: TypeError; out of range: ValueError (checks.check_integer)."""
    with pytest.raises(error):
        tk.build_model(**kwargs)


def test_feature_extractor_shares_the_backbone(letters):
    model = tiny_model(3)
    features = tk.feature_extractor(model)
    assert features.output_shape == (None, TINY_WIDTHS[-1])
    assert features.get_layer("block2_conv") is model.get_layer("block2_conv")
    out = np.asarray(features.predict(letters.x[:5], verbose=0))
    assert out.shape == (5, TINY_WIDTHS[-1])


# --------------------------------------------------------------------------- save / load
def test_save_weights_writes_one_readable_file(trained, tmp_path):
    path = tk.save_weights(trained.model, tmp_path / "tiny.weights.h5")
    assert Path(path) == tmp_path / "tiny.weights.h5"
    assert [p.name for p in tmp_path.iterdir()] == ["tiny.weights.h5"]  # no temp files left
    stored = tk.read_weights_file(path)
    assert sorted(stored) == sorted(BACKBONE_WITH_WEIGHTS + ["head"])
    for name, arrays in stored.items():
        expected = [to_np(w) for w in trained.model.get_layer(name).weights]
        assert all(np.array_equal(a, e) for a, e in zip(arrays, expected))


def test_load_matching_weights_transfers_backbone_to_new_head(trained, tmp_path):
    path = tk.save_weights(trained.model, tmp_path / "source.weights.h5")
    saved = snapshot(trained.model)
    # training moved the BatchNorm statistics away from their initial values, so an
    # equality below cannot come from both models simply being freshly initialised
    assert not np.array_equal(saved["block1_bn"][2], np.zeros_like(saved["block1_bn"][2]))

    target = tiny_model(5, seed=1, name="target")
    head_before = [to_np(w) for w in target.get_layer("head").weights]
    assert not all_equal(backbone(snapshot(target)), backbone(saved))

    report = tk.load_matching_weights(target, path)

    assert isinstance(report, tk.transfer.LoadReport) and report.ok
    assert report.loaded == BACKBONE_WITH_WEIGHTS
    assert all_equal(backbone(snapshot(target)), backbone(saved))
    assert list(report.skipped) == ["head"]
    reason = report.skipped["head"]
    assert "8x3" in reason and "8x5" in reason  # file shape and model shape
    assert all(np.array_equal(a, to_np(w))
               for a, w in zip(head_before, target.get_layer("head").weights))
    assert report.not_in_file == [] and report.unused == []
    assert "skipped  head" in str(report)


def test_load_matching_weights_same_architecture_reproduces_predictions(trained, letters,
                                                                         tmp_path):
    path = tk.save_weights(trained.model, tmp_path / "same.weights.h5")
    copy = tiny_model(3, seed=3, name="copy")
    report = tk.load_matching_weights(copy, path, strict=True)
    assert report.loaded == BACKBONE_WITH_WEIGHTS + ["head"] and not report.skipped
    assert all_equal(snapshot(copy), snapshot(trained.model))
    np.testing.assert_array_equal(copy.predict(letters.x, verbose=0),
                                  trained.model.predict(letters.x, verbose=0))


def test_load_matching_weights_strict_names_the_mismatched_layer(trained, tmp_path):
    path = tk.save_weights(trained.model, tmp_path / "source.weights.h5")
    with pytest.raises(ValueError, match=r"layer 'head'.*8x3.*8x5"):
        tk.load_matching_weights(tiny_model(5), path, strict=True)


def test_save_model_writes_a_loadable_keras_file(trained, letters, tmp_path):
    path = tk.save_model(trained.model, tmp_path / "tiny.keras")
    assert Path(path) == tmp_path / "tiny.keras"
    assert [p.name for p in tmp_path.iterdir()] == ["tiny.keras"]
    restored = keras.saving.load_model(path)
    np.testing.assert_array_equal(restored.predict(letters.x, verbose=0),
                                  trained.model.predict(letters.x, verbose=0))
    with pytest.raises(ValueError, match=r"'\.keras'.*tiny\.keras"):
        tk.save_model(trained.model, tmp_path / "tiny.h5")
    assert [p.name for p in tmp_path.iterdir()] == ["tiny.keras"]


# --------------------------------------------------------------------------- bad files
def test_missing_weights_file_names_the_path(tmp_path):
    path = tmp_path / "nowhere" / "missing.weights.h5"
    with pytest.raises(FileNotFoundError) as err:
        tk.load_matching_weights(tiny_model(3), path)
    assert str(path) in str(err.value)


def test_wrong_suffix_is_rejected_on_save_and_load(tmp_path):
    model = tiny_model(3)
    with pytest.raises(ValueError) as err:
        tk.save_weights(model, tmp_path / "model.h5")
    assert "'.weights.h5'" in str(err.value) and "model.weights.h5" in str(err.value)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match=r"\.weights\.h5"):
        tk.load_matching_weights(model, tmp_path / "model.h5")


def test_weights_of_another_architecture_are_rejected(tmp_path):
    other = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4, name="alpha"),
                              keras.layers.Dense(3, name="omega")], name="other")
    path = tmp_path / "other.weights.h5"
    other.save_weights(path)
    model = tiny_model(3)
    before = snapshot(model)
    with pytest.raises(ValueError) as err:
        tk.load_matching_weights(model, path)
    msg = str(err.value)
    assert "another architecture" in msg and "alpha" in msg and "'cnn'" in msg
    assert all_equal(snapshot(model), before)


def test_truncated_weights_file_is_reported_as_truncated(trained, tmp_path):
    full = tk.save_weights(trained.model, tmp_path / "full.weights.h5")
    data = Path(full).read_bytes()
    cut = tmp_path / "cut.weights.h5"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError) as err:
        tk.load_matching_weights(tiny_model(3), cut)
    assert "truncated" in str(err.value) and str(cut) in str(err.value)


def test_non_hdf5_file_is_a_clear_value_error(tmp_path):
    junk = tmp_path / "junk.weights.h5"
    junk.write_text("not an HDF5 file")
    with pytest.raises(ValueError, match="is not an HDF5 file .*so not a Keras weights file") as err:
        tk.read_weights_file(junk)
    assert "truncated" not in str(err.value)  # not misdiagnosed as an interrupted save


# --------------------------------------------------------------------------- atomic saves
def test_save_atomically_leaves_no_file_when_the_write_fails(tmp_path):
    target = tmp_path / "model.weights.h5"
    seen = []

    def write(tmp):
        tmp = Path(tmp)
        seen.append(tmp)
        tmp.write_bytes(b"half a file")
        assert tmp.exists() and tmp.parent == tmp_path
        raise RuntimeError("disk went away")

    with pytest.raises(RuntimeError, match="disk went away"):
        save_atomically(write, target)
    assert len(seen) == 1 and seen[0] != target
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_failed_save_keeps_the_previous_file_intact(trained, tmp_path):
    target = tk.save_weights(trained.model, tmp_path / "model.weights.h5")
    good = Path(target).read_bytes()

    def write(tmp):
        Path(tmp).write_bytes(b"partial")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError) as err:
        save_atomically(write, target)
    assert str(target) in str(err.value) and "nothing was saved" in str(err.value)
    assert Path(target).read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == ["model.weights.h5"]


# --------------------------------------------------------------------------- freezing
def test_freeze_marks_backbone_frozen_and_head_trainable():
    model = tiny_model(3)
    assert tk.freeze(model) == ["block1", "block2"]
    flags = _trainable(model)
    assert flags == {"block1_conv": False, "block1_bn": False, "block2_conv": False,
                     "block2_bn": False, "head": True}


def test_freeze_by_name_and_top():
    model = tiny_model(3)
    assert tk.freeze(model, "block1") == ["block1"]
    assert _trainable(model)["block1_conv"] is False
    assert _trainable(model)["block2_conv"] is True
    model = tiny_model(3)
    assert tk.freeze(model, top=1) == ["block2"]
    assert _trainable(model)["block1_conv"] is True
    assert _trainable(model)["block2_conv"] is False


def test_freeze_then_fit_leaves_backbone_bit_identical_and_trains_head(letters):
    model = tiny_model(3)
    tk.freeze(model)
    before = snapshot(model)
    tk.compile_model(model, learning_rate=1e-2)
    tk.fit(model, letters, epochs=1, batch_size=8)
    after = snapshot(model)
    assert all_equal(backbone(after), backbone(before))  # incl. BatchNorm statistics
    assert not np.array_equal(after["head"][0], before["head"][0])
    assert not np.array_equal(after["head"][1], before["head"][1])


def test_unfreeze_keeps_batchnorm_frozen_by_default():
    """Flags only; test_training's fine_tune test checks the BatchNorm weights stay put."""
    model = tiny_model(3)
    tk.freeze(model)
    assert tk.unfreeze(model) == ["block1", "block2"]
    assert _trainable(model) == {"block1_conv": True, "block1_bn": False, "block2_conv": True,
                                 "block2_bn": False, "head": True}


def test_unfreeze_train_batchnorm_opens_batchnorm():
    model = tiny_model(3)
    tk.freeze(model)
    tk.unfreeze(model, train_batchnorm=True)
    assert all(_trainable(model).values())


def test_unfreeze_top_opens_only_the_last_blocks():
    model = tiny_model(3)
    tk.freeze(model)
    assert tk.unfreeze(model, top=1) == ["block2"]
    assert _trainable(model) == {"block1_conv": False, "block1_bn": False, "block2_conv": True,
                                 "block2_bn": False, "head": True}
    assert tk.unfreeze(model, top=0) == []


def test_unknown_block_lists_the_valid_blocks():
    with pytest.raises(ValueError) as err:
        tk.freeze(tiny_model(3), ["block1", "block9"])
    msg = str(err.value)
    assert "'block9'" in msg and "['block1', 'block2', 'head']" in msg


@pytest.mark.parametrize("top", [3, -1])
def test_unfreeze_top_out_of_range(top):
    with pytest.raises(ValueError) as err:
        tk.unfreeze(tiny_model(3), top=top)
    msg = str(err.value)
    assert f"top={top!r}" in msg and "2 blocks" in msg and "from 0 to 2" in msg


@pytest.mark.parametrize("top", [1.0, True])
def test_unfreeze_top_not_a_whole_number(top):
    with pytest.raises(TypeError, match=rf"top={top!r} is not a whole number"):
        tk.unfreeze(tiny_model(3), top=top)


def test_param_summary_matches_keras_counts():
    model = tiny_model(3)
    # conv 3*3*1*4 + bn 2*4 | conv 3*3*4*8 + bn 2*8 | dense 8*3+3 ; frozen: bn statistics
    expected_trainable, expected_frozen = 36 + 8 + 288 + 16 + 27, 8 + 16
    for state in ("fresh", "frozen", "unfrozen"):
        if state == "frozen":
            tk.freeze(model)
            expected_trainable, expected_frozen = 27, 36 + 16 + 288 + 32
        elif state == "unfrozen":
            tk.unfreeze(model)  # BatchNorm stays frozen
            expected_trainable, expected_frozen = 36 + 288 + 27, 16 + 32
        summary = tk.param_summary(model)
        keras_counts = _keras_summary_counts(model)
        assert (summary.trainable, summary.non_trainable) == (expected_trainable,
                                                              expected_frozen), state
        assert summary.trainable == keras_counts["Trainable"], state
        assert summary.non_trainable == keras_counts["Non-trainable"], state
        assert summary.total == keras_counts["Total"] == model.count_params()
        for block, trainable, frozen in summary.rows:
            layers = tk.models.block_layers(model, block)
            assert trainable + frozen == sum(l.count_params() for l in layers)
    assert [row[0] for row in summary.rows] == ["block1", "block2", "head"]
    assert "total" in str(summary)


def test_strict_load_failure_leaves_the_model_untouched(tmp_path):
    source = tk.build_model(5, widths=(4, 8), name="src")
    path = tk.save_weights(source, tmp_path / "src.weights.h5")
    target = tk.build_model(3, widths=(4, 8), name="dst")
    before = [w.numpy().copy() for w in target.weights]
    with pytest.raises(ValueError, match="'head'"):
        tk.load_matching_weights(target, path, strict=True)
    assert all(np.array_equal(b, w.numpy()) for b, w in zip(before, target.weights))
