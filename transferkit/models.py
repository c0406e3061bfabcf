"""The kit's network: a small CNN with named blocks and a replaceable head.

Layer names follow ``block<i>_<part>`` for the backbone, ``image`` for the input,
``features`` for the pooled feature vector and ``head`` for the classifier (``INPUT``,
``FEATURES``, ``HEAD``: ``online.pretrained_target_model`` builds with the same names), so
blocks can be frozen, inspected and transferred by name.
"""
from __future__ import annotations

import keras
import numpy as np
from keras import layers

from .checks import check_integer, is_integer
from .data import IMAGE_SIZE
from .environment import preset, warn_backend_mismatch

__all__ = ["AUGMENTATION", "DEFAULT_WIDTHS", "FEATURES", "HEAD", "INPUT", "augmentation_layers",
           "block_layers", "block_names", "build_model", "check_input", "check_kit_model",
           "check_model", "check_num_classes", "classifier_head", "feature_extractor", "forward",
           "kit_parts", "output_activation", "outputs_probabilities"]

DEFAULT_WIDTHS = preset().widths  # (16, 32, 64) on a CPU; wider with the gpu preset
INPUT = "image"        # the input layer
FEATURES = "features"  # the pooled feature vector the head reads
HEAD = "head"          # the classifier
AUGMENTATION = "augment"  # the augmentation layers inside a model (notebook 11)


def check_num_classes(num_classes):
    """A class count a classifier can have: a whole number >= 2."""
    return check_integer(num_classes, "num_classes", 2,
                         example="tk.build_model(task.num_classes), the task's class count")


def classifier_head(num_classes):
    """The Dense classifier named ``HEAD``: float32 logits even under mixed precision (the
    gpu preset on a GPU), since a float16 softmax/loss is unstable."""
    return layers.Dense(check_num_classes(num_classes), name=HEAD, dtype="float32")


def build_model(num_classes, input_shape=(IMAGE_SIZE, IMAGE_SIZE, 1), widths=DEFAULT_WIDTHS,
                name="cnn", *, augmentation=None):
    """Backbone of ``len(widths)`` conv blocks (conv, BatchNorm, ReLU), then a Dense head.

    Block 1 downsamples with stride 2 (cheap on a laptop CPU), block 2 max-pools,
    the last block is averaged over space into a feature vector.

    ``augmentation``: a Keras layer put between the input and block 1, e.g.
    ``augmentation_layers()``: Keras runs it in training only (``fit``), so predictions and
    evaluations see the images as they are.  It holds no weights, so weights load by name
    as without it.
    """
    warn_backend_mismatch()
    check_num_classes(num_classes)
    shape = tuple(input_shape) if isinstance(input_shape, (tuple, list)) else None
    if (shape is None or len(shape) != 3 or
            not all(is_integer(d) and d >= 1 for d in shape)):
        raise ValueError(f"input_shape={input_shape!r} must be (height, width, channels), one "
                         f"image without the batch axis; e.g. input_shape=({IMAGE_SIZE}, "
                         f"{IMAGE_SIZE}, 1) for the kit's grey images")
    if (isinstance(widths, (str, bytes)) or not isinstance(widths, (tuple, list)) or not widths
            or not all(is_integer(w) and w >= 1 for w in widths)):
        raise ValueError(f"widths={widths!r}: give one positive channel count per block, "
                         "e.g. widths=(16, 32, 64)")
    if augmentation is not None and not isinstance(augmentation, keras.layers.Layer):
        raise TypeError(f"augmentation={augmentation!r} is not a Keras layer; pass "
                        "tk.augmentation_layers(...) or a keras.Sequential of keras.layers.Random* "
                        "layers, or None for no augmentation")
    smallest = _smallest_side(len(widths))
    if min(shape[:2]) < smallest:
        raise ValueError(f"input_shape={input_shape!r} is too small for {len(widths)} blocks: "
                         "the strides and pooling would shrink it to nothing; use images of at "
                         f"least {smallest}x{smallest} pixels (resize them) or fewer widths")
    inputs = keras.Input(shape=tuple(int(d) for d in shape), name=INPUT)
    x = inputs if augmentation is None else augmentation(inputs)
    for i, width in enumerate(map(int, widths), start=1):
        x = layers.Conv2D(width, 3, strides=2 if i == 1 else 1, padding="same",
                          use_bias=False, name=f"block{i}_conv")(x)
        x = layers.BatchNormalization(momentum=0.9, name=f"block{i}_bn")(x)
        x = layers.ReLU(name=f"block{i}_relu")(x)
        if 1 < i < len(widths):
            x = layers.MaxPooling2D(name=f"block{i}_pool")(x)
    features = layers.GlobalAveragePooling2D(name=FEATURES)(x)
    outputs = classifier_head(num_classes)(features)
    return keras.Model(inputs, outputs, name=name)


