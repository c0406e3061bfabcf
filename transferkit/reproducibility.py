"""Same seed, same numbers -- on the same kind of machine.

Seeds and deterministic kernels make a run repeatable on one machine.  Another CPU can
still compute other floating-point numbers: oneDNN (TensorFlow's CPU kernels) and
OpenBLAS (NumPy, scikit-learn) pick their code by instruction set and cache sizes, so the
order of additions differs, and training, being chaotic, turns last-bit differences into
accuracies a few points apart.  Measured here: the letters source model reaches 79.3 %
to 81.2 % test accuracy depending only on the instruction set oneDNN is allowed to use.

``numerics_fingerprint()`` runs a small fixed job through the same kernels the notebooks
use (glyph rendering, convolution forward and backward, Adam, frozen-backbone training,
a scikit-learn probe, an SVD) and hashes the results: two machines with the same
fingerprint compute the notebooks' numbers bit for bit alike.  The notebook tests use it
to decide whether the committed outputs can be compared exactly on this machine.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
from sklearn.linear_model import LogisticRegression

from .data import glyph_dataset
from .environment import set_seed
from .models import build_model, forward
from .training import compile_model, fit
from .transfer import freeze

__all__ = ["Fingerprint", "numerics_fingerprint"]


@dataclass(frozen=True)
class Fingerprint:
    digest: str   # all parts together
    parts: dict   # {"data": ..., "training": ..., "linear algebra": ...}

    def differs_in(self, other):
        """Names of the parts whose hashes differ from ``other`` (a Fingerprint or dict)."""
        theirs = other.parts if isinstance(other, Fingerprint) else dict(other)
        return [k for k in self.parts if theirs.get(k) != self.parts[k]]

    def __str__(self):
        return f"{self.digest} ({', '.join(f'{k} {v}' for k, v in self.parts.items())})"


def _hash(*arrays):
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str((a.dtype.str, a.shape)).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:12]


def numerics_fingerprint():
    """A ``Fingerprint`` of this machine's floating-point results (about 4 s on a 2-core CPU)."""
    data = glyph_dataset("ABCDEFGHIJ", 20, seed=0, name="fingerprint")  # 200 images
    set_seed(0)
    model = build_model(10, name="fingerprint")
    compile_model(model, 3e-3)
    fit(model, data, data, epochs=1, batch_size=64)  # 3 full batches and a partial one
    freeze(model, ["block1"])
    compile_model(model, 1e-2)
    fit(model, data, epochs=1, batch_size=32)
    logits = forward(model, data.x)
    weights = [np.asarray(w.numpy()) for w in model.weights]
    pixels = data.x.reshape(len(data.x), -1)[:, ::4].astype(np.float64)  # no Keras involved
    probe = LogisticRegression(max_iter=200).fit(pixels, data.y)
    singular = np.linalg.svd(pixels, compute_uv=False)
    parts = {"data": _hash(data.x, data.y), "training": _hash(logits, *weights),
             "linear algebra": _hash(probe.coef_, singular)}
    return Fingerprint(_hash(*[np.frombuffer(v.encode(), np.uint8) for v in parts.values()]),
                       parts)
