"""Offline datasets and task construction.

Everything here runs with no network: glyph images are rendered from the
fonts that ship inside matplotlib, and real handwritten digits come from
scikit-learn's bundled copy.  Images are float32 in [0, 1], shaped
(n, 28, 28, 1), white strokes on black, like MNIST.
"""
from __future__ import annotations

import os
import string
import warnings
from dataclasses import dataclass

import numpy as np
import matplotlib
from matplotlib.ft2font import FT2Font
from scipy import ndimage
from sklearn.datasets import load_digits

from .arraychecks import as_array, check_image_values, check_label_values
from .checks import check_choice, check_integer, check_seed

__all__ = ["DIGITS", "GLYPH_FONTS", "IMAGE_SIZE", "LOWERCASE", "RESTYLE_FONTS", "SHIFT_KINDS",
           "UPPERCASE", "Dataset", "Task", "augment", "check_dataset_values", "check_task_values",
           "few_shot", "glyph_dataset", "glyph_task", "handwritten_digits", "low_resolution", "render_glyphs", "rich_source_task", "shift",
           "shift_task", "source_task", "split", "target_task"]

IMAGE_SIZE = 28
UPPERCASE = string.ascii_uppercase
LOWERCASE = string.ascii_lowercase
DIGITS = string.digits

# Fonts bundled with matplotlib that have Latin letters and lining digits.
GLYPH_FONTS = (
    "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf",
    "DejaVuSans-BoldOblique.ttf", "DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf",
    "DejaVuSansMono-Oblique.ttf", "DejaVuSansMono-BoldOblique.ttf",
    "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSerif-Italic.ttf",
    "DejaVuSerif-BoldItalic.ttf", "STIXGeneral.ttf", "STIXGeneralBol.ttf",
    "STIXGeneralItalic.ttf", "STIXGeneralBolIta.ttf", "cmr10.ttf", "cmb10.ttf",
    "cmss10.ttf", "cmti10.ttf", "cmtt10.ttf",
)


@dataclass
class Dataset:
    """Images ``x`` (n, 28, 28, 1), integer labels ``y`` and the class names."""

    x: np.ndarray
    y: np.ndarray
    class_names: tuple
    name: str = ""

    def __post_init__(self):
        what = f"Dataset {self.name!r}"
        self.x, self.y = as_array(self.x, what), as_array(self.y, what, "labels")
        if self.x.ndim == 0 or self.y.ndim == 0:
            raise ValueError(f"{what}: images {self.x.shape} and labels {self.y.shape} must be "
                             "arrays with one image (one label) per row; pass e.g. x of shape "
                             "(n, 28, 28, 1) and y of shape (n,)")
        if len(self.x) != len(self.y):
            raise ValueError(
                f"Dataset {self.name!r}: {len(self.x)} images but {len(self.y)} labels; "
                "pass one label per image.")
        check_dataset_values(self, what)

    def __len__(self):
        return len(self.y)

    @property
    def num_classes(self):
        return len(self.class_names)

    def counts(self):
        """Examples per class, as a list indexed by class."""
        return np.bincount(self.y, minlength=self.num_classes).tolist()

    def subset(self, index, name=None):
        index = np.asarray(index)
        if index.dtype != bool:
            index = index.astype(np.intp)
        return Dataset(self.x[index], self.y[index], self.class_names, name or self.name)

    def __repr__(self):
        return (f"Dataset({self.name!r}: {len(self)} images {self.x.shape[1:]}, "
                f"{self.num_classes} classes)")


def check_task_values(task):
    """Every split of ``task`` as it holds now (a Dataset can be changed after it was made):
    one-line error naming the split, before any run trains."""
    for split in ("train", "val", "test"):
        if getattr(task, split, None) is not None:
            check_dataset_values(getattr(task, split), f"{task.name} {split} split")
    return task


def check_dataset_values(dataset, what):
    """What a Dataset holds: numeric, finite pixels in [0, 1] (it may hold a blank image),
    integer labels within its class names; a one-line error otherwise."""
    if len(dataset.x) != len(dataset.y):  # changed after it was made: x and y apart
        raise ValueError(f"{what}: {len(dataset.x)} images but {len(dataset.y)} labels; pass one "
                         "label per image (set x and y together, or make a new tk.Dataset)")
    check_image_values(dataset.x, what, whole=False)
    names = tuple(dataset.class_names or ())
    shown = ", ".join(map(repr, names[:3])) + (", ..." if len(names) > 3 else "")
    check_label_values(dataset.y, what, len(names) if names else None,
                       why=f"{len(names)} class names ({shown})",
                       fix="pass labels in that range, or one class name per class")


