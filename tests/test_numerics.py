"""Portable numerics (transferkit/_numerics.py): set before the libraries load, said when late."""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import transferkit as tk
from transferkit import environment

NUMERICS = Path(tk.__file__).resolve().with_name("_numerics.py")
PORTABLE = environment._numerics.PORTABLE
SCRIPT = ("import json, transferkit as tk; "
          "print('@@' + json.dumps([tk.numerics_fingerprint().digest, tk.device_report()['numerics']]))")


def fresh(monkeypatch, env=None, loaded=()):
    """A new copy of _numerics applied to a clean environment (os.environ restored after)."""
    for name in [*PORTABLE, "TRANSFERKIT_NUMERICS"]:
        monkeypatch.delenv(name, raising=False)
    for name, value in (env or {}).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(sys, "modules", {k: v for k, v in sys.modules.items()
                                         if k.split(".")[0] not in ("numpy", "tensorflow", "sklearn")})
    for name in loaded:
        sys.modules[name] = object()
    spec = importlib.util.spec_from_file_location("numerics_copy", NUMERICS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in PORTABLE and k != "TRANSFERKIT_NUMERICS"}
    return {**env, **extra}


def run(cmd, **env):
    out = subprocess.run(cmd, env=clean_env(**env), capture_output=True, text=True, timeout=300,
                         cwd=NUMERICS.parent.parent)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(next(l[2:] for l in out.stdout.splitlines() if l.startswith("@@"))), out.stderr


def test_portable_is_the_default_and_sets_every_variable(monkeypatch):
    if os.path.exists("/dev/nvidiactl"):
        pytest.skip("a GPU machine defaults to native")
    m = fresh(monkeypatch)
    state = m.apply()
    assert state["mode"] == "portable" and not state["late"] and m.label() == "portable"
    assert {k: os.environ[k] for k in PORTABLE} == {k: v for k, (v, _) in PORTABLE.items()}


def test_opt_out_leaves_the_environment_alone(monkeypatch):
    m = fresh(monkeypatch, {"TRANSFERKIT_NUMERICS": "native", "OMP_NUM_THREADS": "7"})
    assert m.apply()["mode"] == "native" and m.label() == "native"
    assert os.environ["OMP_NUM_THREADS"] == "7" and "ONEDNN_MAX_CPU_ISA" not in os.environ


def test_unknown_mode_names_the_choices(monkeypatch):
    m = fresh(monkeypatch, {"TRANSFERKIT_NUMERICS": "fast"})
    with pytest.raises(ValueError, match="TRANSFERKIT_NUMERICS='fast'.*portable, native"):
        m.apply()


def test_too_late_is_said_plainly_naming_what_to_do(monkeypatch):
    m = fresh(monkeypatch, loaded=["numpy"])
    with pytest.warns(m.NumericsWarning, match=r"OPENBLAS_CORETYPE \(numpy was imported first\)"
                      r".*Import transferkit before numpy.*export .*OPENBLAS_CORETYPE=Haswell"):
        state = m.apply()
    assert [s.split()[0] for s in state["late"]] == ["OPENBLAS_CORETYPE", "OPENBLAS_NUM_THREADS"]
    assert m.label() == "portable, incomplete (set too late: OPENBLAS_CORETYPE, OPENBLAS_NUM_THREADS)"


def test_set_beforehand_in_the_environment_is_not_late(monkeypatch):
    m = fresh(monkeypatch, {k: v for k, (v, _) in PORTABLE.items()},
              loaded=["numpy", "tensorflow", "sklearn"])
    assert m.apply()["late"] == [] and m.label() == "portable"


def test_reported_and_part_of_the_cache_key(monkeypatch):
    assert tk.device_report()["numerics"] == environment._numerics.label()
    assert f"numerics {environment._numerics.label()}" in tk.describe_device()
    portable = tk.source.preset_recipe("cpu")
    monkeypatch.setitem(environment._numerics._state, "mode", "native")
    native = tk.source.preset_recipe("cpu")
    assert native["numerics"].startswith("native ") and "threads" in native["numerics"]
    assert tk.source.recipe_key(native) != tk.source.recipe_key(portable)


@pytest.mark.skipif(tk.device_report()["backend"] != "tensorflow", reason="TensorFlow's settings")
def test_one_cpu_computes_what_two_do_and_importing_numpy_first_is_reported():
    """The portable fingerprint under taskset -c 0 (one CPU) equals the one on all CPUs; a
    process that imported NumPy before the kit says so and reports itself incomplete."""
    if shutil.which("taskset") is None or (os.cpu_count() or 1) < 2:
        pytest.skip("needs taskset and at least 2 CPUs")
    (two, label), _ = run([sys.executable, "-c", SCRIPT])
    (one, label1), _ = run(["taskset", "-c", "0", sys.executable, "-c", SCRIPT])
    assert label == label1 == "portable" and one == two
    (late, label2), err = run([sys.executable, "-c", "import numpy; " + SCRIPT])
    assert "portable numerics incomplete: OPENBLAS_CORETYPE (numpy was imported first)" in err
    assert label2.startswith("portable, incomplete")
