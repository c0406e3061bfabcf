"""Parameter transfer: save weights, load what fits, freeze and unfreeze blocks.

Keras' own ``load_weights`` matches a ``.weights.h5`` file to a model by the
*order and type* of its layers.  ``load_matching_weights`` matches by layer
*name and shape* instead and reports what it did, which is what a learner needs
when the target model differs from the source (a new head, say).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .files import WEIGHTS_SUFFIX, save_atomically
from .checks import check_flag, check_integer
from .datachecks import check_data
from .models import HEAD, block_layers, block_names, check_kit_model, check_model
from .weightfiles import check_weights_name, read_weights_file

__all__ = ["PARTIAL_FIX", "WEIGHTS_SUFFIX", "LoadReport", "ParamSummary", "adapt_batchnorm",
           "batchnorm_layers", "count_params", "freeze", "load_matching_weights", "open_blocks",
           "param_summary", "read_weights_file", "save_model", "save_weights", "train_only",
           "unfreeze"]


# --------------------------------------------------------------------------- saving
def save_weights(model, path):
    """``model.save_weights`` written atomically; returns the path."""
    check_weights_name(path)
    check_model(model)
    return save_atomically(model.save_weights, path)


def save_model(model, path):
    """``model.save`` (architecture + weights + optimizer) written atomically to a ``.keras`` file."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"model path must be a str or pathlib.Path, got {path!r}; pass e.g. "
                        "'model.keras'")
    if not str(path).endswith(".keras"):
        raise ValueError(f"model file {str(path)!r} must end in '.keras'; rename it, e.g. "
                         f"{Path(path).stem}.keras")
    check_model(model)
    return save_atomically(model.save, path)


# --------------------------------------------------------------------------- loading
@dataclass
class LoadReport:
    """What ``load_matching_weights`` did, layer by layer."""

    path: str
    loaded: list = field(default_factory=list)     # layer names
    skipped: dict = field(default_factory=dict)    # layer name -> reason
    not_in_file: list = field(default_factory=list)
    unused: list = field(default_factory=list)     # in the file, not in the model
    backbone: list = field(default_factory=list)   # the model's layers with weights, but the head

    @property
    def ok(self):
        return bool(self.loaded)

    @property
    def backbone_missing(self):
        """Backbone layers that kept their random start (skipped or not in the file)."""
        return [name for name in self.backbone if name not in self.loaded]

    @property
    def complete(self):
        """True when every backbone layer was loaded from the file."""
        return bool(self.backbone) and not self.backbone_missing

    def summary(self):
        """One line: how many backbone layers came from the file, and what did not."""
        done = sum(name in self.loaded for name in self.backbone)
        line = f"loaded {done} of {len(self.backbone)} backbone layers from {Path(self.path).name}"
        missing = self.backbone_missing
        if missing:
            line += f" ({len(missing)} kept their random start, e.g. {missing[0]})"
        other = [name for name in list(self.skipped) + self.not_in_file if name not in missing]
        if other:
            line += f"; new: {', '.join(other)}"
        return line

    def __str__(self):
        lines = [f"Loaded {len(self.loaded)} layers from {Path(self.path).name}:"]
        lines += [f"  loaded   {name}" for name in self.loaded]
        lines += [f"  skipped  {name}: {why}" for name, why in self.skipped.items()]
        lines += [f"  kept init {name}: not in the file" for name in self.not_in_file]
        lines += [f"  unused   {name}: in the file, not in this model" for name in self.unused]
        return "\n".join(lines)

    def _repr_pretty_(self, p, cycle):
        p.text(str(self))


PARTIAL_FIX = ("pass the weights of a model built like this one (tk.build_model with the same "
               "widths, e.g. tk.source_model().weights_path)")