@dataclass
class Task:
    """A classification task split into train / validation / test."""

    name: str
    train: Dataset
    val: Dataset
    test: Dataset
    description: str = ""

    def __post_init__(self):
        for part in ("train", "val", "test"):
            split = getattr(self, part)
            if not isinstance(split, Dataset):
                raise TypeError(f"Task {self.name!r}: {part} must be a tk.Dataset, got "
                                f"{type(split).__name__}; pass e.g. tk.Dataset(x, y, class_names)")
            check_dataset_values(split, f"Task {self.name!r}: {part} ({split.name!r})")
            if tuple(split.class_names) != tuple(self.train.class_names):
                raise ValueError(f"Task {self.name!r}: {part} has class names "
                                 f"{tuple(split.class_names)[:4]} but train "
                                 f"{tuple(self.train.class_names)[:4]}; pass splits of one task")

    @property
    def class_names(self):
        return self.train.class_names

    @property
    def num_classes(self):
        return self.train.num_classes

    @property
    def input_shape(self):
        return tuple(self.train.x.shape[1:])

    def __repr__(self):
        return (f"Task({self.name!r}: {self.num_classes} classes, train={len(self.train)}, "
                f"val={len(self.val)}, test={len(self.test)})")


# --------------------------------------------------------------------------- glyphs
def _font_dir():
    return os.path.join(matplotlib.get_data_path(), "fonts", "ttf")


def _center(bitmap, size=IMAGE_SIZE, box=20):
    """Scale a glyph bitmap to fit a ``box``-pixel square and centre it on a canvas."""
    img = bitmap.astype(np.float32) / 255.0
    h, w = img.shape
    zoom = box / max(h, w)
    img = np.clip(ndimage.zoom(img, zoom, order=1), 0.0, 1.0)
    canvas = np.zeros((size, size), np.float32)
    h, w = img.shape
    top, left = (size - h) // 2, (size - w) // 2
    canvas[top:top + h, left:left + w] = img
    return canvas


_GLYPH_CACHE: dict = {}


def render_glyphs(chars, fonts=GLYPH_FONTS):
    """Render every char in every font once: array (len(chars), len(fonts), 28, 28)."""
    key = (tuple(chars), tuple(fonts))
    if key in _GLYPH_CACHE:
        return _GLYPH_CACHE[key]
    out = np.zeros((len(chars), len(fonts), IMAGE_SIZE, IMAGE_SIZE), np.float32)
    for j, font_file in enumerate(fonts):
        font = FT2Font(os.path.join(_font_dir(), font_file))
        font.set_size(48, 72)
        for i, ch in enumerate(chars):
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # a missing glyph must not pass silently
                font.set_text(ch, 0.0)
            font.draw_glyphs_to_bitmap()
            bitmap = np.asarray(font.get_image())
            if bitmap.max() == 0:
                raise ValueError(f"font {font_file!r} has no glyph for {ch!r}; "
                                 "choose characters the font covers")
            out[i, j] = _center(bitmap)
    _GLYPH_CACHE[key] = out
    return out


def augment(images, rng, strength=1.0):
    """Random affine warp, stroke width and noise: one new image per input image."""
    out = np.empty_like(images)
    c = (IMAGE_SIZE - 1) / 2.0
    for n, img in enumerate(images):
        angle = np.deg2rad(rng.uniform(-18, 18) * strength)
        scale = np.exp(rng.uniform(-0.2, 0.15) * strength)
        shear = rng.uniform(-0.3, 0.3) * strength
        cos, sin = np.cos(angle), np.sin(angle)
        forward = np.array([[cos, -sin], [sin, cos]]) @ np.array([[1, shear], [0, 1]]) * scale
        inverse = np.linalg.inv(forward)
        shift = rng.uniform(-2.5, 2.5, size=2) * strength
        offset = np.array([c, c]) - inverse @ (np.array([c, c]) + shift)
        warped = ndimage.affine_transform(img, inverse, offset=offset, order=1)
        stroke = rng.integers(-1, 2) if strength > 0 else 0
        if stroke > 0:
            warped = ndimage.grey_dilation(warped, size=(2, 2))
        elif stroke < 0:
            warped = ndimage.grey_erosion(warped, size=(2, 2)) * 0.5 + warped * 0.5
        warped = warped + rng.normal(0, 0.08 * strength, warped.shape)
        out[n] = np.clip(warped, 0.0, 1.0)
    return out


