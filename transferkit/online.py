"""Optional online extras: MNIST, Fashion-MNIST, CIFAR-10 and an ImageNet-pretrained backbone.

Everything else in the kit runs offline; this module is the one place that may
download, and only when asked.  Files are cached under ``tk.cache_dir()/online``
(``datasets/`` and ``models/``, the same layout as Keras' own ``~/.keras``), so a
file copied there by hand is used without any network.  Without a connection a
request fails within ``timeout`` seconds with one ``OfflineError`` that names the
file, the folder to copy it into and the kit's offline alternative.

Downloads go through ``keras.utils.get_file`` (checksums included) into a
temporary folder, then are renamed into place: the cache never holds half a file.
"""
from __future__ import annotations

import contextlib
import os
import socket
import threading
import urllib.parse
import urllib.request
from dataclasses import dataclass

import keras
import numpy as np

from .files import save_atomically, shown
from .checks import check_choice
from .data import DIGITS, IMAGE_SIZE, Dataset, Task
from .environment import cache_dir
from .onlinefiles import READ_ERRORS, READERS
from .models import FEATURES, INPUT, check_model, check_num_classes, classifier_head
from .weightfiles import check_weights_values

__all__ = ["BACKBONE_FILES", "DEFAULT_TIMEOUT", "ENV_OFFLINE", "KERAS_APPS_URL",
           "KERAS_DATASETS_URL", "MIN_BACKBONE_SIZE", "ONLINE_DATASETS", "OfflineError",
           "OnlineDataset", "OnlineFile", "backbone_architecture", "check_connection", "fetch",
           "fetch_online", "is_cached", "load_online_dataset", "offline_requested", "online_cache_dir",
           "online_file_paths", "online_task", "pretrained_backbone", "pretrained_target_model",
           "try_online"]

ENV_OFFLINE = "TRANSFERKIT_OFFLINE"  # set to 1 to never touch the network
DEFAULT_TIMEOUT = 5.0                # seconds for the connection check and each socket read
KERAS_DATASETS_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
KERAS_APPS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/"


class OfflineError(ConnectionError):
    """A file the kit needs is neither cached nor downloadable (no network)."""


@dataclass(frozen=True)
class OnlineFile:
    """One file to fetch: its name in the cache, where it comes from, its checksum."""

    name: str
    url: str
    file_hash: str | None = None
    subdir: str = "datasets"


@dataclass(frozen=True)
class OnlineDataset:
    key: str
    title: str
    files: tuple
    class_names: tuple
    image_shape: tuple


ONLINE_DATASETS = {d.key: d for d in (
    OnlineDataset(
        "mnist", "MNIST handwritten digits",
        (OnlineFile("mnist.npz", KERAS_DATASETS_URL + "mnist.npz",
                    "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"),),
        tuple(DIGITS), (28, 28, 1)),
    OnlineDataset(
        "fashion_mnist", "Fashion-MNIST clothing",
        tuple(OnlineFile(f, KERAS_DATASETS_URL + f, None, "datasets/fashion-mnist") for f in (
            "train-labels-idx1-ubyte.gz", "train-images-idx3-ubyte.gz",
            "t10k-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz")),
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
         "Bag", "Ankle boot"), (28, 28, 1)),
    OnlineDataset(
        "cifar10", "CIFAR-10 colour photos",
        (OnlineFile("cifar-10-python.tar.gz",
                    "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                    "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"),),
        ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
         "truck"), (32, 32, 3)),
)}

# The file Keras Applications would fetch for MobileNetV3Small(include_top=False).
BACKBONE_FILES = {
    "mobilenet_v3_small": OnlineFile(
        "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5",
        KERAS_APPS_URL + "mobilenet_v3/weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5",
        "d3e8ec802a04aa4fc771ee12a9a9b836", "models"),
}
MIN_BACKBONE_SIZE = 32  # MobileNetV3's smallest accepted input side


# --------------------------------------------------------------------------- cache + network
def online_cache_dir(create=True):
    """Where downloaded files live: ``tk.cache_dir()/online``."""
    path = cache_dir(create) / "online"
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