def augmentation_layers(rotation=0.05, translation=0.1, zoom=0.1):
    """Random rotation, shift and zoom as Keras layers (one ``keras.Sequential`` named
    ``"augment"``), for ``build_model(..., augmentation=...)``.

    ``rotation``: a fraction of a full turn (0.05: up to 18 degrees either way);
    ``translation`` and ``zoom``: fractions of the image side.  0 leaves that one out.
    New pixels are black, like the kit's background.  Active only when Keras trains
    (``training=True``); in inference the layers pass images through unchanged.
    """
    factors = {"rotation": rotation, "translation": translation, "zoom": zoom}
    for what, value in factors.items():
        if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not (
                0 <= float(value) <= 0.5):
            raise ValueError(f"{what}={value!r} is out of range; use a fraction from 0 to 0.5, "
                             f"e.g. {what}=0.1 (0 leaves it out)")
    if not any(factors.values()):
        raise ValueError("rotation, translation and zoom are all 0: nothing to augment; give one "
                         "of them a value such as 0.1, or build the model with augmentation=None")
    parts = []
    if rotation:
        parts.append(layers.RandomRotation(float(rotation), fill_mode="constant", name="rotate"))
    if translation:
        parts.append(layers.RandomTranslation(float(translation), float(translation),
                                              fill_mode="constant", name="shift"))
    if zoom:
        parts.append(layers.RandomZoom(float(zoom), fill_mode="constant", name="zoom"))
    return keras.Sequential(parts, name=AUGMENTATION)