def glyph_dataset(chars, n_per_class, seed=0, fonts=GLYPH_FONTS, strength=1.0, name=None):
    """``n_per_class`` augmented renderings of each char, fonts drawn at random."""
    check_integer(n_per_class, "n_per_class", 1, described=True)
    rng = np.random.default_rng(check_seed(seed))
    base = render_glyphs(chars, fonts)
    font_idx = rng.integers(0, len(fonts), size=(len(chars), n_per_class))
    y = np.repeat(np.arange(len(chars)), n_per_class)
    x = base[y, font_idx.ravel()]
    x = augment(x, rng, strength)[..., None]
    order = rng.permutation(len(y))
    return Dataset(x[order], y[order].astype(np.int64), tuple(chars), name or "glyphs")


# --------------------------------------------------------------------------- digits
def handwritten_digits(name="handwritten digits"):
    """scikit-learn's bundled 1,797 real handwritten digits, upscaled 8x8 -> 28x28."""
    bunch = load_digits()
    small = bunch.images.astype(np.float32) / 16.0
    big = np.stack([ndimage.zoom(im, 20 / 8, order=1) for im in small])
    x = np.zeros((len(big), IMAGE_SIZE, IMAGE_SIZE), np.float32)
    x[:, 4:24, 4:24] = np.clip(big, 0, 1)
    return Dataset(x[..., None], bunch.target.astype(np.int64), tuple(DIGITS), name)


# --------------------------------------------------------------------------- sampling
def _check_is_dataset(dataset, who):
    if not isinstance(dataset, Dataset):
        hint = ("task.train (or task.val / task.test)" if isinstance(dataset, Task) else
                "a tk.Dataset, e.g. tk.Dataset(x, y, class_names)")
        raise TypeError(f"{who} takes one Dataset, got {type(dataset).__name__}; pass {hint}")
    check_dataset_values(dataset, f"dataset {dataset.name!r}")  # it may have changed since


def few_shot(dataset, k, seed=0):
    """Exactly ``k`` examples of every class, chosen deterministically by ``seed``."""
    if not isinstance(dataset, Dataset):
        hint = ("task.train (or task.val / task.test)" if isinstance(dataset, Task) else
                "a tk.Dataset")
        raise TypeError(f"few_shot samples one Dataset, got {dataset!r}; pass {hint}")
    check_integer(k, "k (shots per class)", 1, described=True)
    check_seed(seed)
    check_dataset_values(dataset, f"dataset {dataset.name!r}")  # it may have changed since
    counts = dataset.counts()
    smallest = min(counts)
    if k > smallest:
        cls = dataset.class_names[int(np.argmin(counts))]
        fix = (f"use k <= {smallest}" if smallest else
               "that class has no examples: drop it or sample from a larger dataset")
        raise ValueError(
            f"k={k} shots per class is more than class {cls!r} has ({smallest}) in "
            f"{dataset.name!r}; {fix}")
    rng = np.random.default_rng(seed)
    picks = [rng.choice(np.flatnonzero(dataset.y == c), size=k, replace=False)
             for c in range(dataset.num_classes)]
    index = np.concatenate(picks)
    return dataset.subset(index[rng.permutation(len(index))], f"{dataset.name}, {k}-shot")


def split(dataset, fractions=(0.7, 0.15, 0.15), seed=0):
    """Stratified train / validation / test split of one dataset."""
    _check_is_dataset(dataset, "split")
    if len(fractions) != 3 or abs(sum(fractions) - 1) > 1e-6 or min(fractions) <= 0:
        raise ValueError(f"fractions={fractions!r} must be three positive numbers summing to 1")
    rng = np.random.default_rng(check_seed(seed))
    parts = ([], [], [])
    for c in range(dataset.num_classes):
        idx = rng.permutation(np.flatnonzero(dataset.y == c))
        a = int(round(fractions[0] * len(idx)))
        b = a + int(round(fractions[1] * len(idx)))
        for part, chunk in zip(parts, (idx[:a], idx[a:b], idx[b:])):
            part.append(chunk)
    return tuple(dataset.subset(np.sort(np.concatenate(p)), f"{dataset.name} {s}")
                 for p, s in zip(parts, ("train", "val", "test")))


# --------------------------------------------------------------------------- tasks
def low_resolution(images, rng, fraction=0.5):
    """A random ``fraction`` of the images blurred as ``handwritten_digits`` makes its own: the
    20x20 glyph box shrunk to 8x8 and zoomed back (soft, blocky strokes); the rest unchanged."""
    out = np.array(images, dtype=np.float32, copy=True)
    for n in np.flatnonzero(rng.random(len(out)) < fraction):
        small = ndimage.zoom(out[n, 4:24, 4:24, 0], 8 / 20, order=1)
        out[n, :, :, 0] = 0.0
        out[n, 4:24, 4:24, 0] = np.clip(ndimage.zoom(small, 20 / 8, order=1), 0, 1)[:20, :20]
    return out


