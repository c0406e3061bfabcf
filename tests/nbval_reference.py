"""pytest plugin: compare the notebooks' outputs exactly where this machine computes them alike.

The committed outputs are deterministic on one kind of machine, not on every CPU: oneDNN
and OpenBLAS choose kernels by instruction set, training turns last-bit differences into
other accuracies (see ``transferkit/reproducibility.py``).  Before the first notebook is
collected (at configure time, and only when a notebook is among the paths to collect)
this plugin computes ``tk.numerics_fingerprint()`` and compares it with the one
recorded when the notebooks were last executed (``tests/reference_numerics.json``, written
by ``python tools/reexecute_notebooks.py``):

- same fingerprint: outputs are compared strictly (``--nbval``), as committed;
- another fingerprint: every cell still runs and must not fail, but outputs are not
  compared (``--nbval-lax``), and the summary says so and why.

``TRANSFERKIT_NBVAL=strict`` always compares, ``=lax`` never does, ``=auto`` is the default.
Loaded by ``-p nbval_reference`` in pyproject's addopts -- before the other plugins, so it
also applies the kit's portable numerics (``transferkit/_numerics.py``) before anything
imports NumPy or TensorFlow; the notebook kernels inherit them.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

REFERENCE = Path(__file__).resolve().with_name("reference_numerics.json")
NUMERICS = Path(__file__).resolve().parent.parent / "transferkit" / "_numerics.py"


def _apply_portable_numerics():
    """Run transferkit/_numerics.py (os and sys only) now, without importing the package
    (which loads Keras); ``import transferkit`` later finds it in sys.modules."""
    import importlib.util
    import sys

    name = "transferkit._numerics"
    if name not in sys.modules and NUMERICS.is_file():
        spec = importlib.util.spec_from_file_location(name, NUMERICS)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    if name in sys.modules:
        sys.modules[name].apply()


_apply_portable_numerics()
ENV = "TRANSFERKIT_NBVAL"
MODES = ("auto", "strict", "lax")
_decision = {}


def read_reference(path=REFERENCE):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def _numerics_label():
    import sys

    module = sys.modules.get("transferkit._numerics")
    return module.label() if module else "?"


def decide(mode, reference, fingerprint):
    """(compare strictly?, why) for a mode, the recorded reference and a fingerprint thunk."""
    if mode not in MODES:
        raise pytest.UsageError(f"{ENV}={mode!r} is unknown; use one of {', '.join(MODES)} "
                                "(or unset it: auto)")
    if mode == "strict":
        return True, f"compared strictly ({ENV}=strict)"
    if mode == "lax":
        return False, f"not compared ({ENV}=lax); every cell must still run"
    if not reference or "digest" not in reference:
        return False, (f"not compared: no reference fingerprint in {REFERENCE.name}; run "
                       "python tools/reexecute_notebooks.py to execute the notebooks here "
                       "and record one")
    mine = fingerprint()
    if mine.digest == reference["digest"]:
        return True, (f"compared strictly: this machine's numerics fingerprint {mine.digest} "
                      "is the one the committed outputs were executed with")
    differs = ", ".join(mine.differs_in(reference.get("parts", {}))) or "all"
    here = _numerics_label()
    return False, (f"NOT compared: this machine's numerics fingerprint {mine.digest} "
                   f"(numerics {here}) differs from the reference {reference['digest']} (in: "
                   f"{differs}; reference CPU: {reference.get('cpu', '?')}, numerics "
                   f"{reference.get('numerics', 'native')}), so seeded training gives "
                   "other numbers here; every cell still ran and must not fail. "
                   f"{ENV}=strict compares anyway; python tools/reexecute_notebooks.py "
                   "re-executes the notebooks on this machine")


def _notebooks_among(args):
    """Whether any of pytest's arguments (or its testpaths) is or holds a notebook."""
    for arg in args:
        path = Path(str(arg).split("::")[0])
        if path.suffix == ".ipynb" or (path.is_dir() and next(path.rglob("*.ipynb"), None)):
            return True
    return False


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    """Decide once, at configure time, before anything is collected: nbval reads
    ``option.nbval_lax`` when it builds each notebook's collector, so switching
    ``--nbval`` to ``--nbval-lax`` here holds for every notebook of the run
    (tests/test_reproducibility.py, test_the_switch_really_changes_what_nbval_checks, pins
    it).  Nothing is decided, and no fingerprint computed (it imports the kit), unless a
    notebook is among the paths pytest will collect."""
    option = config.option
    if not getattr(option, "nbval", False) or not _notebooks_among(config.args):
        _decision["why"] = None  # already lax, nbval not in use, or no notebook to collect
        return

    def fingerprint():
        import transferkit as tk  # here: it loads Keras, needed only for the fingerprint

        try:
            return tk.numerics_fingerprint()
        finally:
            tk.set_seed(0)  # leave the process seeded as importing the kit left it

    strict, why = decide(os.environ.get(ENV, "auto"), read_reference(), fingerprint)
    if not strict:
        option.nbval, option.nbval_lax = False, True
    _decision["why"] = why


def pytest_terminal_summary(terminalreporter):
    why = _decision.get("why")
    if why:
        terminalreporter.write_sep("-", "notebook outputs")
        terminalreporter.write_line(why)
