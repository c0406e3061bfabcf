"""The online extras' files read from the cache, and checked: NumPy and the standard library
only (``online`` downloads them; ``source.cache_report`` says what is cached and whole).

Each reader takes the cached paths of one dataset (``online.ONLINE_DATASETS``) and returns
``(x_train, y_train), (x_test, y_test)`` as the files hold them (uint8 images).
"""
from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import tarfile
import zipfile
from pathlib import Path

import numpy as np

__all__ = ["READERS", "READ_ERRORS", "checksum_problem", "read_cifar", "read_fashion", "read_idx",
           "read_mnist"]

# what a damaged or foreign cached file raises when it is read
READ_ERRORS = (OSError, ValueError, KeyError, EOFError, tarfile.TarError, zipfile.BadZipFile,
               pickle.UnpicklingError)


def read_mnist(paths):
    with np.load(paths[0], allow_pickle=False) as f:
        return (f["x_train"], f["y_train"]), (f["x_test"], f["y_test"])


def read_idx(path, offset):
    with gzip.open(path, "rb") as f:
        return np.frombuffer(f.read(), np.uint8, offset=offset)


def read_fashion(paths):
    y_train, y_test = read_idx(paths[0], 8), read_idx(paths[2], 8)
    x_train = read_idx(paths[1], 16).reshape(len(y_train), 28, 28)
    x_test = read_idx(paths[3], 16).reshape(len(y_test), 28, 28)
    return (x_train, y_train), (x_test, y_test)


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """CIFAR's batches are pickles: allow numpy arrays, refuse anything that could run code."""

    ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"),
               ("numpy.core.multiarray", "_reconstruct"),
               ("numpy._core.multiarray", "_reconstruct")}

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing {module}.{name} in a CIFAR batch file, which "
                                     "should hold numpy arrays only")


def read_cifar(paths):
    def batch(archive, name):
        raw = archive.extractfile(f"cifar-10-batches-py/{name}").read()
        d = _NumpyOnlyUnpickler(io.BytesIO(raw), encoding="bytes").load()
        x = np.asarray(d[b"data"], np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        return x, np.asarray(d[b"labels"], np.int64)

    with tarfile.open(paths[0], "r:gz") as archive:
        train = [batch(archive, f"data_batch_{i}") for i in range(1, 6)]
        test = batch(archive, "test_batch")
    return (np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train])), test


READERS = {"mnist": read_mnist, "fashion_mnist": read_fashion, "cifar10": read_cifar}


def checksum_problem(path, file_hash):
    """None when ``path``'s SHA-256 (64 hex digits) or MD5 (32) equals ``file_hash``, or when no
    hash is known; else one line: what was found instead."""
    if not file_hash:
        return None
    digest = hashlib.sha256() if len(file_hash) == 64 else hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != file_hash:
        return (f"{Path(path).name}: checksum {digest.hexdigest()[:12]}..., expected "
                f"{file_hash[:12]}...")
    return None
