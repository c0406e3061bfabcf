"""Where the kit runs: backend, device, seeds and the cache folder.

Tier 1: it imports only ``checks``, ``files`` and ``_numerics`` from the kit.
"""
from __future__ import annotations

import logging
import os
import platform
import random
import sys
import warnings
from dataclasses import dataclass

from .files import remove_stale_temporaries
from .checks import (ENV_CACHE, ENV_PRESET, cache_location, check_backend, check_choice,
                     check_seed)

__all__ = ["ENV_CACHE", "ENV_PRESET", "PRESETS", "BackendWarning", "Preset", "backend_mismatch",
           "cache_dir", "cpu_description", "describe_device", "device_report",
           "mixed_precision_active", "numerics_tag", "preset", "set_seed",
           "warn_backend_mismatch"]

_numerics = __import__("importlib").import_module("._numerics", __package__)

# Portable numerics (README, "Tests"): before Keras, TensorFlow and NumPy load, since they
# read these variables then.  Set too late, it says so (a NumericsWarning).
_numerics.apply()

# Deterministic kernels on TensorFlow (read when ops first run; harmless elsewhere).
os.environ.setdefault("TF_DETERMINISTIC_OPS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _import_keras_quietly():
    """Import Keras with the process's stderr muted: TensorFlow's C++ start-up lines
    (timestamps, pids) would otherwise land in notebook outputs and differ every run.
    Python errors still surface as exceptions."""
    check_backend()  # a bad $KERAS_BACKEND: one line here, not a failure deep inside Keras
    # Keras is imported here, not at the top: this function mutes stderr around it
    if "keras" in sys.modules or os.environ.get("TRANSFERKIT_VERBOSE_IMPORT"):
        import keras
        return keras
    try:
        saved = os.dup(2)
    except OSError:  # no real stderr (some embedded interpreters)
        import keras
        return keras
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            import keras
            try:
                keras.distribution.list_devices()  # the first device query logs too
            except Exception:  # torch has none there: _gpus() asks a tensor instead
                pass
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    return keras


keras = _import_keras_quietly()
# TensorFlow's Python-side warnings (e.g. about retracing when several models are built in
# one session) would land in notebooks with memory addresses; errors still show.
logging.getLogger("tensorflow").setLevel(logging.ERROR)
import numpy as np  # noqa: E402


def _batch_normalization_exact(x, mean, variance, axis, offset=None, scale=None, epsilon=1e-3):
    """TensorFlow's batch normalization without its hardware approximation (portable numerics).

    ``tf.nn.batch_normalization`` scales by ``rsqrt(variance + epsilon)``; TensorFlow computes
    rsqrt (and ``1/x``) on the CPU from the RSQRTPS/RCPPS instructions plus one Newton step,
    and those instructions' results are the vendor's own tables (Intel and AMD differ; the
    manuals promise only a relative error below 1.5 * 2**-12).  Same algebra here with a
    square root and a division, which IEEE 754 rounds exactly on every CPU.  The maximum
    (a no-op: the variance plus epsilon is positive) keeps TensorFlow's graph optimiser from
    turning ``scale / sqrt(v)`` back into ``scale * rsqrt(v)``.
    """
    from keras import ops

    shape = [1] * len(x.shape)
    shape[axis] = -1
    std = ops.maximum(ops.sqrt(ops.add(variance, epsilon)), 1e-30)
    if scale is None:  # no 1/std (TensorFlow would compute it approximately): divide x
        out = ops.divide(ops.subtract(x, ops.reshape(mean, shape)), ops.reshape(std, shape))
        return out if offset is None else ops.add(out, ops.reshape(offset, shape))
    inv = ops.divide(scale, std)
    shift = ops.negative(ops.multiply(mean, inv))
    if offset is not None:
        shift = ops.add(offset, shift)
    return ops.add(ops.multiply(x, ops.reshape(inv, shape)), ops.reshape(shift, shape))


def _softmax_exact(x, axis=-1):
    """Softmax as ``exp(x - max) / sum``, with an IEEE division.

    TensorFlow's CPU Softmax kernel multiplies by an approximate reciprocal of the sum (its
    bits changed when the approximate instructions were emulated differently, see
    ``_batch_normalization_exact``); exp and the sums are the same on every CPU.  Keeps the
    logits on the output as Keras' own softmax does, so the cross-entropy still starts from
    them (``from_logits``)."""
    from keras import ops

    if axis is None:
        flat = ops.reshape(x, (-1,))
        return ops.reshape(_softmax_exact(flat, -1), ops.shape(x))
    e = ops.exp(ops.subtract(x, ops.stop_gradient(ops.max(x, axis=axis, keepdims=True))))
    output = ops.divide(e, ops.sum(e, axis=axis, keepdims=True))
    output._keras_logits = x
    return output


def _avoid_approximate_instructions():
    """Portable numerics on TensorFlow: Keras' batch normalization and softmax (what every
    BatchNormalization layer and softmax activation calls) without approximate instructions."""
    if _numerics.state()["mode"] != "portable" or keras.backend.backend() != "tensorflow":
        return False
    import keras.src.backend.tensorflow.nn as tf_nn  # no public hook for this: see docstrings

    tf_nn.batch_normalization = _batch_normalization_exact
    tf_nn.softmax = _softmax_exact
    return True


EXACT_BATCH_NORMALIZATION = EXACT_SOFTMAX = _avoid_approximate_instructions()


def set_seed(seed=0):
    """Seed Python, NumPy and the Keras backend so a run can be repeated exactly."""
    seed = check_seed(seed)
    random.seed(seed)
    np.random.seed(seed)
    keras.utils.set_random_seed(seed)


# With deterministic ops TensorFlow refuses random ops before a seed is set: seed now,
# so a learner who never calls set_seed still gets a working (and repeatable) kernel.
set_seed(0)


_tidied = set()  # cache folders whose stale temporary files this process has removed


def cache_dir(create=True):
    """Folder for cached models: $TRANSFERKIT_CACHE, else the repo's ``data/cache``.

    The first time a process uses a cache folder, it removes what killed writers left there
    (``remove_stale_temporaries``): a save's temporary file never stays for good.
    """
    path = cache_location()
    if create:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OSError(f"cannot create the cache folder {str(path)!r} ({exc.strerror}); "
                          f"set {ENV_CACHE} to a writable folder") from None
        if str(path) not in _tidied:
            _tidied.add(str(path))
            remove_stale_temporaries(path)
    return path


# --------------------------------------------------------------------------- the backend
class BackendWarning(UserWarning):
    """KERAS_BACKEND names another backend than the one Keras loaded."""


_warned_backends = set()


def backend_mismatch():
    """None, or one line when $KERAS_BACKEND names another backend than the running one:
    Keras reads it once, when it is imported, so setting it later changes nothing."""
    wanted = (os.environ.get("KERAS_BACKEND") or "").strip()
    running = keras.backend.backend()
    if not wanted or wanted == running:
        return None
    return (f"KERAS_BACKEND={wanted!r} was set after Keras loaded with {running!r}, so the kit "
            f"still trains with {running}; to use {wanted}, restart the kernel and set it before "
            "importing transferkit (e.g. %env KERAS_BACKEND=" + wanted + " in the first cell)")


def warn_backend_mismatch():
    """Warn once per backend name when $KERAS_BACKEND no longer matches the running backend
    (called when a model is built: the moment a learner expects the change to show)."""
    message = backend_mismatch()
    wanted = os.environ.get("KERAS_BACKEND")
    if message and wanted not in _warned_backends:
        _warned_backends.add(wanted)
        warnings.warn(message, BackendWarning, stacklevel=3)


def _gpus():
    """Accelerators Keras sees, through Keras' backend-neutral device list."""
    try:
        return [d for d in keras.distribution.list_devices() if d.lower().startswith(("gpu", "cuda"))]
    except Exception:  # torch has no such list (or a broken GPU stack): ask a tensor below
        pass
    try:  # Keras puts new tensors on its default device (torch: "cuda:0" when it has one)
        device = str(getattr(keras.ops.zeros(()), "device", "cpu"))
    except Exception:  # a broken GPU stack still leaves the CPU usable
        return []
    return [device] if device.lower().startswith(("gpu", "cuda")) else []


def cpu_description():
    """The CPU's model name and the vector instruction sets that change numerical results.

    oneDNN and OpenBLAS choose their kernels by these, so two CPUs that differ here may
    train the same seeded model to slightly different numbers (``tk.numerics_fingerprint``).
    """
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and model in ("", platform.machine()):
                    model = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
                    break
    except OSError:  # not Linux: the model name is all there is
        pass
    isa = [f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_fp16", "amx_tile")
           if f in flags]
    return f"{model} [{' '.join(isa)}]" if isa else model


def device_report():
    """A dict describing backend, versions and the device training will use."""
    backend = keras.backend.backend()
    framework = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}.get(backend)
    version = "?"
    if framework:
        try:
            version = __import__(framework).__version__
        except ImportError:
            pass
    gpus = _gpus()
    return {
        "backend": backend,
        "backend_version": version,
        "keras": keras.__version__,
        "python": platform.python_version(),
        "device": f"GPU ({gpus[0]})" if gpus else "CPU",
        "gpus": len(gpus),
        "cpu_cores": os.cpu_count(),
        "cpu": cpu_description(),
        "preset": preset().name,
        "mixed_precision": mixed_precision_active(),
        "numerics": _numerics.label(),
    }


