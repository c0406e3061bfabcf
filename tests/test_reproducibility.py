"""The numerics fingerprint, and the notebook-comparison switch built on it."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import nbformat
import pytest

import nbval_reference
import transferkit as tk

TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def fingerprint():
    return tk.numerics_fingerprint()


def test_fingerprint_is_repeatable_in_one_process(fingerprint):
    again = tk.numerics_fingerprint()
    assert again == fingerprint and again.differs_in(fingerprint) == []
    assert set(fingerprint.parts) == {"data", "training", "linear algebra"}
    assert len(fingerprint.digest) == 12 and fingerprint.digest in str(fingerprint)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                    reason="oneDNN's instruction-set switch is TensorFlow's")
def test_other_kernels_give_another_fingerprint_in_the_parts_they_touch(fingerprint):
    """The same job with oneDNN held to SSE4.1 and OpenBLAS to another core type: the data
    are the same, the training and linear-algebra hashes are not."""
    from threadpoolctl import threadpool_info

    arch = next((i.get("architecture") for i in threadpool_info()
                 if i.get("internal_api") == "openblas"), None)
    env = dict(os.environ, TRANSFERKIT_NUMERICS="native", ONEDNN_MAX_CPU_ISA="SSE41",
               OPENBLAS_CORETYPE="Haswell" if arch == "Sandybridge" else "Sandybridge")
    script = "import json, transferkit as tk; print('@@' + json.dumps(tk.numerics_fingerprint().parts))"
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                         text=True, timeout=300, check=True).stdout
    parts = json.loads(next(l[2:] for l in out.splitlines() if l.startswith("@@")))
    changed = fingerprint.differs_in(parts)
    assert "data" not in changed
    assert "training" in changed
    if arch is not None:  # NumPy's BLAS is OpenBLAS (pip wheels): its core type was switched
        assert "linear algebra" in changed


# --------------------------------------------------------------------------- the switch
def _never():
    raise AssertionError("the fingerprint must not be computed in a forced mode")


def test_matching_fingerprint_compares_strictly(fingerprint):
    reference = {"digest": fingerprint.digest, "parts": fingerprint.parts}
    strict, why = nbval_reference.decide("auto", reference, lambda: fingerprint)
    assert strict and fingerprint.digest in why


def test_other_fingerprint_runs_the_cells_without_comparing_and_says_why(fingerprint):
    parts = dict(fingerprint.parts, training="000000000000")
    reference = {"digest": "aaaaaaaaaaaa", "parts": parts, "cpu": "Some CPU [avx2]"}
    strict, why = nbval_reference.decide("auto", reference, lambda: fingerprint)
    assert not strict
    for needle in ("NOT compared", fingerprint.digest, "aaaaaaaaaaaa", "in: training",
                   "Some CPU [avx2]", "must not fail", "TRANSFERKIT_NBVAL=strict",
                   "tools/reexecute_notebooks.py"):
        assert needle in why, needle


def test_no_recorded_reference_names_the_script_that_records_one():
    strict, why = nbval_reference.decide("auto", None, _never)
    assert not strict and "reexecute_notebooks.py" in why


@pytest.mark.parametrize("mode, strict", [("strict", True), ("lax", False)])
def test_forced_modes_skip_the_fingerprint(mode, strict):
    assert nbval_reference.decide(mode, None, _never)[0] is strict


def test_unknown_mode_names_the_allowed_ones():
    with pytest.raises(pytest.UsageError, match=r"TRANSFERKIT_NBVAL='exact' is unknown; "
                                                 r"use one of auto, strict, lax"):
        nbval_reference.decide("exact", None, _never)


@pytest.mark.parametrize("mode, passes", [("strict", False), ("lax", True)])
def test_the_switch_really_changes_what_nbval_checks(tmp_path, mode, passes):
    """A notebook whose committed output is wrong: compared, it fails; not compared, it runs."""
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("print(1 + 1)")
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="3\n")]
    cell.execution_count = 1
    nb.cells = [cell]
    nbformat.write(nb, tmp_path / "wrong.ipynb")
    (tmp_path / "pyproject.toml").write_text(textwrap.dedent(f"""
        [tool.pytest.ini_options]
        pythonpath = ["{TESTS.as_posix()}"]
        addopts = "--nbval --nbval-current-env -p no:cacheprovider -p nbval_reference"
    """))
    env = dict(os.environ, TRANSFERKIT_NBVAL=mode)
    run = subprocess.run([sys.executable, "-m", "pytest", "wrong.ipynb"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert (run.returncode == 0) is passes, run.stdout[-2000:]
    assert "notebook outputs" in run.stdout and f"TRANSFERKIT_NBVAL={mode}" in run.stdout


def test_the_fingerprint_is_computed_only_when_notebooks_are_collected(tmp_path):
    """Configure time decides; a run of unit tests alone never pays for the fingerprint."""
    (tmp_path / "unit").mkdir()
    (tmp_path / "unit" / "test_x.py").write_text("")
    (tmp_path / "nbs" / "deep").mkdir(parents=True)
    (tmp_path / "nbs" / "deep" / "a.ipynb").write_text("{}")
    among = nbval_reference._notebooks_among
    assert not among([str(tmp_path / "unit"), str(tmp_path / "unit" / "test_x.py::test_y")])
    assert among([str(tmp_path / "unit"), str(tmp_path / "nbs")])
    assert among([str(tmp_path / "elsewhere.ipynb::Cell 0")])
