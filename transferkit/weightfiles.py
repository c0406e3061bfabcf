"""The one weights check: what every loader of the kit reads a ``.weights.h5`` file through.

``read_weights_file`` returns {layer name: [arrays]} only from a file that is what it claims
to be: named ``*.weights.h5``, a whole HDF5 file (an interrupted save or copy is told apart
from an HDF5 file of another kind, a Keras 2 ``.h5`` file and a file that is not HDF5 at
all), laid out as Keras 3 writes weights (``layers/<layer>/vars/0..n``), holding numbers,
all finite (a model that diverged saves NaN weights, which would otherwise load as
"6 of 6 layers" and train to chance).  Each refusal is one line naming the file and the fix.
"""
from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np

from .files import WEIGHTS_SUFFIX, os_error_reason

__all__ = ["WEIGHTS_SUFFIX", "check_weights_name", "check_weights_values", "read_weights_file"]

RESAVE = "delete it and save again"


def check_weights_name(path):
    """A str or Path ending in ``.weights.h5`` (the Keras 3 naming rule), not a ``.keras`` file."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"weights path must be a str or pathlib.Path, got {path!r}; pass e.g. "
                        "'source.weights.h5' or tk.source_model().weights_path")
    if str(path).endswith(".keras"):
        raise ValueError(f"{str(path)!r} is a whole-model '.keras' file, not a weights file; "
                         "load it with keras.saving.load_model(path) (save with tk.save_model), "
                         f"or use a weights file such as {Path(path).stem}{WEIGHTS_SUFFIX}")
    if not str(path).endswith(WEIGHTS_SUFFIX):
        raise ValueError(f"weights file {str(path)!r} must end in {WEIGHTS_SUFFIX!r} (the Keras 3 "
                         f"naming rule); rename it, e.g. {Path(path).stem}{WEIGHTS_SUFFIX}")


def check_weights_values(weights, where):
    """Every array numeric and finite; ``weights``: {layer name: [arrays]}, ``where``: what
    holds them (a file, a model)."""
    for name, arrays in weights.items():
        for array in arrays:
            if array.dtype.kind not in "fiub":
                raise ValueError(f"{where} holds weights of dtype {array.dtype} in layer {name!r}, "
                                 f"not numbers: it is damaged or not a weights file; {RESAVE}")
            if array.dtype.kind == "f" and not np.isfinite(array).all():
                bad = int(np.count_nonzero(~np.isfinite(array)))
                raise ValueError(
                    f"{where} holds {bad} NaN or infinite weight(s) in layer {name!r}: training "
                    "diverged; train again (e.g. with a lower learning rate), or use other "
                    "weights, e.g. tk.source_model().weights_path")
    return weights


def _open_problem(path, exc):
    """The one line for a file h5py cannot open."""
    code, reason = os_error_reason(exc)
    if path.stat().st_size == 0:
        return (f"{str(path)!r} is empty (0 bytes): an interrupted save or copy left it; "
                f"{RESAVE}")
    if "truncated" in reason:
        return (f"{str(path)!r} is not a readable Keras weights file ({reason}); it may be "
                f"truncated by an interrupted save: {RESAVE}")
    if "signature" in reason:
        return (f"{str(path)!r} is not an HDF5 file ({reason}), so not a Keras weights file; "
                "pass a file written by tk.save_weights(model, path) or model.save_weights(path)")
    return f"{str(path)!r} cannot be read ({reason}); check the file's permissions, or {RESAVE}"


def _layout_problem(path, f):
    """None for the Keras 3 weights layout, else the one line saying what the file is."""
    if "layers" in f and isinstance(f["layers"], h5py.Group):
        return None
    if "layer_names" in f.attrs or "model_weights" in f:
        return (f"{str(path)!r} is a Keras 2 (legacy .h5) weights file, not a Keras 3 one; load "
                "it with model.load_weights(path) into the model that saved it, then save it "
                "again with tk.save_weights(model, 'name.weights.h5')")
    held = ", ".join(sorted(f.keys())[:3]) or "nothing"
    return (f"{str(path)!r} is an HDF5 file but not a Keras weights file (no 'layers' group; it "
            f"holds {held}); pass a file written by tk.save_weights(model, path) or "
            "model.save_weights(path)")


def _read_layers(path, f):
    out = {}
    for key, group in f["layers"].items():
        vars_ = group.get("vars") if isinstance(group, h5py.Group) else None
        if vars_ is None:  # a nested model's group ('layers' inside), or no weights at all
            continue
        name = vars_.attrs.get("name", key)
        name = name.decode() if isinstance(name, bytes) else str(name)
        if sorted(vars_.keys(), key=lambda k: (len(k), k)) != [str(i) for i in range(len(vars_))]:
            raise ValueError(f"{str(path)!r} has layer {name!r} with variables "
                             f"{sorted(vars_.keys())[:4]}, not 0..n as Keras writes them: it is "
                             f"damaged or was not written by Keras 3; {RESAVE}")
        arrays = [np.asarray(vars_[str(i)]) for i in range(len(vars_))]
        if arrays:
            out[name] = arrays
    return out


def read_weights_file(path):
    """{layer name: [arrays]} from a Keras 3 ``.weights.h5`` file, checked (module docstring)."""
    check_weights_name(path)
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no weights file at {str(path)!r}; save one first with "
                                "tk.save_weights(model, path) or tk.source_model()")
    if path.is_dir():
        raise IsADirectoryError(f"{str(path)!r} is a folder, not a weights file; pass the path "
                                f"of a file inside it, e.g. {str(path / 'model.weights.h5')!r}")
    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise ValueError(_open_problem(path, exc)) from None
    try:
        with handle as f:
            problem = _layout_problem(path, f)
            if problem:
                raise ValueError(problem)
            weights = _read_layers(path, f)
    except (OSError, KeyError) as exc:  # a block h5py cannot read: the file is damaged
        reason = os_error_reason(exc)[1] if isinstance(exc, OSError) else str(exc)
        raise ValueError(f"{str(path)!r} is not a readable Keras weights file ({reason}); it "
                         f"may be truncated by an interrupted save: {RESAVE}") from None
    return check_weights_values(weights, repr(str(path)))
