"""Portable numerics (transferkit/_numerics.py): set before the libraries load, said when late."""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
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


def _float32_batch_norm(x, mean, variance, offset, scale, epsilon):
    """The reference: every step an IEEE float32 operation (NumPy rounds each one exactly)."""
    inv = scale / np.sqrt(variance + np.float32(epsilon))
    return x * inv + (offset - mean * inv)


@pytest.mark.skipif(tk.environment.keras.backend.backend() != "tensorflow",
                    reason="the approximate rsqrt is TensorFlow's")
def test_batch_normalization_uses_no_approximate_instruction():
    """TensorFlow's rsqrt is RSQRTPS plus a Newton step (not correctly rounded: the bits differ
    between Intel and AMD).  Under portable numerics a BatchNormalization layer, as Keras
    trains it (a compiled graph), gives the float32 result of sqrt and division instead."""
    import keras

    assert environment.EXACT_BATCH_NORMALIZATION
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 6, 6, 64)).astype(np.float32)
    layer = keras.layers.BatchNormalization(epsilon=1e-3)
    layer.build(x.shape)
    layer.moving_mean.assign(rng.normal(size=64).astype(np.float32))
    layer.moving_variance.assign(rng.uniform(1e-3, 5, size=64).astype(np.float32))
    layer.gamma.assign(rng.normal(size=64).astype(np.float32))
    layer.beta.assign(rng.normal(size=64).astype(np.float32))
    model = keras.Sequential([keras.Input(x.shape[1:]), layer])
    got = model.predict(x, verbose=0, batch_size=32)
    want = _float32_batch_norm(x, *(np.asarray(v) for v in (layer.moving_mean, layer.moving_variance,
                                                           layer.beta, layer.gamma)), 1e-3)
    assert np.array_equal(got, want), f"{np.mean(got != want):.1%} of outputs differ"
    # and the gradient path trains: one step changes gamma
    model.compile(optimizer="sgd", loss="mse")
    layer.trainable = True
    before = np.asarray(layer.gamma).copy()
    model.fit(x, np.zeros_like(x), epochs=1, batch_size=32, verbose=0)
    assert not np.array_equal(before, np.asarray(layer.gamma))


def test_every_benchmark_imports_the_kit_before_numpy_and_keras():
    """A benchmark that loads Keras or NumPy first measures native numerics and says
    "portable, incomplete" in its JSON: its numbers would not repeat on another CPU."""
    import re
    from pathlib import Path

    first = re.compile(r"^\s*(import|from) (keras|numpy|tensorflow|torch|jax)\b")
    for path in sorted((Path(__file__).resolve().parents[1] / "benchmarks").glob("*.py")):
        lines = path.read_text().splitlines()
        kit = next((i for i, line in enumerate(lines)
                    if re.match(r"^\s*import transferkit\b", line)), None)
        early = next((i for i, line in enumerate(lines) if first.match(line)), None)
        if early is not None:
            assert kit is not None and kit < early, \
                f"{path.name}:{early + 1} imports {lines[early].strip()!r} before transferkit"
