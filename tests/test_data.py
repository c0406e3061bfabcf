"""Datasets, k-shot sampling and splits (transferkit.data)."""
from __future__ import annotations

import numpy as np
import pytest

import transferkit as tk


def _keys(dataset):
    """Each image's bytes: augmented images carry random noise, so they are unique."""
    return [img.tobytes() for img in dataset.x]


def _check_images(x):
    assert x.ndim == 4 and x.shape[1:] == (28, 28, 1)
    assert x.dtype == np.float32
    assert x.min() >= 0.0 and x.max() <= 1.0
    assert x.max() > 0.5  # there are strokes, not blank canvases


# --------------------------------------------------------------------------- glyphs
def test_glyph_dataset_shape_dtype_range_and_labels():
    ds = tk.data.glyph_dataset("XYZ", 7, seed=3)
    _check_images(ds.x)
    assert ds.x.shape == (21, 28, 28, 1)
    assert ds.y.dtype.kind == "i" and ds.y.shape == (21,)
    assert ds.class_names == ("X", "Y", "Z")
    assert ds.num_classes == 3 and len(ds) == 21
    assert ds.counts() == [7, 7, 7]
    assert len(set(_keys(ds))) == 21


def test_glyph_dataset_is_deterministic_per_seed():
    a = tk.data.glyph_dataset("AB", 4, seed=5)
    b = tk.data.glyph_dataset("AB", 4, seed=5)
    c = tk.data.glyph_dataset("AB", 4, seed=6)
    assert np.array_equal(a.x, b.x) and np.array_equal(a.y, b.y)
    assert not np.array_equal(a.x, c.x)


@pytest.mark.parametrize("n", [0, -1])
def test_glyph_dataset_rejects_non_positive_count(n):
    with pytest.raises(ValueError, match="n_per_class"):
        tk.data.glyph_dataset("AB", n)


def test_glyph_dataset_blank_character_is_a_clear_error():
    with pytest.raises(ValueError, match="no glyph for ' '"):
        tk.data.glyph_dataset(" ", 1)


def test_target_task_shapes_and_classes():
    task = tk.target_task(train_per_class=3, val_per_class=2, test_per_class=4)
    assert isinstance(task, tk.Task)
    assert task.class_names == tuple(tk.data.DIGITS) and task.num_classes == 10
    assert task.input_shape == (28, 28, 1)
    for part, n in ((task.train, 3), (task.val, 2), (task.test, 4)):
        _check_images(part.x)
        assert part.x.shape == (10 * n, 28, 28, 1)
        assert part.counts() == [n] * 10
    # the splits are independent draws, not copies of each other
    assert not set(_keys(task.train)) & set(_keys(task.test))


def test_handwritten_digits():
    ds = tk.handwritten_digits()
    assert ds.x.shape == (1797, 28, 28, 1)
    _check_images(ds.x)
    assert ds.class_names == tuple(tk.data.DIGITS)
    assert set(np.unique(ds.y)) == set(range(10))
    # 8x8 digits upscaled into the central 20x20 box, MNIST-style black border
    assert not ds.x[:, :4].any() and not ds.x[:, 24:].any()


def test_low_resolution_blurs_about_the_given_fraction_like_the_handwritten_digits():
    images = tk.data.glyph_dataset("AB", 50, seed=0).x
    out = tk.data.low_resolution(images, np.random.default_rng(0), fraction=0.5)
    assert out.shape == images.shape and out.dtype == np.float32 and images is not out
    assert 0.0 <= out.min() and out.max() <= 1.0
    changed = np.array([not np.array_equal(a, b) for a, b in zip(images, out)])
    assert 35 <= changed.sum() <= 65  # of 100
    assert np.array_equal(out[~changed], images[~changed])
    # blurred as handwritten_digits is: outside the 20x20 box stays black
    assert not out[changed][:, :4].any() and not out[changed][:, 24:].any()
    none = tk.data.low_resolution(images, np.random.default_rng(0), fraction=0.0)
    assert np.array_equal(none, images)