def _path(file):
    return online_cache_dir(create=False) / file.subdir / file.name


def _choose(key, table, what):
    return table[check_choice(key, what, table, described=True)]


def online_file_paths(name):
    """The cache paths a dataset (``'mnist'``) or backbone (``'mobilenet_v3_small'``) needs."""
    if name in ONLINE_DATASETS:
        return [_path(f) for f in ONLINE_DATASETS[name].files]
    if name in BACKBONE_FILES:
        return [_path(BACKBONE_FILES[name])]
    check_choice(name, "online file set", [*ONLINE_DATASETS, *BACKBONE_FILES], described=True)


def is_cached(name):
    """True when every file of ``name`` is in the cache (no network needed)."""
    return all(p.is_file() for p in online_file_paths(name))


def _host(url):
    parts = urllib.parse.urlsplit(url)
    return parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)



def _offline(file, what, alternative, reason):
    return OfflineError(
        f"cannot download {what} ({file.name} from {_host(file.url)[0]}): {reason}. "
        f"Offline alternative: {alternative}, or copy {file.name} into "
        f"{shown(_path(file).parent)}{os.sep}")


def _proxy_for(url):
    """(host, port) of the HTTP(S) proxy urllib would use for ``url``, else None."""
    scheme = urllib.parse.urlsplit(url).scheme
    proxy = urllib.request.getproxies().get(scheme)
    if not proxy or urllib.request.proxy_bypass(_host(url)[0]):
        return None
    return _host(proxy if "://" in proxy else f"http://{proxy}")


def offline_requested():
    """$TRANSFERKIT_OFFLINE as a switch: 1/true/yes/on forbid downloads, 0/false/no/off or
    unset allow them (case and spaces ignored); anything else is a one-line ValueError."""
    value = os.environ.get(ENV_OFFLINE, "")
    word = value.strip().lower()
    if word in ("1", "true", "yes", "on"):
        return True
    if word in ("", "0", "false", "no", "off"):
        return False
    raise ValueError(f"{ENV_OFFLINE}={value!r} is not understood; set it to 1 (never download) "
                     f"or 0 (downloads allowed), or unset it")


def check_connection(url, timeout=DEFAULT_TIMEOUT):
    """None if ``url``'s host (or its proxy) answers within ``timeout`` s, else the reason."""
    if offline_requested():
        return f"{ENV_OFFLINE} is set"
    host, port = _proxy_for(url) or _host(url)
    outcome = {}

    def attempt():
        try:
            socket.create_connection((host, port), timeout=timeout).close()
        except OSError as exc:
            outcome["error"] = exc

    # in a thread, so a slow DNS lookup (not covered by the socket timeout) cannot hang us
    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive() or isinstance(outcome.get("error"), socket.timeout):
        return f"no answer from {host} within {timeout:g} s"
    if "error" in outcome:
        return f"no connection to {host} ({outcome['error'].strerror or outcome['error']})"
    return None


@contextlib.contextmanager
def _socket_timeout(seconds):
    """A stalled download raises after ``seconds`` instead of hanging forever."""
    saved = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(saved)


def fetch(file, what, alternative, timeout=DEFAULT_TIMEOUT):
    """The cached path of ``file``, downloading it first (atomically) if it is missing."""
    target = _path(file)
    if target.is_file():
        return target
    reason = check_connection(file.url, timeout)
    if reason:
        raise _offline(file, what, alternative, reason)
    target.parent.mkdir(parents=True, exist_ok=True)

    def download(tmp):  # get_file checks the checksum; the rename publishes a complete file
        keras.utils.get_file(tmp.name, file.url, file_hash=file.file_hash,
                             cache_dir=str(tmp.parent), cache_subdir="")
    try:
        with _socket_timeout(timeout):
            save_atomically(download, target)
    except ValueError:  # checksum mismatch: a wrong file, not a network problem
        raise
    except Exception as exc:  # Keras wraps URL errors in a bare Exception
        raise _offline(file, what, alternative, f"the download failed ({exc})") from None
    return target


