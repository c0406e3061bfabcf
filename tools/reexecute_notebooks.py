#!/usr/bin/env python
"""Re-execute the notebooks in place, as CI runs them, and record this machine's fingerprint.

    python tools/reexecute_notebooks.py                 # every notebooks/*.ipynb, in order
    python tools/reexecute_notebooks.py notebooks/05_strategy_lab.ipynb

Run it after changing a notebook or the kit, then commit the notebooks together with
``tests/reference_numerics.json``.  Each notebook runs top to bottom in a fresh kernel
(cwd = notebooks/, the shared cache data/cache), in file-name order, and is written back
atomically only if every cell succeeded.  The cache must start empty (``mv data/cache
data/cache.old`` first), as on a clean checkout: cells that train or load the source model
print different things otherwise.  First ``tk.numerics_fingerprint()`` is computed in a
fresh process and written to ``tests/reference_numerics.json`` (00_index prints whether the
machine it runs on matches it): the notebook tests compare
outputs strictly only on machines with that fingerprint (``tests/nbval_reference.py``).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO / "notebooks"
CACHE = REPO / "data" / "cache"
REFERENCE = REPO / "tests" / "reference_numerics.json"  # read by notebook 00 and the tests

FINGERPRINT_SCRIPT = """
import json, transferkit as tk
f = tk.numerics_fingerprint()
r = tk.device_report()
print("@@" + json.dumps({"digest": f.digest, "parts": f.parts, "cpu": r["cpu"],
                         "cpu_cores": r["cpu_cores"], "backend": r["backend"],
                         "backend_version": r["backend_version"], "keras": r["keras"],
                         "numerics": r["numerics"]}))
"""


def write_atomic(path, text):
    """The kit's one atomic writer (write-then-rename, the usual file mode)."""
    from transferkit.files import write_text

    write_text(path, text)


def execute(path, timeout):
    import nbclient
    import nbformat

    nb = nbformat.read(path, as_version=4)
    kernel = nb.metadata.get("kernelspec", {}).get("name", "python3")
    client = nbclient.NotebookClient(nb, timeout=timeout, kernel_name=kernel,
                                     resources={"metadata": {"path": str(path.parent)}},
                                     record_timing=False)
    client.execute()
    for cell in nb.cells:  # timestamps of an earlier run: noise in every diff
        cell.metadata.pop("execution", None)
    write_atomic(path, nbformat.writes(nb) + "\n")


def fingerprint():
    out = subprocess.run([sys.executable, "-c", FINGERPRINT_SCRIPT], capture_output=True,
                         text=True, cwd=REPO, check=True).stdout
    return json.loads(next(line[2:] for line in out.splitlines() if line.startswith("@@")))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("notebooks", nargs="*", type=Path,
                   help="notebooks to execute (default: notebooks/*.ipynb, sorted)")
    p.add_argument("--timeout", type=int, default=600, help="seconds per cell (default: 600)")
    p.add_argument("--keep-cache", action="store_true",
                   help="run even though data/cache is not empty (outputs may then differ "
                        "from a clean checkout's)")
    args = p.parse_args(argv)
    if os.environ.pop("TRANSFERKIT_CACHE", None):
        print("ignoring TRANSFERKIT_CACHE: the notebooks run against data/cache, as in CI")
    if not args.keep_cache and CACHE.is_dir() and any(CACHE.iterdir()):
        print(f"{CACHE} is not empty: move it aside first (mv data/cache data/cache.old), so "
              "the notebooks run as on a clean checkout; or pass --keep-cache", file=sys.stderr)
        return 2
    paths = [p.resolve() for p in args.notebooks] or sorted(NOTEBOOKS.glob("*.ipynb"))
    here = fingerprint()
    if here.get("numerics") != "portable":  # the kernels inherit this process's environment
        print(f"numerics {here.get('numerics')!r}, not 'portable': the outputs will compare "
              "strictly only on machines of this kind (unset TRANSFERKIT_NUMERICS to record "
              "portable ones)", file=sys.stderr)
    recorded = (json.loads(REFERENCE.read_text()) if REFERENCE.is_file() else {}).get("digest")
    if set(paths) != set(NOTEBOOKS.glob("*.ipynb")) and recorded not in (None, here["digest"]):
        print(f"the other notebooks were executed on a machine with fingerprint {recorded}, "
              f"this one has {here['digest']}: re-execute all of them (no arguments)",
              file=sys.stderr)
        return 2
    reference = here  # recorded first: 00_index prints whether this machine matches it
    reference["recorded"] = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
    write_atomic(REFERENCE, json.dumps(reference, indent=1) + "\n")
    for path in paths:
        start = time.perf_counter()
        print(f"{path.name} ...", end=" ", flush=True)
        try:
            execute(path, args.timeout)
        except Exception as exc:  # the notebook file is left as it was
            print(f"FAILED, not written: {type(exc).__name__}: {str(exc)[-2000:]}")
            return 1
        print(f"{time.perf_counter() - start:.1f} s")
    print(f"numerics fingerprint {reference['digest']} ({reference['cpu']}) -> "
          f"{REFERENCE.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
