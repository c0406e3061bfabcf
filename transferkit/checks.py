"""Checks that need neither Keras nor NumPy: seeds, numbers, the backend, folders.

The lowest layer of the kit.  The command line runs these before it imports the
backend (10-15 s on a small CPU), so a bad argument, a bad environment variable or
an unusable output folder is answered at once, in one line that names the value and
the fix; the library runs the same checks before any work starts.
"""
from __future__ import annotations

import importlib.util
import math
import numbers
import os
import sys
import tempfile
from pathlib import Path

__all__ = ["BACKENDS", "ENV_BACKEND", "ENV_CACHE", "ENV_PRESET", "MAX_SEED", "PRESET_NAMES",
           "cache_location", "check_backend", "check_cache_location", "check_choice", "check_flag", "check_integer",
           "check_number", "check_output_folder", "check_preset_env", "check_rate", "check_seed",
           "is_integer"]

ENV_CACHE = "TRANSFERKIT_CACHE"
ENV_BACKEND = "KERAS_BACKEND"
ENV_PRESET = "TRANSFERKIT_PRESET"
# The backends the kit trains with (Keras' "numpy" and "openvino" backends cannot train).
BACKENDS = ("jax", "tensorflow", "torch")
# The names of environment.PRESETS, for the command line's check before Keras is imported
# (tests/test_cli.py keeps the two in step).
PRESET_NAMES = ("cpu", "gpu")


def is_integer(value):
    """An int or a NumPy integer, not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_integer(value, what, low, high=None, *, described=False, context=None, example=None):
    """A whole number (not a bool) from ``low`` to ``high``: TypeError if it is not a whole
    number, ValueError if it is out of range; the message names the value, the rule, the fix.

    ``what`` is an argument's name (``epochs=2.5 is not a whole number ...``), or with
    ``described=True`` a description (``k (shots per class) must be an integer, got 5.0 ...``).
    ``context`` says why the range is what it is (``this model has 2 blocks``); ``example``
    is a call that passes a good value (``tk.build_model(task.num_classes)``).
    """
    if not is_integer(value):
        good = int(value) if isinstance(value, float) and value.is_integer() else low
        if described:
            raise TypeError(f"{what} must be an integer, got {value!r}; pass a whole number, "
                            f"e.g. {example or good}")
        raise TypeError(f"{what}={value!r} is not a whole number; pass an integer, e.g. "
                        f"{example or f'{what}={good}'}")
    if value < low or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"from {low} to {high}"
        kind = "a value" if described else "an integer"
        why = f" ({context})" if context else ""
        also = f", e.g. {example}" if example else ""
        raise ValueError(f"{what}={value!r} is out of range{why}; use {kind} {bound}{also}")
    return int(value)


def check_number(value, what, low, high, hint, *, closed=False):
    """A finite number in (``low``, ``high``] (``[low, high]`` with ``closed=True``), not a
    bool; ValueError naming the value and ``hint`` if not."""
    try:
        number = float(value)
        ok = (not isinstance(value, bool) and math.isfinite(number)
              and (low <= number if closed else low < number) and number <= high)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"{what}={value!r} is out of range; {hint}")
    return float(value)


def check_choice(value, what, choices, *, described=False):
    """``value`` is one of ``choices``; ValueError listing them if not.

    ``what`` is an argument's name (``by='x' is unknown; choose one of [...]``), or with
    ``described=True`` a description (``unknown shift kind 'x'; choose one of [...]``).
    """
    try:
        known = value in choices
    except TypeError:  # an unhashable value is in no dict
        known = False
    if not known:
        head = f"unknown {what} {value!r}" if described else f"{what}={value!r} is unknown"
        raise ValueError(f"{head}; choose one of {list(choices)}")
    return value


def check_flag(value, what):
    """True or False, nothing else (a TypeError otherwise)."""
    if not isinstance(value, bool):
        raise TypeError(f"{what}={value!r}; pass True or False")
    return value


MAX_SEED = 2 ** 32 - 1  # NumPy and Keras take seeds from 0 up to here


def check_seed(seed, what="seed"):
    """A non-negative integer seed; ``None`` is refused (it would draw differently each call)."""
    if seed is None:
        raise ValueError(f"{what}=None would draw differently on every call and the run could "
                         f"not be repeated; pass a non-negative integer, e.g. {what}=0 (another "
                         "integer gives another draw)")
    if not is_integer(seed) or seed < 0:
        raise ValueError(f"{what}={seed!r} must be a non-negative integer, e.g. {what}=0")
    if seed > MAX_SEED:  # NumPy's seeds stop here; it would fail deep inside with its own words
        raise ValueError(f"{what}={seed!r} is out of range; use an integer from 0 to {MAX_SEED}")
    return int(seed)


def check_rate(value, what="learning_rate", example="1e-3 (1e-4 for fine-tuning)"):
    """A positive learning rate up to 1, given as a number (not a string)."""
    if isinstance(value, str):
        raise ValueError(f"{what}={value!r} is a string, not a number; use a positive value "
                         f"such as {example}, without quotes")
    try:
        ok = (not isinstance(value, bool) and math.isfinite(float(value))
              and 0 < float(value) <= 1.0)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"{what}={value!r} is out of range; use a positive value such as "
                         f"{example}")
    return float(value)


# --------------------------------------------------------------------------- environment
def check_backend():
    """$KERAS_BACKEND names a backend the kit trains with, and it is installed.

    Checked before ``import keras``, which would otherwise fail deep inside Keras.
    """
    name = os.environ.get(ENV_BACKEND)
    if name is None or "keras" in sys.modules:
        return name
    if name not in BACKENDS:
        raise ValueError(f"{ENV_BACKEND}={name!r} is not a backend the kit can train with; "
                         f"set it to one of {list(BACKENDS)}, or unset it to use TensorFlow")
    if importlib.util.find_spec(name) is None:
        raise ImportError(f"{ENV_BACKEND}={name!r} but {name} is not installed; install it "
                          "(python -m pip install -r requirements-backends.txt) or unset "
                          f"{ENV_BACKEND} to use TensorFlow")
    return name


def check_preset_env():
    """$TRANSFERKIT_PRESET, if set, names a preset (the message of ``tk.environment.preset``)."""
    name = os.environ.get(ENV_PRESET) or None
    return name if name is None else check_choice(name, ENV_PRESET, sorted(PRESET_NAMES))


def cache_location():
    """The cache folder (not created): $TRANSFERKIT_CACHE, else the repo's ``data/cache``."""
    env = os.environ.get(ENV_CACHE)
    if env:
        return Path(env).expanduser()
    repo_data = Path(__file__).resolve().parent.parent / "data"
    return (repo_data / "cache") if repo_data.is_dir() else Path.home() / ".cache" / "transferkit"


