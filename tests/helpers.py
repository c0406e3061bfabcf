"""Small helpers shared by the test modules (not fixtures)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap

import numpy as np

import transferkit as tk

TINY_WIDTHS = (4, 8)


def tiny_model(num_classes=3, seed=0, name="cnn"):
    tk.set_seed(seed)
    return tk.build_model(num_classes, widths=TINY_WIDTHS, name=name)


def to_np(variable):
    """A NumPy copy of a Keras variable."""
    return np.array(variable.numpy(), copy=True)


def snapshot(model):
    """{layer name: [numpy copies of its variables]} for layers that have weights."""
    return {layer.name: [to_np(w) for w in layer.weights]
            for layer in model.layers if layer.weights}


def backbone(snap):
    return {name: arrays for name, arrays in snap.items() if name.startswith("block")}


def all_equal(a, b):
    """Bit-equal: same layer names, same shapes, dtypes and values."""
    if a.keys() != b.keys():
        return False
    return all(len(a[k]) == len(b[k]) and
               all(x.dtype == y.dtype and np.array_equal(x, y) for x, y in zip(a[k], b[k]))
               for k in a)


# ----------------------------------------------------------------- fresh-process run
FRESH_PROCESS_SCRIPT = textwrap.dedent("""
    import numpy as np
    import transferkit as tk
    model = tk.build_model(3, widths=(4, 8))
    tk.compile_model(model)
    x = np.random.default_rng(0).random((12, 28, 28, 1), dtype=np.float32)
    y = np.arange(12) % 3
    h = tk.fit(model, (x, y), epochs=1, batch_size=4)
    print("EPOCHS", h.epochs)
""")

_fresh = {}


def start_fresh_process():
    """Run FRESH_PROCESS_SCRIPT in a new interpreter, in the background, private cache."""
    folder = tempfile.mkdtemp(prefix="tk-fresh-")
    env = dict(os.environ, TRANSFERKIT_CACHE=folder)
    env.pop("TF_DETERMINISTIC_OPS", None)  # as in a fresh shell: the kit sets it itself
    _fresh["folder"] = folder
    _fresh["proc"] = subprocess.Popen([sys.executable, "-c", FRESH_PROCESS_SCRIPT], cwd=folder,
                                      env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True)


def fresh_process_result(timeout=300):
    """(returncode, stdout, stderr) of the background run (started on demand)."""
    if "proc" not in _fresh:
        start_fresh_process()
    out, err = _fresh["proc"].communicate(timeout=timeout)
    return _fresh["proc"].returncode, out, err


def stop_fresh_process():
    proc = _fresh.pop("proc", None)
    if proc is not None and proc.poll() is None:
        proc.kill()
        proc.communicate()
    folder = _fresh.pop("folder", None)
    if folder:
        shutil.rmtree(folder, ignore_errors=True)