def _side_after(side, blocks):
    """Spatial side after the backbone: block 1 halves (stride 2, 'same'), the middle blocks
    max-pool (halving, rounding down)."""
    side = -(-side // 2)
    for _ in range(max(0, blocks - 2)):
        side //= 2
    return side


def _smallest_side(blocks):
    side = 1
    while _side_after(side, blocks) < 1:
        side += 1
    return side


def block_names(model):
    """Backbone blocks in order, e.g. ['block1', 'block2', 'block3']."""
    names = []
    for layer in model.layers:
        prefix = layer.name.split("_")[0]
        if prefix.startswith("block") and prefix not in names:
            names.append(prefix)
    return names


def block_layers(model, block):
    """The layers of one block ('block2') or of the head ('head')."""
    valid = block_names(model) + [HEAD]
    if block == HEAD or not block_names(model):
        check_kit_model(model, needs=("head",) if block == HEAD else ("blocks",),
                        purpose=f"the kit trains and freezes it by block (here {block!r})",
                        fix="build it with tk.build_model, or set layer.trainable yourself")
    if block not in valid:
        raise ValueError(f"unknown block {block!r}; this model has {valid}")
    if block == HEAD:
        return [model.get_layer(HEAD)]
    return [layer for layer in model.layers if layer.name.split("_")[0] == block]


def feature_extractor(model):
    """A model sharing ``model``'s backbone that outputs the pooled feature vector."""
    check_kit_model(model, needs=("features",), purpose="its features are that layer's output",
                    fix="build it with tk.build_model, or use keras.Model(model.input, "
                        "model.get_layer(name).output) for a layer of your own model")
    return keras.Model(model.input, model.get_layer(FEATURES).output,
                       name=f"{model.name}_features")


# --------------------------------------------------------------------------- model checks
def check_model(model, what="model"):
    """A Keras model with a defined input; a one-line TypeError / ValueError otherwise."""
    if not isinstance(model, keras.Model):
        inner = isinstance(getattr(model, "model", None), keras.Model)
        hint = (f"pass the Keras model inside it, e.g. {what}.model" if inner else
                "pass a Keras model, e.g. tk.build_model(task.num_classes)")
        raise TypeError(f"{what} must be a Keras model, got {type(model).__name__}; {hint}")
    try:
        tuple(model.inputs[0].shape)
    except (AttributeError, IndexError, TypeError, ValueError):
        raise ValueError(f"{what} {model.name!r} has no defined input yet; give it one, e.g. "
                         "keras.Input(shape=(28, 28, 1)) as its first layer") from None
    return model


_PARTS = {"blocks": "blocks named block1_..., block2_...", "head": f"layer named {HEAD!r}",
          "features": f"layer named {FEATURES!r} (the pooled feature vector)"}


def kit_parts(model):
    """The parts of the kit's layout that ``model`` has: a subset of blocks, features, head."""
    names = {layer.name for layer in model.layers}
    parts = {"blocks"} if block_names(model) else set()
    if FEATURES in names:
        parts.add("features")
    if HEAD in names and isinstance(model.get_layer(HEAD), keras.layers.Dense):
        parts.add("head")
    return parts


def check_kit_model(model, what="model", *, needs=("blocks", "head"), purpose, fix):
    """``model`` has the parts of the kit's layout that a function relies on (``needs``), so
    it cannot silently do nothing, or something else, on a model the kit did not build."""
    check_model(model, what)
    missing = [part for part in needs if part not in kit_parts(model)]
    if missing:
        raise ValueError(f"{what} {model.name!r} has no {' and no '.join(_PARTS[m] for m in missing)}"
                         f" (it was not built by tk.build_model), but {purpose}; {fix}")
    return model


def output_activation(model):
    """The activation of the model's output layer: 'softmax', 'linear' (logits), ..."""
    layer = model.layers[-1] if model.layers else None
    while isinstance(layer, keras.Model) and layer.layers:
        layer = layer.layers[-1]
    if isinstance(layer, keras.layers.Softmax):
        return "softmax"
    activation = getattr(layer, "activation", None)
    return getattr(activation, "__name__", "linear") if activation is not None else "linear"


def outputs_probabilities(model):
    """True when the model's output already is a softmax (probabilities, not logits)."""
    return output_activation(model) == "softmax"


def check_input(model, x):
    """Raise a one-line error when ``x`` does not fit the model's input."""
    check_model(model)
    expected = tuple(model.inputs[0].shape[1:])
    got = tuple(getattr(x, "shape", ()))
    if len(got) != len(expected) + 1 or got[1:] != expected:
        raise ValueError(
            f"input of shape {got} does not fit model {model.name!r}, which expects "
            f"(batch, {', '.join(map(str, expected))}); reshape to that, e.g. "
            f"x.reshape(-1, {', '.join(map(str, expected))})")


def forward(model, x, batch_size=256):
    """The model's outputs in inference mode, in chunks, as one numpy array.

    A direct call runs eagerly: no traced predict step, which Keras would build again
    after every ``compile``; for a few thousand small images that is the faster way.
    """
    parts = [keras.ops.convert_to_numpy(model(x[i:i + batch_size], training=False))
             for i in range(0, len(x), batch_size)]
    return np.concatenate(parts) if parts else np.zeros((0,) + tuple(model.outputs[0].shape[1:]))