def _nearest_existing(path):
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _broken_link(path):
    """The first component of ``path`` that is a symbolic link leading nowhere (dangling,
    or a loop), or None: creating the folder would fail there, after the work."""
    path = Path(os.path.abspath(path))
    for part in reversed([path, *path.parents]):
        if part.is_symlink():
            try:
                part.resolve(strict=True)
            except (OSError, RuntimeError):  # RuntimeError: a loop (before Python 3.13)
                return part
    return None


def _folder_problem(path, *, writable_if_exists=True):
    """What stops ``path`` being (or becoming) a writable folder, as the words that follow
    its name in a message, or None; checked without creating anything."""
    path = Path(path)
    broken = _broken_link(path)
    if broken is not None:
        where = "" if broken == Path(os.path.abspath(path)) else f" ({str(broken)!r})"
        return (f"leads through a symbolic link that points nowhere{where}: a dangling link "
                "or a loop")
    if path.exists() and not path.is_dir():
        return "is a file, not a folder"
    existing = _nearest_existing(path)
    if not existing.is_dir():
        return f"cannot be created: {str(existing)!r} is a file"
    if writable_if_exists or existing != Path(os.path.abspath(path)):
        reason = _unwritable(existing)
        if reason:
            return f"is not writable ({reason} in {str(existing)!r})"
    return None


def _unwritable(folder):
    """None if a file can be created in ``folder``, else the reason (a real try: root
    ignores permission bits, and /proc refuses everyone)."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            return None
    except OSError as exc:
        return exc.strerror or type(exc).__name__


def check_cache_location():
    """The cache folder is a folder, or can be created: checked without creating it (an
    existing one may be read-only: a complete cache there still loads)."""
    path = cache_location()
    problem = _folder_problem(path, writable_if_exists=False)
    if problem:
        raise OSError(f"the cache folder {str(path)!r} {problem}; set {ENV_CACHE} to a "
                      "writable folder")
    return path


def check_output_folder(path, names=(), option="--out"):
    """``path`` is (or can become) a writable folder, and none of ``names`` in it is a folder.

    Checked before any work, writing nothing that stays: no folder is created here.
    """
    path = Path(path)
    problem = _folder_problem(path)
    if problem:
        example = "~/transferkit-results" if problem.startswith("is not writable") else "results"
        raise OSError(f"{option} {str(path)!r} {problem}; choose a writable folder, e.g. "
                      f"{option} {example}")
    for name in names:
        if (path / name).is_dir():
            raise OSError(f"{option} {str(path)!r} holds a folder named {name!r} where the "
                          f"results file goes; remove or rename it, or choose another {option}")
    return path