# --------------------------------------------------------------------------- datasets


_DATASET_ALTERNATIVE = "tk.target_task() (printed digits) or tk.handwritten_digits()"
_BACKBONE_WHAT = "the ImageNet weights of MobileNetV3Small"
_BACKBONE_ALTERNATIVE = "the kit's own source model, tk.source_model()"


def _arrays(name, timeout):
    spec = _choose(name, ONLINE_DATASETS, "online dataset")
    paths = [fetch(f, spec.title, _DATASET_ALTERNATIVE, timeout) for f in spec.files]
    try:
        return spec, READERS[name](paths)
    except READ_ERRORS as exc:
        raise ValueError(f"cannot read the cached {spec.title} files in {paths[0].parent} "
                         f"({exc}); delete them and fetch again") from None


def _to_dataset(spec, x, y, part):
    """uint8 (n, h, w[, c]) -> the kit's float32 images in [0, 1] with a channel axis."""
    x = np.asarray(x, np.float32).reshape((-1,) + spec.image_shape) / 255.0
    return Dataset(x, np.asarray(y, np.int64).ravel(), spec.class_names, f"{spec.key} {part}")


def load_online_dataset(name, timeout=DEFAULT_TIMEOUT):
    """The full train and test sets of ``name`` as two ``Dataset`` s (downloads if missing)."""
    spec, ((x_train, y_train), (x_test, y_test)) = _arrays(name, timeout)
    return _to_dataset(spec, x_train, y_train, "train"), _to_dataset(spec, x_test, y_test, "test")


def _balanced(y, sizes, rng, classes):
    """Index arrays, one per entry of ``sizes``: that many examples of every class each,
    disjoint, in random order."""
    parts = [[] for _ in sizes]
    for c in range(classes):
        idx = np.flatnonzero(np.asarray(y).ravel() == c)
        if len(idx) < sum(sizes):
            raise ValueError(f"only {len(idx)} examples of class {c}; ask for at most that many "
                             "per class")
        picks = rng.choice(idx, sum(sizes), replace=False)
        for part, chunk in zip(parts, np.split(picks, np.cumsum(sizes)[:-1])):
            part.append(chunk)
    return [rng.permutation(np.concatenate(p)) for p in parts]


def online_task(name, train_per_class=40, val_per_class=10, test_per_class=100, seed=2,
                timeout=DEFAULT_TIMEOUT):
    """A small balanced ``Task`` drawn from an online dataset, like ``tk.target_task()``.

    Train and validation come from the official training set, test from the test set;
    only the drawn images are converted, so memory stays small.
    """
    spec, ((x_train, y_train), (x_test, y_test)) = _arrays(name, timeout)
    rng = np.random.default_rng(seed)
    classes = len(spec.class_names)
    train, val = _balanced(y_train, (train_per_class, val_per_class), rng, classes)
    (test,) = _balanced(y_test, (test_per_class,), rng, classes)
    return Task(spec.key, _to_dataset(spec, x_train[train], y_train[train], "train"),
                _to_dataset(spec, x_train[val], y_train[val], "val"),
                _to_dataset(spec, x_test[test], y_test[test], "test"),
                description=f"{spec.title}, {train_per_class} training images per class")


def fetch_online(name, timeout=DEFAULT_TIMEOUT):
    """Download (once) every file of a dataset or backbone; returns the cached paths."""
    if name in ONLINE_DATASETS:
        spec = ONLINE_DATASETS[name]
        return [fetch(f, spec.title, _DATASET_ALTERNATIVE, timeout) for f in spec.files]
    online_file_paths(name)  # unknown names: the error lists the choices
    return [fetch(BACKBONE_FILES[name], _BACKBONE_WHAT, _BACKBONE_ALTERNATIVE, timeout)]


# --------------------------------------------------------------------------- backbone
def _check_size(input_size):
    if (isinstance(input_size, bool) or not isinstance(input_size, (int, np.integer))
            or input_size < MIN_BACKBONE_SIZE):
        raise ValueError(f"input_size={input_size!r}: MobileNetV3 needs an integer >= "
                         f"{MIN_BACKBONE_SIZE}, e.g. 96")