def describe_device():
    """One line for a notebook's first cell."""
    r = device_report()
    return (f"Keras {r['keras']} on {r['backend']} {r['backend_version']}; "
            f"training on {r['device']} ({r['cpu_cores']} CPU cores); preset {r['preset']!r}"
            + (", mixed precision" if r["mixed_precision"] else "")
            + f"; numerics {r['numerics']}"
            + (f" (warning: {backend_mismatch()})" if backend_mismatch() else ""))


def numerics_tag():
    """What the kit's numbers depend on beyond the recipe, for cache keys: "portable-1" when
    the portable settings are in force, else the instruction sets and thread count, so a
    model trained under other numerics never replaces a cached one under the same key."""
    if _numerics.label() == "portable":
        return f"portable-{_numerics.VERSION}"
    isa = cpu_description().rpartition("[")[2].rstrip("]") or platform.machine()
    threads = os.environ.get("TF_NUM_INTRAOP_THREADS") or os.cpu_count()
    mode = "native" if _numerics.state()["mode"] == "native" else "portable-incomplete"
    return f"{mode} {isa}, {threads} threads"


# --------------------------------------------------------------------------- presets


@dataclass(frozen=True)
class Preset:
    """How big the kit's default jobs are on this machine (see ``preset``)."""

    name: str
    source_train_per_class: int  # letters rendered per class for the source task
    source_epochs: int
    batch_size: int
    widths: tuple  # channels of the CNN's blocks
    mixed_precision: bool  # float16 compute, float32 weights and head; only used on a GPU


