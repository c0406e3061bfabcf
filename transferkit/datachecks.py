"""The one data check: what every public function that takes images, labels or a dataset
runs on them first.

``check_data(data, what, model=...)`` takes a ``tk.Dataset``, an ``(x, y)`` pair or images
and checks, in this order: the kind of container, emptiness, the shape against the model's
input, the dtype, finite pixels in [0, 1] that reach about 1 (``arraychecks``), one label
per image, labels a 1-D integer array within the model's head, the Dataset's class names or
at least non-negative.  Each failure is one line that names the value and the fix, raised
before any training or scoring starts (the argument checks are in ``checks``).
"""
from __future__ import annotations

import numpy as np

from .arraychecks import (MAX_PIXEL, MIN_TOP_PIXEL, as_array, check_image_values,
                          check_label_values, check_pixels, label_fix)
from .data import Dataset, Task
from .models import check_input, check_model, forward

__all__ = ["HEAD_FIX", "MAX_PIXEL", "MIN_TOP_PIXEL", "as_xy", "check_classes", "check_data",
           "check_head_fits", "check_images", "check_pixels", "check_xy", "checked_outputs",
           "images_of", "label_fix", "outputs_of"]

HEAD_FIX = "build the model with num_classes matching the task"


def as_xy(data, what):
    """(x, y) of a Dataset or an (x, y) pair, as arrays; a one-line TypeError otherwise."""
    if isinstance(data, Dataset):
        return data.x, data.y
    if isinstance(data, (tuple, list)) and len(data) == 2:
        return as_array(data[0], what), as_array(data[1], what, "labels")
    hint = ("pass task.train, task.val or task.test" if isinstance(data, Task) or
            hasattr(data, "train") else "pass (x, y): the images and their integer labels")
    raise TypeError(f"{what} must be a tk.Dataset or an (x, y) pair, got "
                    f"{type(data).__name__}; {hint}")


def images_of(data, what):
    """The images of a Dataset, of an (x, y) pair, or the array itself."""
    if isinstance(data, Dataset):
        return data.x
    if isinstance(data, Task):
        raise TypeError(f"{what} must be images or a tk.Dataset, got {data!r}; pass task.train, "
                        "task.val or task.test")
    if isinstance(data, (tuple, list)) and len(data) == 2 and np.ndim(data[1]) < np.ndim(data[0]):
        return as_array(data[0], what)  # an (x, y) pair: the images
    if data is None or isinstance(data, (str, bytes, dict, set)):
        raise TypeError(f"{what} must be images (an array of shape (n, 28, 28, 1)) or a "
                        f"tk.Dataset, got {type(data).__name__}; pass e.g. task.test or task.test.x")
    return as_array(data, what)


def outputs_of(model):
    """The number of classes a model's head scores."""
    return int(model.outputs[0].shape[-1])


def check_images(model, x, what, *, allow_empty=False):
    """Images a model (or, with ``model=None``, any of the kit's models) can read: not empty,
    the model's input shape, numbers, finite, pixels in [0, 1] reaching about 1."""
    x = as_array(x, what)
    if x.ndim == 0:
        raise TypeError(f"{what} is a single value ({x.item()!r:.40}), not images; pass an array "
                        "of shape (n, height, width, channels), e.g. task.test.x")
    if len(x) == 0 and not allow_empty:
        raise ValueError(f"{what} is empty: there is nothing to train or test on; "
                         "check the split or the k-shot sampler")
    if model is not None:
        check_input(model, x)
    elif x.ndim != 4:
        raise ValueError(f"{what} images have shape {x.shape}; pass a batch of shape (n, height, "
                         "width, channels), e.g. x.reshape(-1, 28, 28, 1)")
    return check_image_values(x, what)


def check_xy(model, x, y, what):
    """Images and labels for ``model``: ``check_images``, one label per image, integer labels
    its head has outputs for."""
    check_images(model, x, what)
    y = np.asarray(y)
    if len(x) != len(y):
        raise ValueError(f"{what}: {len(x)} images but {len(y)} labels; pass one label per image")
    outputs = outputs_of(model)
    return check_label_values(y, what, outputs, why=f"the model's head has {outputs} outputs",
                              fix=HEAD_FIX)


def check_data(data, what, model=None, *, labels=True, head=True, allow_empty=False):
    """The one data check (module docstring).  ``data``: a Dataset or an (x, y) pair when
    ``labels``, else images too.  ``head``: the labels must fit the model's head; without it
    (a linear probe, a transferability score) they must fit the Dataset's class names, or be
    non-negative.  Returns (x, y), or x when ``labels`` is False."""
    if model is not None:
        check_model(model)
    if not labels:
        return check_images(model, images_of(data, what), what, allow_empty=allow_empty)
    x, y = as_xy(data, what)
    if head and model is not None:
        return x, check_xy(model, x, y, what)
    check_images(model, x, what, allow_empty=allow_empty)
    if len(x) != len(y):
        raise ValueError(f"{what}: {len(x)} images but {len(y)} labels; pass one label per image")
    names = tuple(data.class_names) if isinstance(data, Dataset) and data.class_names else ()
    return x, check_label_values(y, what, len(names) if names else None,
                                 why=f"{len(names)} class names",
                                 fix="pass labels in that range")


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


def checked_outputs(model, x, batch_size=256):
    """``forward(model, x)`` for checked images, refused when some outputs are not finite: a
    model whose weights went NaN (training diverged) would otherwise score as if it always
    said class 0 (the argmax of NaN), and predict probabilities of NaN."""
    out = forward(model, x, batch_size)
    bad = int(np.count_nonzero(~np.isfinite(out).reshape(len(out), -1).all(axis=1)))
    if bad:
        raise ValueError(f"model {model.name!r} gives NaN or infinite outputs for {bad} of "
                         f"{len(out)} images: its weights hold NaN or inf (training diverged); "
                         "train it again with a lower learning rate, or load good weights "
                         "(tk.load_matching_weights)")
    return out
