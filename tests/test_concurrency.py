"""Two kernels preparing the same cached source model at once end with one correct cache.

Two fresh Python processes (two notebooks opened together) call ``tk.source_model`` on
the same empty cache.  Each first imports the kit, says READY and waits; the test then
releases both at the same moment, so they race for the cache.  No sleeps, no timing:
whichever order the operating system picks, the lock and the atomic publish must give
exactly one training run, one published pair of files and identical weights in both.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap

import numpy as np

import transferkit as tk
from helpers import TINY_WIDTHS
from transferkit.source import recipe_key

TINY_RECIPE = dict(tk.SOURCE_RECIPE, train_per_class=5, epochs=1, widths=list(TINY_WIDTHS))

KERNEL_SCRIPT = textwrap.dedent("""
    import hashlib, json, sys
    import numpy as np
    import transferkit as tk

    recipe = json.loads(sys.argv[1])
    print("READY", flush=True)
    sys.stdin.readline()  # the go signal: both processes start source_model together
    source = tk.source_model(recipe)
    arrays = [np.asarray(w) for w in source.model.get_weights()]
    print("WEIGHTS", hashlib.sha256(b"".join(a.tobytes() for a in arrays)).hexdigest())
""")


def weights_digest(model):
    arrays = [np.asarray(w) for w in model.get_weights()]
    return hashlib.sha256(b"".join(a.tobytes() for a in arrays)).hexdigest()


def test_two_processes_building_the_same_source_model_share_one_correct_cache(tmp_path,
                                                                             monkeypatch):
    cache = tmp_path / "cache"
    env = dict(os.environ, TRANSFERKIT_CACHE=str(cache))
    kernels = [subprocess.Popen([sys.executable, "-c", KERNEL_SCRIPT, json.dumps(TINY_RECIPE)],
                                cwd=tmp_path, env=env, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for _ in range(2)]
    try:
        for kernel in kernels:  # both imported, neither has looked at the cache yet
            assert kernel.stdout.readline().strip() == "READY", kernel.stderr.read()[-3000:]
        assert not cache.exists() or list(cache.iterdir()) == []
        for kernel in kernels:
            kernel.stdin.write("go\n")
            kernel.stdin.flush()
        results = [kernel.communicate(timeout=300) for kernel in kernels]
    finally:
        for kernel in kernels:
            if kernel.poll() is None:
                kernel.kill()
                kernel.communicate()
    for kernel, (out, err) in zip(kernels, results):
        assert kernel.returncode == 0, err[-3000:]
    outs = [out for out, _ in results]

    trained = [out for out in outs if "training it now" in out]
    loaded = [out for out in outs if "Loaded the source model" in out]
    assert len(trained) == 1 and len(loaded) == 1, outs

    # one published pair (and the lock file), no temporary files
    key = recipe_key(TINY_RECIPE)
    names = sorted(p.name for p in cache.iterdir())
    assert names == sorted([f"source-{key}.weights.h5", f"source-{key}.json",
                            f"source-{key}.json.lock"]), names

    digests = {line.split()[1] for out in outs for line in out.splitlines()
               if line.startswith("WEIGHTS")}
    assert len(digests) == 1, outs  # both kernels hold bit-identical weights

    # and the cache itself is whole: it loads here, verified, to the same weights
    monkeypatch.setenv("TRANSFERKIT_CACHE", str(cache))
    info = json.loads((cache / f"source-{key}.json").read_text())
    assert info["key"] == key and info["recipe"] == TINY_RECIPE
    again = tk.source_model(TINY_RECIPE, verbose=False)
    assert weights_digest(again.model) in digests