def glyph_task(chars, train_per_class, val_per_class, test_per_class, seed, name,
               description="", strength=1.0):
    """A task of rendered glyphs; each split is an independent draw (its own seed)."""
    check_seed(seed)
    splits = [glyph_dataset(chars, n, seed=seed * 10 + i, strength=strength,
                            name=f"{name} {part}")
              for i, (n, part) in enumerate(((train_per_class, "train"), (val_per_class, "val"),
                                             (test_per_class, "test")))]
    return Task(name, *splits, description=description)


def source_task(train_per_class=120, val_per_class=10, test_per_class=40, seed=1):
    """Source: the 26 capital letters A-Z, printed in 21 fonts, warped and noisy."""
    return glyph_task(UPPERCASE, train_per_class, val_per_class, test_per_class, seed, "letters",
                      "26 capital letters rendered from matplotlib's fonts, randomly warped")


def rich_source_task(train_per_class=200, val_per_class=5, test_per_class=20, seed=1):
    """A source that reaches further: 52 letters (A-Z, a-z), warped harder (strength 1.3), and
    half of every split blurred to 8x8 and back as ``handwritten_digits`` is."""
    task = glyph_task(UPPERCASE + LOWERCASE, train_per_class, val_per_class, test_per_class,
                      seed, "letters, rich", "52 letters, warped harder, half of them blurred "
                      "to 8x8 and back", strength=1.3)
    rng = np.random.default_rng(seed)
    return Task(task.name, *(Dataset(low_resolution(part.x, rng), part.y, part.class_names,
                                     part.name) for part in (task.train, task.val, task.test)),
                description=task.description)


def target_task(train_per_class=40, val_per_class=10, test_per_class=100, seed=2):
    """Target: the digits 0-9 in the same style; use ``few_shot`` on ``train`` for k shots."""
    return glyph_task(DIGITS, train_per_class, val_per_class, test_per_class, seed, "digits",
                      "10 digits rendered from matplotlib's fonts, randomly warped")


# --------------------------------------------------------------------------- domain shift
# Fonts the kit never trains on: Computer Modern math italic (slanted, old-style figures).
RESTYLE_FONTS = ("cmmi10.ttf",)
SHIFT_KINDS = {
    "inverted": "black strokes on white: every pixel p becomes 1 - p",
    "rotated": "a quarter turn counter-clockwise",
    "noisy": "Gaussian pixel noise (std 0.3), clipped to [0, 1]",
    "restyled": f"the same characters re-rendered in a font family never trained on "
                f"({', '.join(RESTYLE_FONTS)}), warped like the originals",
}


def shift(dataset, kind, seed=0):
    """The same images and labels, shifted in one documented way (``SHIFT_KINDS``).

    Labels, class names and order never change; only the pixels do.  ``restyled``
    re-renders each label's character, so it needs glyph class names ('0'..'9', 'A'..'Z').
    """
    _check_is_dataset(dataset, "shift")
    check_choice(kind, "shift kind", SHIFT_KINDS, described=True)
    rng = np.random.default_rng(check_seed(seed))
    x = dataset.x
    if kind == "inverted":
        out = 1.0 - x
    elif kind == "rotated":
        out = np.rot90(x, k=1, axes=(1, 2))
    elif kind == "noisy":
        out = np.clip(x + rng.normal(0.0, 0.3, x.shape), 0.0, 1.0)
    else:
        chars = "".join(dataset.class_names)
        if any(len(c) != 1 for c in dataset.class_names):
            raise ValueError(f"kind='restyled' re-renders characters, but {dataset.name!r} has "
                             f"class names {dataset.class_names!r}; use a glyph dataset")
        base = render_glyphs(chars, RESTYLE_FONTS)[:, 0]
        out = augment(base[dataset.y], rng)[..., None]
    return Dataset(np.ascontiguousarray(out, dtype=np.float32), dataset.y.copy(),
                   dataset.class_names, f"{dataset.name}, {kind}")


def shift_task(task, kind, seed=0):
    """A task whose three splits are all shifted (e.g. a mismatched source task)."""
    if not isinstance(task, Task):
        raise TypeError(f"shift_task shifts a tk.Task, got {type(task).__name__}; pass e.g. "
                        "tk.target_task(), or shift one Dataset with tk.shift(dataset, kind)")
    check_choice(kind, "shift kind", SHIFT_KINDS, described=True)
    return Task(f"{task.name}, {kind}", *(shift(part, kind, seed + i) for i, part in
                                          enumerate((task.train, task.val, task.test))),
                description=f"{task.description}; shifted: {SHIFT_KINDS[kind]}")