def load_matching_weights(model, path, strict=False, require_backbone=False,
                          fix=PARTIAL_FIX + " or load without require_backbone=True"):
    """Copy weights from ``path`` into layers of ``model`` with the same name and shapes.

    Layers whose shapes differ (the head of a task with another class count) are
    skipped and reported; ``strict=True`` turns any skip into an error.
    ``require_backbone=True`` refuses a file that leaves any backbone layer (every layer
    with weights but the head) at its random start.  Everything is checked before the
    first weight is written: a refusal leaves the model untouched.
    """
    check_model(model)
    stored = read_weights_file(path)
    report = LoadReport(str(path))
    names = {layer.name for layer in model.layers}
    if stored and not names & set(stored):
        raise ValueError(
            f"{str(path)!r} was saved from another architecture: none of its layers "
            f"({', '.join(sorted(stored)[:4])}, ...) exist in model {model.name!r}; "
            "build the model with tk.build_model or load a matching file")
    matches = []  # check everything first: a strict failure must leave the model untouched
    for layer in model.layers:
        if not layer.weights:
            continue
        if layer.name != HEAD:
            report.backbone.append(layer.name)
        if layer.name not in stored:
            report.not_in_file.append(layer.name)
            continue
        arrays = stored[layer.name]
        want = [tuple(w.shape) for w in layer.weights]
        have = [a.shape for a in arrays]
        if want != have:
            why = f"shape {_shapes(have)} in file, {_shapes(want)} in model"
            if strict:
                raise ValueError(f"layer {layer.name!r}: {why}; build the model to match the "
                                 "file or load with strict=False to skip this layer")
            report.skipped[layer.name] = why
            continue
        matches.append((layer, arrays))
    missing = [layer.name for layer in model.layers
               if layer.name in report.backbone and layer.name not in {l.name for l, _ in matches}]
    if require_backbone and missing:
        first = missing[0]
        why = report.skipped.get(first, "not in the file")
        raise ValueError(
            f"{str(path)!r} fills only {len(report.backbone) - len(missing)} of the "
            f"{len(report.backbone)} backbone layers of model {model.name!r} ({first}: {why}); "
            f"the rest would train from a random start: {fix}")
    for layer, arrays in matches:
        layer.set_weights(arrays)
        report.loaded.append(layer.name)
    report.unused = sorted(set(stored) - names)
    return report


def _shapes(shapes):
    return " + ".join("x".join(map(str, s)) for s in shapes[:1]) + (
        f" (+{len(shapes) - 1} more)" if len(shapes) > 1 else "")


# --------------------------------------------------------------------------- freezing
def _resolve_blocks(model, blocks, top, who):
    check_kit_model(model, needs=("blocks",), purpose=f"tk.{who} works on the kit's named blocks",
                    fix=f"build it with tk.build_model, or {who} your own model's layers with "
                        f"layer.trainable = {who == 'unfreeze'}")
    available = block_names(model)
    if top is not None and blocks is not None:
        raise ValueError(f"{who}(model, blocks={blocks!r}, top={top!r}) names blocks twice; pass "
                         f"either blocks=[...] (by name) or top=n (the top n), e.g. "
                         f"tk.{who}(model, top=1)")
    if top is not None:
        check_integer(top, "top", 0, len(available),
                      context=f"this model has {len(available)} blocks: {available}")
        return available[len(available) - top:] if top else []
    if blocks is None:
        return available
    if isinstance(blocks, str):
        blocks = [blocks]
    if not isinstance(blocks, (list, tuple)) or not all(isinstance(b, str) for b in blocks):
        raise TypeError(f"blocks={blocks!r} must be a block name or a list of them, e.g. "
                        f"blocks={available[:2]}")
    for b in blocks:
        block_layers(model, b)  # raises on unknown names
    return list(blocks)


def freeze(model, blocks=None, top=None):
    """Freeze blocks by name (default: the whole backbone) or the ``top`` n blocks.

    Remember to compile again afterwards: the kit's ``fit`` checks it.
    """
    frozen = _resolve_blocks(model, blocks, top, "freeze")
    for b in frozen:
        for layer in block_layers(model, b):
            layer.trainable = False
    return frozen


def unfreeze(model, blocks=None, top=None, train_batchnorm=False):
    """Unfreeze blocks by name or the ``top`` n blocks (default: all).

    BatchNorm layers stay frozen, i.e. in inference mode, unless
    ``train_batchnorm=True``: re-estimating their statistics from a few target
    examples usually destroys what the source taught.
    """
    check_flag(train_batchnorm, "train_batchnorm")
    opened = _resolve_blocks(model, blocks, top, "unfreeze")
    open_blocks(model, opened, train_batchnorm)
    return opened


def open_blocks(model, blocks, train_batchnorm=False):
    """Make the layers of ``blocks`` trainable; BatchNorm layers only if ``train_batchnorm``
    (the kit's one BatchNorm rule: ``unfreeze`` and every strategy phase use it)."""
    for b in blocks:
        for layer in block_layers(model, b):
            is_bn = layer.__class__.__name__ == "BatchNormalization"
            layer.trainable = train_batchnorm or not is_bn


