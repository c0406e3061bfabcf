"""When transfer fails: shifted inputs, alternative (mismatched) sources, forgetting."""
from __future__ import annotations

import numpy as np
import pytest

import transferkit as tk
from helpers import TINY_WIDTHS, all_equal, snapshot, tiny_model


# ----------------------------------------------------------------- shift
def test_inverted_is_one_minus_pixels_and_keeps_labels(letters):
    out = tk.shift(letters, "inverted")
    np.testing.assert_allclose(out.x, 1.0 - letters.x, atol=1e-7)
    np.testing.assert_array_equal(out.y, letters.y)
    assert out.class_names == letters.class_names and out.x.dtype == np.float32


def test_rotated_is_a_quarter_turn(letters):
    out = tk.shift(letters, "rotated")
    np.testing.assert_array_equal(out.x[:, :, :, 0], np.rot90(letters.x[:, :, :, 0], 1, (1, 2)))
    back = letters
    for _ in range(4):
        back = tk.shift(back, "rotated")
    np.testing.assert_array_equal(back.x, letters.x)
    np.testing.assert_array_equal(out.y, letters.y)


def test_noisy_changes_pixels_within_range_and_is_seeded(letters):
    a, b = tk.shift(letters, "noisy", seed=0), tk.shift(letters, "noisy", seed=0)
    c = tk.shift(letters, "noisy", seed=1)
    np.testing.assert_array_equal(a.x, b.x)
    assert not np.array_equal(a.x, c.x)
    assert a.x.min() >= 0.0 and a.x.max() <= 1.0
    assert 0.1 < np.abs(a.x - letters.x).mean() < 0.3  # std 0.3 noise, clipped
    np.testing.assert_array_equal(a.y, letters.y)


def test_restyled_redraws_the_same_characters_in_another_font(letters):
    out = tk.shift(letters, "restyled")
    np.testing.assert_array_equal(out.y, letters.y)
    assert out.x.shape == letters.x.shape and 0.0 <= out.x.min() and out.x.max() <= 1.0
    assert (out.x.reshape(len(out), -1).max(axis=1) > 0.5).all()  # every image has strokes
    assert not np.allclose(out.x, letters.x)


def test_unknown_shift_kind_names_the_allowed_kinds(letters):
    with pytest.raises(ValueError, match=r"unknown shift kind 'blurred'.*'inverted', 'rotated'"):
        tk.shift(letters, "blurred")


def test_restyled_needs_glyph_class_names(letters):
    odd = tk.Dataset(letters.x, letters.y, ("aa", "bb", "cc"), "odd")
    with pytest.raises(ValueError, match="re-renders characters"):
        tk.shift(odd, "restyled")


def test_shift_task_shifts_every_split(letters, letters_val):
    task = tk.Task("abc", letters, letters_val, letters_val)
    out = tk.data.shift_task(task, "inverted")
    assert out.name == "abc, inverted"
    for before, after in ((task.train, out.train), (task.val, out.val), (task.test, out.test)):
        np.testing.assert_allclose(after.x, 1.0 - before.x, atol=1e-7)


def test_accuracy_under_shift_reports_every_kind(trained, letters_val):
    report = tk.accuracy_under_shift(trained.model, letters_val, ("inverted", "rotated"))
    assert report.clean == pytest.approx(tk.evaluate(trained.model, letters_val).accuracy)
    assert list(report.shifted) == ["inverted", "rotated"]
    assert report.drop("inverted") == pytest.approx(100 * (report.clean - report.shifted["inverted"]))
    assert "inverted" in str(report) and "points" in str(report)


# ----------------------------------------------------------------- source recipes
@pytest.mark.skipif(tk.device_report()["backend"] != "tensorflow",
                    reason="JAX and torch cache their own source model: the key names the backend")
def test_default_recipe_key_is_unchanged():
    if tk.environment.numerics_tag() == "portable-1":  # the default; native has its own keys
        assert tk.source.recipe_key(tk.SOURCE_RECIPE) == "5c9d00136d"
    assert tk.source.recipe_key("letters") == tk.source.recipe_key(tk.SOURCE_RECIPE)
    keys = {tk.source.recipe_key(r) for r in tk.SOURCE_RECIPES.values()}
    assert len(keys) == len(tk.SOURCE_RECIPES)  # every recipe has its own cache file


