"""Checks on the data a function is given: (x, y) pairs, pixels, labels, a head that fits.

Each raises a one-line error that names what is wrong with the data and how to fix it,
before any training or scoring starts (the argument checks are in ``checks``).
"""
from __future__ import annotations

import numpy as np

from .data import Dataset
from .models import check_input

__all__ = ["MAX_PIXEL", "MIN_TOP_PIXEL", "as_xy", "check_classes", "check_head_fits",
           "check_pixels", "check_xy", "label_fix"]

MAX_PIXEL = 2.0  # above this, images are 0-255 values, not the kit's [0, 1] pixels
MIN_TOP_PIXEL = 1.01 / 255  # at or below this, 0-255 images were divided by 255 twice


def as_xy(data, what):
    if isinstance(data, Dataset):
        return data.x, data.y
    if isinstance(data, (tuple, list)) and len(data) == 2:
        return np.asarray(data[0]), np.asarray(data[1])
    hint = ("pass task.train, task.val or task.test" if hasattr(data, "train") else
            "pass (x, y): the images and their integer labels")
    raise TypeError(f"{what} must be a tk.Dataset or an (x, y) pair, got "
                    f"{type(data).__name__}; {hint}")


def check_xy(model, x, y, what):
    if len(x) == 0:
        raise ValueError(f"{what} is empty: there is nothing to train or test on; "
                         "check the split or the k-shot sampler")
    check_input(model, x)
    if x.dtype.kind not in "fiu":
        raise TypeError(f"{what} images have dtype {x.dtype}; convert with x.astype('float32')")
    finite = np.isfinite(x) if x.dtype.kind == "f" else None
    if finite is not None and not finite.all():
        bad = int(np.count_nonzero(~finite.reshape(len(x), -1).all(axis=1)))
        raise ValueError(f"{what} has {bad} image(s) with NaN or infinite pixels; drop or "
                         "repair them, e.g. x = np.nan_to_num(x, nan=0.0)")
    check_pixels(x, what)
    y = np.asarray(y)
    if len(x) != len(y):
        raise ValueError(f"{what}: {len(x)} images but {len(y)} labels; pass one label per image")
    if y.dtype.kind not in "iu" or y.ndim != 1:
        raise ValueError(f"{what} labels must be a 1-D array of integer class indices, got "
                         f"dtype {y.dtype} and shape {y.shape}; {label_fix(y)}")
    outputs = int(model.outputs[0].shape[-1])
    if y.min() < 0 or y.max() >= outputs:
        bad = int(y.max() if y.max() >= outputs else y.min())
        raise ValueError(f"{what} has label {bad} but the model's head has {outputs} outputs "
                         f"(labels 0..{outputs - 1}); build the model with num_classes matching "
                         "the task")


def check_pixels(x, what):
    """The kit's pixels lie in [0, 1] and reach about 1: anything else trains (or scores)
    without an error, just wrongly."""
    low, top = float(np.min(x)), float(np.max(x))
    if low < 0:
        kind, fix = (("[-1, 1] values", "x = (x + 1) / 2") if top <= 1.0 + 1e-6 else
                     ("standardised values (mean 0, std 1)",
                      "x = (x - x.min()) / (x.max() - x.min())"))
        raise ValueError(f"{what} pixel values range from {low:.3g} to {top:.3g}: they look like "
                         f"{kind}, but the kit's models expect pixels in [0, 1]; rescale first, "
                         f"e.g. {fix}")
    if top > MAX_PIXEL:
        # raw 0-255 images train without any error, just badly (saturated BatchNorm, huge logits)
        raise ValueError(f"{what} pixel values reach {top:g}: they look like 0-255 values, but "
                         "the kit's models expect pixels in [0, 1]; divide first, e.g. "
                         "x.astype('float32') / 255")
    if top == 0:
        raise ValueError(f"every pixel of {what} is 0: the images are blank, there is nothing to "
                         "learn or test; check how they were loaded or converted (e.g. "
                         "x.astype('float32') / 255, not x // 255)")
    if top <= MIN_TOP_PIXEL:
        raise ValueError(f"{what} pixel values reach only {top:.3g}: they look divided by 255 "
                         "twice, but the kit's pixels reach about 1; divide 0-255 values once, "
                         "e.g. x = raw.astype('float32') / 255")


def label_fix(y):
    """The fix for labels that are not a 1-D array of integer class indices."""
    if y.dtype.kind in "USO":
        return ("map class names to indices, e.g. names, y = np.unique(y, return_inverse=True)")
    if y.ndim == 2 and y.shape[1] == 1:
        return "it is a column: flatten it, e.g. y = y.ravel()" + (
            ".astype('int64')" if y.dtype.kind not in "iu" else "")
    if y.ndim == 2:
        return "one row per image looks one-hot: take the class index, e.g. y = y.argmax(axis=1)"
    if y.ndim != 1:
        return "pass one class index per image, e.g. y.reshape(len(x))"
    if y.dtype.kind == "b":
        return "convert with y.astype('int64')"
    if y.dtype.kind == "f" and len(y) and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
        return "convert with y.astype('int64')"
    return "these are not whole numbers: pass the class indices 0..n-1 (class scores: y.argmax(axis=1))"


def check_classes(y):
    present = np.unique(y)
    if len(present) < 2:
        raise ValueError(f"training data has a single class (label {int(present[0])}, all "
                         f"{len(y)} examples): a classifier learns nothing from one class; pass "
                         "examples of at least 2 classes (check the labels or the k-shot sampler)")


def check_head_fits(model, data, outputs):
    """A Dataset names its classes: a head with another number of outputs was built for
    another task, and its scores would mean nothing."""
    if isinstance(data, Dataset) and data.class_names and len(data.class_names) != outputs:
        names = ", ".join(map(str, data.class_names[:3])) + (", ..." if data.num_classes > 3
                                                             else "")
        raise ValueError(f"model {model.name!r} has {outputs} outputs but {data.name!r} has "
                         f"{data.num_classes} classes ({names}): the head was built for another "
                         "task; evaluate a model built for this one (e.g. "
                         f"tk.build_model({data.num_classes}) trained on it, or tk.with_head)")