# "cpu" is the kit as it has always been (a 2-core laptop; the committed notebook outputs).
# "gpu" trains on more data, longer, with a wider network, in mixed precision.
PRESETS = {
    "cpu": Preset("cpu", source_train_per_class=120, source_epochs=8, batch_size=64,
                  widths=(16, 32, 64), mixed_precision=False),
    "gpu": Preset("gpu", source_train_per_class=400, source_epochs=12, batch_size=128,
                  widths=(32, 64, 128), mixed_precision=True),
}


def preset(name=None):
    """The settings for this machine: ``name`` if given, else $TRANSFERKIT_PRESET,
    else "gpu" when Keras sees a GPU and "cpu" otherwise."""
    source = "name"
    if name is None:
        name, source = os.environ.get(ENV_PRESET) or None, ENV_PRESET
    if name is None:
        return PRESETS["gpu" if _gpus() else "cpu"]
    if source == ENV_PRESET:
        return PRESETS[check_choice(name, ENV_PRESET, sorted(PRESETS))]
    return PRESETS[check_choice(name, "preset", sorted(PRESETS), described=True)]


def mixed_precision_active():
    """True when Keras computes in float16 (the gpu preset on a GPU)."""
    return keras.config.dtype_policy().name == "mixed_float16"


def _apply_preset(chosen):
    # float16 is slow or unsupported on CPUs: mixed precision only where a GPU trains.
    if chosen.mixed_precision and _gpus():
        keras.config.set_dtype_policy("mixed_float16")


_apply_preset(preset())  # on import, like KERAS_BACKEND: a bad name fails here, clearly
