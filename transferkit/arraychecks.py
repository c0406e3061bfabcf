"""What an array of images or labels must hold, whatever model reads it: NumPy only.

The kit's images are numbers (not strings, objects or bools), finite (a NaN pixel passes
every min / max comparison and turns whatever reads it into NaN), in [0, 1] and reaching
about 1; its labels are a 1-D array of integer class indices in range.  Each check raises
one line that names the value, the rule and the fix.  ``tk.Dataset`` checks what it holds
with these when it is made; ``datachecks`` adds what depends on a model (shape, head).
"""
from __future__ import annotations

import numpy as np

__all__ = ["MAX_PIXEL", "MIN_TOP_PIXEL", "as_array", "check_finite", "check_image_values",
           "check_label_values", "check_pixels", "label_fix"]

MAX_PIXEL = 2.0  # above this, images are 0-255 values, not the kit's [0, 1] pixels
MIN_TOP_PIXEL = 1.01 / 255  # at or below this, 0-255 images were divided by 255 twice


def as_array(values, what, kind="images"):
    """``values`` as a NumPy array (no copy of an array); a ragged list is a TypeError."""
    try:
        return np.asarray(values)
    except (TypeError, ValueError) as exc:  # ragged nested lists, odd objects
        reason = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise TypeError(f"{what} {kind} cannot be read as one array ({reason}); pass a NumPy "
                        "array, e.g. np.stack(list_of_images)") from None


def check_finite(values, what, fix="drop or repair them"):
    """No NaN or infinity in a float array (``what``: e.g. "source_features")."""
    values = np.asarray(values)
    if values.dtype.kind in "fc" and not np.isfinite(values).all():
        bad = int(np.count_nonzero(~np.isfinite(values)))
        raise ValueError(f"{what} hold {bad} NaN or infinite value(s); {fix}")
    return values


def check_image_values(x, what, *, whole=True):
    """Numbers, finite, pixels in [0, 1]; ``whole``: also not blank, not divided by 255 twice
    (a data set to learn from or score; a container such as ``tk.Dataset`` may hold a few)."""
    if x.dtype.kind not in "fiu":
        raise TypeError(f"{what} images have dtype {x.dtype}; convert with x.astype('float32')")
    if x.size == 0:
        return x
    if x.dtype.kind == "f":
        finite = np.isfinite(x)
        if not finite.all():
            bad = int(np.count_nonzero(~finite.reshape(len(x), -1).all(axis=1)))
            raise ValueError(f"{what} has {bad} image(s) with NaN or infinite pixels; drop or "
                             "repair them, e.g. x = np.nan_to_num(x, nan=0.0)")
    check_pixels(x, what, whole=whole)
    return x


def check_pixels(x, what, *, whole=True):
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
    if not whole:
        return
    if top == 0:
        raise ValueError(f"every pixel of {what} is 0: the images are blank, there is nothing to "
                         "learn or test; check how they were loaded or converted (e.g. "
                         "x.astype('float32') / 255, not x // 255)")
    if top <= MIN_TOP_PIXEL:
        raise ValueError(f"{what} pixel values reach only {top:.3g}: they look divided by 255 "
                         "twice, but the kit's pixels reach about 1; divide 0-255 values once, "
                         "e.g. x = raw.astype('float32') / 255")


def check_label_values(y, what, classes=None, *, why=None, fix=None):
    """A 1-D array of integer class indices, each in 0..classes-1 (non-negative if
    ``classes`` is None); ``why`` says where the count comes from ("the model's head has 3
    outputs"), ``fix`` what to do about a label outside it."""
    y = as_array(y, what, "labels")
    if y.dtype.kind not in "iu" or y.ndim != 1:
        raise ValueError(f"{what} labels must be a 1-D array of integer class indices, got "
                         f"dtype {y.dtype} and shape {y.shape}; {label_fix(y)}")
    if not len(y):
        return y
    low, high = int(y.min()), int(y.max())
    if classes is not None and (low < 0 or high >= classes):
        bad = high if high >= classes else low
        raise ValueError(f"{what} has label {bad} but {why} (labels 0..{classes - 1}); {fix}")
    if low < 0:
        raise ValueError(f"{what} has label {low}: class indices start at 0; pass labels "
                         "0..n-1, e.g. names, y = np.unique(y, return_inverse=True)")
    return y


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
