"""Which operations give CPU-dependent bits: each op's output hashed, as Keras trains (a graph).

Run it on two machines (or on this one and under an emulator presenting another CPU) and
compare the tables: an op whose hash differs computes differently there.  Under QEMU's user
mode (Debian's ``qemu-user``) the emulated CPU computes the approximate instructions RCPPS
and RSQRTPS exactly instead of from Intel's tables, so every op built on them shows up::

    python -m benchmarks.numerics_ops --label native
    qemu-x86_64 -cpu EPYC-Rome-v2 .venv/bin/python -m benchmarks.numerics_ops --label qemu-epyc-rome
    python -m benchmarks.numerics_ops --compare native qemu-epyc-rome

Writes benchmarks/results/numerics_ops-<label>.json (the hashes, the CPU, the numerics mode,
the commit).  Under QEMU it takes about 10 minutes (the imports dominate).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import transferkit as tk  # first: portable numerics before NumPy and TensorFlow load

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import ops  # noqa: E402

from transferkit.files import json_safe, write_text  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def _inputs():
    rng = np.random.default_rng(0)
    return dict(
        x=rng.normal(size=(64, 28, 28, 8)).astype(np.float32),
        v=rng.uniform(1e-3, 4, size=(8,)).astype(np.float32),
        m=rng.normal(size=(8,)).astype(np.float32),
        g=rng.normal(size=(8,)).astype(np.float32),
        z=rng.normal(size=(256, 26)).astype(np.float32),
        k=rng.normal(size=(3, 3, 8, 16)).astype(np.float32) * 0.1,
        w=rng.normal(size=(8 * 28 * 28, 26)).astype(np.float32) * 0.01,
        y=rng.integers(0, 26, size=(256,)))


def cases(d):
    """name -> a function of no arguments returning a tensor (run as a compiled graph)."""
    x, v, m, g, z, k, w, y = (d[n] for n in "xvmgzkwy")
    return {
        "rsqrt": lambda: ops.rsqrt(v),
        "sqrt": lambda: ops.sqrt(v),
        "divide": lambda: ops.divide(m, ops.convert_to_tensor(v)),
        "batch normalization": lambda: ops.batch_normalization(x, m, v, axis=-1, offset=m, scale=g),
        "moments": lambda: ops.moments(x, axes=[0, 1, 2])[1],
        "softmax": lambda: ops.softmax(z),
        "softmax activation": lambda: keras.activations.softmax(ops.convert_to_tensor(z)),
        "log softmax": lambda: ops.log_softmax(z),
        "exp": lambda: ops.exp(z),
        "log": lambda: ops.log(ops.abs(z) + 1e-3),
        "tanh": lambda: ops.tanh(z),
        "sigmoid": lambda: ops.sigmoid(z),
        "cross-entropy (logits)": lambda: keras.losses.sparse_categorical_crossentropy(
            y, z, from_logits=True),
        "convolution": lambda: ops.conv(x, k, padding="same"),
        "max pooling": lambda: ops.max_pool(x, 2),
        "average pooling": lambda: ops.average_pool(x, 2),
        "global average": lambda: ops.mean(x, axis=[1, 2]),
        "matrix product": lambda: ops.matmul(ops.reshape(x, (64, -1)), w),
        "relu": lambda: ops.relu(z),
    }


def _graph(fn):
    """``fn`` compiled as Keras compiles a train step on this backend (TensorFlow: a graph,
    which the graph optimiser rewrites; elsewhere: as called)."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf  # the TensorFlow backend only, as Keras itself does there

        return tf.function(fn)
    return fn


def hashes():
    d = _inputs()
    out = {}
    for name, fn in cases(d).items():
        value = keras.ops.convert_to_numpy(_graph(fn)())
        out[name] = hashlib.sha256(np.ascontiguousarray(value).tobytes()).hexdigest()[:12]
    return out


def _commit():
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, cwd=RESULTS.parent).stdout.strip() or "?"
    except OSError:
        return "?"


def compare(labels):
    tables = [json.loads((RESULTS / f"numerics_ops-{label}.json").read_text()) for label in labels]
    print(f"{'op':<24}" + "".join(f"{label:>16}" for label in labels) + "  same")
    for name in tables[0]["hashes"]:
        values = [t["hashes"].get(name, "-") for t in tables]
        print(f"{name:<24}" + "".join(f"{v:>16}" for v in values)
              + ("  yes" if len(set(values)) == 1 else "  NO"))
    for label, t in zip(labels, tables):
        print(f"{label}: {t['cpu']}; numerics {t['numerics']}; commit {t['commit']}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--label", default="native", help="names the results file")
    p.add_argument("--compare", nargs="+", metavar="LABEL", help="compare saved results")
    args = p.parse_args(argv)
    if args.compare:
        return compare(args.compare)
    result = {"hashes": hashes(), "cpu": tk.environment.cpu_description(),
              "numerics": tk.environment._numerics.label(), "backend": keras.backend.backend(),
              "commit": _commit()}
    for name, h in result["hashes"].items():
        print(f"{name:<24}{h}")
    path = RESULTS / f"numerics_ops-{args.label}.json"
    write_text(path, json.dumps(json_safe(result), indent=1) + "\n")
    print(f"wrote {path.relative_to(RESULTS.parent.parent)}")


if __name__ == "__main__":
    sys.exit(main())