def test_unknown_recipe_names_the_choices():
    with pytest.raises(ValueError, match=r"unknown source recipe 'shuffled'.*'letters-shuffled'"):
        tk.source_model("shuffled")
    with pytest.raises(ValueError, match=r"task 'words' is unknown.*'noise'"):
        tk.source.recipe_key(dict(tk.SOURCE_RECIPE, task="words"))


def small(task, epochs=1):
    return dict(tk.SOURCE_RECIPE, task=task, train_per_class=3, epochs=epochs,
                widths=list(TINY_WIDTHS))


def test_recipe_tasks_change_what_they_document():
    plain = tk.source.recipe_task(small("letters"))
    shuffled = tk.source.recipe_task(small("letters-shuffled"))
    inverted = tk.source.recipe_task(small("letters-inverted"))
    noise = tk.source.recipe_task(small("noise"))
    np.testing.assert_array_equal(shuffled.train.x, plain.train.x)
    assert sorted(shuffled.train.y) == sorted(plain.train.y)  # same labels, other images
    assert not np.array_equal(shuffled.train.y, plain.train.y)
    np.testing.assert_array_equal(shuffled.test.y, plain.test.y)  # test keeps true labels
    np.testing.assert_allclose(inverted.train.x, 1.0 - plain.train.x, atol=1e-7)
    assert noise.train.x.shape == plain.train.x.shape
    assert abs(float(noise.train.x.mean()) - 0.5) < 0.02  # uniform noise, not glyphs


def test_alternative_recipe_is_trained_once_then_loaded(capsys):
    recipe = small("noise")
    first = tk.source_model(recipe)
    assert "training it now" in capsys.readouterr().out
    assert first.weights_path.name == f"source-{tk.source.recipe_key(recipe)}.weights.h5"
    second = tk.source_model(recipe)
    assert "Loaded" in capsys.readouterr().out
    assert all_equal(snapshot(first.model), snapshot(second.model))
    assert second.info["task"] == "noise"


def test_untrained_recipe_keeps_initial_weights():
    recipe = small("letters", epochs=0)
    src = tk.source_model(recipe, verbose=False)
    tk.set_seed(0)
    fresh = tk.build_model(26, widths=TINY_WIDTHS, name="source")
    assert all_equal(snapshot(src.model), snapshot(fresh))


# ----------------------------------------------------------------- negative transfer
def test_compare_to_scratch_runs_both_on_the_same_shots(letters, letters_val, tmp_path):
    task = tk.Task("abc", letters, letters_val, letters_val)
    path = tmp_path / "src.weights.h5"
    tk.save_weights(tk.build_model(3, name="src"), path)
    cmp = tk.failures.compare_to_scratch(path, task, shots=2, seeds=(1,), epochs=1)
    assert cmp.transfer.seeds == cmp.scratch.seeds == (1,)
    assert all(0.0 <= v <= 1.0 for v in cmp.transfer.values + cmp.scratch.values)
    assert cmp.gap_points == pytest.approx(100 * (cmp.transfer.mean - cmp.scratch.mean))
    assert cmp.negative == (cmp.gap_points < 0)
    assert "gap" in str(cmp) and "scratch" in str(cmp)


# ----------------------------------------------------------------- forgetting
def test_with_head_takes_backbone_and_head_from_the_right_models():
    tuned, source = tiny_model(5, seed=1, name="tuned"), tiny_model(3, seed=2, name="source")
    both = tk.with_head(tuned, source)
    assert both.outputs[0].shape[-1] == 3
    for layer in both.layers:
        donor = source if layer.name == "head" else tuned
        for a, b in zip(layer.get_weights(), donor.get_layer(layer.name).get_weights()):
            np.testing.assert_array_equal(a, b)


def test_forgetting_is_zero_for_an_unchanged_backbone(trained, letters_val):
    report = tk.forgetting(trained.model, trained.model, letters_val)
    assert report.before == report.after
    assert report.drop_points == 0
    assert "before fine-tuning" in str(report)