def backbone_architecture(input_size=96):
    """MobileNetV3Small without its classifier and with random weights (no download)."""
    _check_size(input_size)
    return keras.applications.MobileNetV3Small(
        input_shape=(int(input_size), int(input_size), 3), include_top=False, weights=None)


def pretrained_backbone(name="mobilenet_v3_small", input_size=96, timeout=DEFAULT_TIMEOUT):
    """MobileNetV3Small (``include_top=False``) with ImageNet weights, frozen.

    Expects RGB images with values in [0, 255] (its first layers rescale them).
    The weights file (about 4 MB) is downloaded once into ``online_cache_dir()/models``.
    """
    file = _choose(name, BACKBONE_FILES, "pretrained backbone")
    _check_size(input_size)
    path = fetch(file, _BACKBONE_WHAT, _BACKBONE_ALTERNATIVE, timeout)
    model = backbone_architecture(input_size)
    try:
        model.load_weights(str(path))
    except (OSError, ValueError, KeyError) as exc:  # a damaged or hand-copied wrong file
        raise ValueError(f"cannot read the cached {_BACKBONE_WHAT} in {shown(path)} "
                         f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); "
                         "delete it and fetch again") from None
    check_weights_values({w.path: [keras.ops.convert_to_numpy(w)] for w in model.weights},
                         f"the cached {_BACKBONE_WHAT} ({shown(path)})")
    model.trainable = False
    return model


def pretrained_target_model(backbone, num_classes, input_shape=(IMAGE_SIZE, IMAGE_SIZE, 1),
                            scale=None, name="pretrained_target"):
    """A new classifier for the kit's images on top of a frozen ``backbone``.

    The images are resized to the backbone's input, grey is repeated to RGB when the
    backbone wants three channels, and pixel values are multiplied by ``scale``
    (default: 255 for a Keras Applications model, which rescales inside, else 1).
    The input, the pooled features and the new classifier carry the kit's own models' names
    (``models.INPUT``, ``FEATURES``, ``HEAD``), so ``tk.compile_model``, ``tk.fit`` and ``tk.evaluate`` apply.
    """
    check_num_classes(num_classes)
    check_model(backbone, "backbone")
    want = tuple(backbone.inputs[0].shape[1:])
    if len(want) != 3:
        raise ValueError(f"backbone {backbone.name!r} takes inputs of shape {want}; "
                         "pass an image model (height, width, channels)")
    if scale is None:
        scale = 255.0 if backbone.name.lower().startswith("mobilenet") else 1.0
    inputs = keras.Input(shape=tuple(input_shape), name=INPUT)
    x = inputs
    if tuple(input_shape[:2]) != want[:2]:
        x = keras.layers.Resizing(want[0], want[1], name="resize")(x)
    if input_shape[-1] == 1 and want[-1] == 3:
        x = keras.layers.Concatenate(name="grey_to_rgb")([x, x, x])
    elif input_shape[-1] != want[-1]:
        raise ValueError(f"images with {input_shape[-1]} channels do not fit backbone "
                         f"{backbone.name!r}, which takes {want[-1]}; convert the images first")
    if scale != 1:
        x = keras.layers.Rescaling(scale, name="scale")(x)
    backbone.trainable = False
    x = backbone(x, training=False)  # BatchNorm stays in inference mode, as in notebook 03
    if len(x.shape) == 4:
        x = keras.layers.GlobalAveragePooling2D(name=FEATURES)(x)
    else:
        x = keras.layers.Identity(name=FEATURES)(x)
    outputs = classifier_head(num_classes)(x)
    return keras.Model(inputs, outputs, name=name)


def try_online(load, *args, **kwargs):
    """``load(*args, **kwargs)``, or None after printing the ``OfflineError`` 's message."""
    try:
        return load(*args, **kwargs)
    except OfflineError as exc:
        print(f"Offline: {exc}")
        return None