def test_the_rich_source_task_has_52_letters_and_its_recipe_its_own_cache_key():
    task = tk.data.rich_source_task(train_per_class=3, val_per_class=1, test_per_class=1)
    assert task.num_classes == 52 and len(task.train) == 156
    assert task.class_names[:2] == ("A", "B") and task.class_names[26:28] == ("a", "b")
    recipe = tk.SOURCE_RECIPES["letters-rich"]
    assert tk.source.recipe_task(dict(recipe, train_per_class=2)).num_classes == 52
    assert tk.source.recipe_key(recipe) != tk.source.recipe_key(tk.SOURCE_RECIPE)


def test_dataset_rejects_label_count_mismatch():
    x = np.zeros((4, 28, 28, 1), np.float32)
    with pytest.raises(ValueError, match="4 images but 3 labels"):
        tk.Dataset(x, np.zeros(3, np.int64), ("a", "b"), "bad")


def test_subset_keeps_images_labels_and_class_names(letters):
    part = letters.subset([0, 5, 7], "three")
    assert len(part) == 3 and part.name == "three"
    assert part.class_names == letters.class_names
    np.testing.assert_array_equal(part.x, letters.x[[0, 5, 7]])
    np.testing.assert_array_equal(part.y, letters.y[[0, 5, 7]])


def test_subset_with_an_empty_list_gives_an_empty_dataset(letters):
    empty = letters.subset([])
    assert len(empty) == 0 and empty.x.shape == (0, 28, 28, 1)


# --------------------------------------------------------------------------- few_shot
def test_few_shot_takes_exactly_k_per_class_from_the_dataset():
    pool = tk.target_task(train_per_class=12, val_per_class=1, test_per_class=1).train
    shots = tk.few_shot(pool, 5, seed=3)
    assert shots.counts() == [5] * 10
    # every chosen image is one of the pool's images, with its label
    for img, label in zip(shots.x, shots.y):
        hits = np.flatnonzero((pool.x == img).all(axis=(1, 2, 3)))
        assert len(hits) >= 1 and label in pool.y[hits]


def test_few_shot_is_deterministic_per_seed():
    pool = tk.target_task(train_per_class=12, val_per_class=1, test_per_class=1).train
    a, b = tk.few_shot(pool, 4, seed=0), tk.few_shot(pool, 4, seed=0)
    c = tk.few_shot(pool, 4, seed=1)
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.y, b.y)
    assert not np.array_equal(a.x, c.x)


def test_few_shot_k_larger_than_a_class_names_k_and_the_maximum(letters):
    most = min(letters.counts())
    with pytest.raises(ValueError, match=rf"k={most + 1} .* use k <= {most}"):
        tk.few_shot(letters, most + 1)


@pytest.mark.parametrize("k", [0, -2])
def test_few_shot_rejects_non_positive_k(letters, k):
    with pytest.raises(ValueError, match=rf"k \(shots per class\)={k}"):
        tk.few_shot(letters, k)


@pytest.mark.parametrize("k", [2.5, "3", True])
def test_few_shot_rejects_non_integer_k(letters, k):
    with pytest.raises(TypeError, match="must be an integer"):
        tk.few_shot(letters, k)


def test_few_shot_of_an_empty_class_says_so(letters):
    only_two = letters.subset(np.flatnonzero(letters.y < 2))  # class 'C' now has none
    with pytest.raises(ValueError, match="no examples"):
        tk.few_shot(only_two, 1)


# --------------------------------------------------------------------------- split
def test_split_is_stratified_and_disjoint():
    data = tk.data.glyph_dataset("AB", 20, seed=4)
    train, val, test = tk.data.split(data, (0.5, 0.25, 0.25), seed=0)
    assert train.counts() == [10, 10] and val.counts() == [5, 5] and test.counts() == [5, 5]
    flat = [part.x.reshape(len(part), -1) for part in (train, val, test)]
    all_rows = np.concatenate(flat)
    assert len(np.unique(all_rows, axis=0)) == len(data)  # nothing shared, nothing lost


@pytest.mark.parametrize("fractions", [(0.5, 0.5), (0.7, 0.2, 0.2), (1.0, 0.0, 0.0)])
def test_split_rejects_bad_fractions(letters, fractions):
    with pytest.raises(ValueError, match="fractions"):
        tk.data.split(letters, fractions)
