"""Portable numerics: the same seeded bits on any x86-64 CPU with AVX2 (see README, "Tests").

Imports only ``os``, ``sys`` and ``warnings``, so it can run before NumPy and TensorFlow load
(``environment.py`` calls ``apply()`` before importing Keras; ``tests/nbval_reference.py``
loads this file by path before any other plugin imports NumPy).  The libraries read these
variables once, when they load or first compute; a value set later has no effect.

Why each setting (measured on an Intel Xeon with AVX-512/AMX, 2 cores, and with that CPU
presenting itself as an AVX2-only AMD EPYC with other cache sizes, see README):

- ``ONEDNN_MAX_CPU_ISA=AVX2``: oneDNN (TensorFlow's convolutions, matrix products and the
  sgemm inside its Eigen contractions) otherwise picks AVX-512/AMX kernels where it can,
  which add in another order.
- ``TF_ENABLE_ONEDNN_OPTS=1``: TensorFlow turns its oneDNN operations on by default only on
  CPUs with AVX512_VNNI/BF16/AMX; elsewhere (an AVX2 AMD EPYC) it uses Eigen's
  convolutions, whose block sizes follow the CPU's cache sizes (read by CPUID), so their
  results change with the cache, not only with the instruction set.  oneDNN's AVX2 kernels
  gave the same bits for every cache size tried.
- ``OPENBLAS_CORETYPE=Haswell``: OpenBLAS (NumPy, SciPy, scikit-learn) picks its kernels by
  CPU at load time; Haswell is what it picks on AVX2 CPUs, Intel and AMD (Zen) alike.
- ``TF_NUM_INTRAOP_THREADS=2``, ``TF_NUM_INTEROP_THREADS=2``: oneDNN splits work (and some
  sums) by thread count, which TensorFlow otherwise sets to the number of CPUs.  Two threads
  give the same bits on one CPU as on many.
- ``OPENBLAS_NUM_THREADS=1``: OpenBLAS caps its threads at the CPUs it may use, so on one CPU
  it would run otherwise than on two; one thread everywhere.
- ``OMP_NUM_THREADS=2``: OpenMP loops (scikit-learn) reduce in an order set by the thread
  count.
"""
from __future__ import annotations

import os
import sys
import warnings

__all__ = ["ENV", "MODES", "PORTABLE", "VERSION", "NumericsWarning", "apply", "exports", "label",
           "requested_mode", "state"]

ENV = "TRANSFERKIT_NUMERICS"
MODES = ("portable", "native")
VERSION = 2  # change when a setting changes: it is part of the source models' cache key

# variable -> (value, the module whose import reads it: set after that, it comes too late)
PORTABLE = {
    "ONEDNN_MAX_CPU_ISA": ("AVX2", "tensorflow"),
    "TF_ENABLE_ONEDNN_OPTS": ("1", "tensorflow"),
    "TF_NUM_INTRAOP_THREADS": ("2", "tensorflow"),
    "TF_NUM_INTEROP_THREADS": ("2", "tensorflow"),
    "OPENBLAS_CORETYPE": ("Haswell", "numpy"),
    "OPENBLAS_NUM_THREADS": ("1", "numpy"),
    "OMP_NUM_THREADS": ("2", "sklearn"),
}


class NumericsWarning(UserWarning):
    """Portable numerics could not be fully applied (a library had loaded already)."""


_state = {}


def _has_gpu():
    """An NVIDIA GPU the process may use, seen without importing any framework."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    return os.path.exists("/dev/nvidiactl") or os.path.exists("/dev/nvidia0")


def requested_mode():
    """$TRANSFERKIT_NUMERICS, else "portable" on a CPU and "native" where a GPU trains."""
    mode = os.environ.get(ENV) or ("native" if _has_gpu() else "portable")
    if mode not in MODES:
        raise ValueError(f"{ENV}={mode!r} is unknown; use one of {', '.join(MODES)}")
    return mode


def apply():
    """Set the portable variables (once per process); warn plainly about those set too late."""
    if _state:
        return dict(_state)
    mode = requested_mode()
    late, overridden = [], {}
    if mode == "portable":
        for name, (value, reader) in PORTABLE.items():
            before = os.environ.get(name)
            if before == value:
                continue  # set in the environment already: whoever loaded first read it
            if before is not None:
                overridden[name] = before
            os.environ[name] = value
            if reader in sys.modules:
                late.append(f"{name} ({reader} was imported first)")
    _state.update(mode=mode, late=late, overridden=overridden)
    if late:
        warnings.warn(
            f"portable numerics incomplete: {', '.join(late)}; results may differ from other "
            "machines. Import transferkit before numpy/tensorflow (first cell, first import), "
            f"or set these variables before Python starts: {exports()}", NumericsWarning,
            stacklevel=2)
    return dict(_state)


def exports():
    """The portable settings as a shell line."""
    return "export " + " ".join(f"{k}={v}" for k, (v, _) in PORTABLE.items())


def state():
    """{"mode", "late", "overridden"}: what ``apply`` did in this process."""
    return dict(_state) if _state else apply()


def label():
    """"portable" (all set in time), "portable, incomplete: ..." or "native"."""
    s = state()
    if s["mode"] == "native":
        return "native"
    if s["late"]:
        return "portable, incomplete (set too late: " + ", ".join(
            item.split(" ")[0] for item in s["late"]) + ")"
    return "portable"