def train_only(model, blocks, train_batchnorm=False):
    """Freeze every layer, then open ``blocks`` (block names and/or "head").

    Layer by layer: never ``model.trainable = True``, which on JAX and torch unfreezes
    every layer.
    """
    for layer in model.layers:
        layer.trainable = False
    open_blocks(model, blocks, train_batchnorm)


# --------------------------------------------------------------------------- BatchNorm
def batchnorm_layers(model):
    """The model's BatchNormalization layers, bottom to top."""
    return [layer for layer in model.layers if layer.__class__.__name__ == "BatchNormalization"]


def adapt_batchnorm(model, images, *, batch_size=256):
    """AdaBN: set every BatchNorm layer's moving mean and variance to the statistics of its
    input over ``images`` (unlabelled target images: an array or a ``tk.Dataset``).

    How: for each BatchNorm layer, bottom to top, a sub-model from the model's input to that
    layer's input runs over the images in inference mode (chunks of ``batch_size``); the
    per-channel mean and the population variance (divided by n, as BatchNorm's batch
    statistics are) over every image and position become the layer's moving mean and
    variance.  Bottom to top, so each layer sees its input as the adapted layers below it
    produce it.  Nothing else changes: not gamma and beta, not any other weight, not the
    ``trainable`` flags.  Returns the names of the adapted layers.
    """
    import keras

    x = check_data(images, "unlabelled images", model, labels=False)
    if not batchnorm_layers(model):
        raise ValueError(f"model {model.name!r} has no BatchNormalization layers: there is "
                         "nothing to adapt; pass a model with BatchNorm, e.g. one built with "
                         "tk.build_model")
    if len(x) < 2:
        raise ValueError(f"adapt_batchnorm needs at least 2 images to estimate a variance, got "
                         f"{len(x)}; pass more unlabelled target images, e.g. task.train.x")
    batch_size = check_integer(batch_size, "batch_size", 1)
    x = x.astype("float32", copy=False)
    adapted = []
    for layer in batchnorm_layers(model):
        probe = keras.Model(model.input, layer.input, name=f"{layer.name}_input")
        total = squares = None
        count = 0
        for start in range(0, len(x), batch_size):
            out = keras.ops.convert_to_numpy(probe(x[start:start + batch_size], training=False))
            out = out.astype(np.float64)
            axis = layer.axis % out.ndim
            reduce = tuple(a for a in range(out.ndim) if a != axis)
            part, part_sq = out.sum(axis=reduce), (out ** 2).sum(axis=reduce)
            total = part if total is None else total + part
            squares = part_sq if squares is None else squares + part_sq
            count += out.size // out.shape[axis]
        mean = total / count
        variance = np.maximum(squares / count - mean ** 2, 0.0)
        layer.moving_mean.assign(mean.astype(layer.moving_mean.dtype))
        layer.moving_variance.assign(variance.astype(layer.moving_variance.dtype))
        adapted.append(layer.name)
    return adapted


def count_params(weights):
    return int(sum(int(np.prod(w.shape)) for w in weights))


@dataclass
class ParamSummary:
    trainable: int
    non_trainable: int
    rows: list  # (block, trainable, non-trainable)

    @property
    def total(self):
        return self.trainable + self.non_trainable

    def __str__(self):
        lines = [f"{'block':<8}{'trainable':>11}{'frozen':>9}"]
        lines += [f"{b:<8}{t:>11,}{n:>9,}" for b, t, n in self.rows]
        lines.append(f"{'total':<8}{self.trainable:>11,}{self.non_trainable:>9,}")
        return "\n".join(lines)

    def _repr_pretty_(self, p, cycle):
        p.text(str(self))


def param_summary(model):
    """Trainable and non-trainable parameter counts, per block and in total."""
    check_kit_model(model, needs=("head",), purpose="tk.param_summary counts the kit's blocks "
                    "and head", fix="use model.summary() for another model, or build it with "
                    "tk.build_model")
    rows = []
    for b in block_names(model) + [HEAD]:
        layers_ = block_layers(model, b)
        rows.append((b, sum(count_params(l.trainable_weights) for l in layers_),
                     sum(count_params(l.non_trainable_weights) for l in layers_)))
    return ParamSummary(count_params(model.trainable_weights),
                        count_params(model.non_trainable_weights), rows)
