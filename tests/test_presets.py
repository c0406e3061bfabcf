"""Presets: the size of the kit's default jobs per machine (environment.preset)."""
from __future__ import annotations

import keras
import numpy as np
import pytest

import transferkit as tk
from transferkit import environment
from transferkit.environment import ENV_PRESET
from transferkit.source import preset_recipe, recipe_key

ORIGINAL_SOURCE_KEY = "285eab59d9"  # the cache key of the kit's recipe before presets existed
PORTABLE_SOURCE_KEY = "5c9d00136d"  # the same recipe trained with portable numerics


@pytest.fixture
def no_preset_env(monkeypatch):
    monkeypatch.delenv(ENV_PRESET, raising=False)


def test_automatic_choice_follows_the_devices_keras_sees(no_preset_env, monkeypatch):
    seen = bool(tk.device_report()["gpus"])
    assert tk.environment.preset().name == ("gpu" if seen else "cpu")
    # both branches, whatever this machine has: the kit's own device query decides
    monkeypatch.setattr(environment, "_gpus", lambda: ["gpu:0"])
    assert tk.environment.preset().name == "gpu"
    monkeypatch.setattr(environment, "_gpus", lambda: [])
    assert tk.environment.preset().name == "cpu"


def test_environment_variable_overrides_the_automatic_choice(monkeypatch):
    monkeypatch.setattr(environment, "_gpus", lambda: [])
    monkeypatch.setenv(ENV_PRESET, "gpu")
    assert tk.environment.preset() is tk.environment.PRESETS["gpu"]
    monkeypatch.setattr(environment, "_gpus", lambda: ["gpu:0"])
    monkeypatch.setenv(ENV_PRESET, "cpu")
    assert tk.environment.preset() is tk.environment.PRESETS["cpu"]


def test_argument_overrides_the_environment_variable(monkeypatch):
    monkeypatch.setenv(ENV_PRESET, "gpu")
    assert tk.environment.preset("cpu") is tk.environment.PRESETS["cpu"]


@pytest.mark.parametrize("name", ["tpu", "GPU", ""])
def test_unknown_name_is_refused_with_the_allowed_names(name):
    with pytest.raises(ValueError, match=rf"unknown preset {name!r}; choose one of \['cpu', 'gpu'\]"):
        tk.environment.preset(name)


def test_unknown_name_in_the_environment_names_the_variable(monkeypatch):
    monkeypatch.setenv(ENV_PRESET, "fast")
    with pytest.raises(ValueError, match=rf"{ENV_PRESET}='fast' is unknown; choose one of"):
        tk.environment.preset()


def test_cpu_preset_is_the_kit_as_it_was():
    cpu = tk.environment.PRESETS["cpu"]
    assert (cpu.source_train_per_class, cpu.source_epochs, cpu.batch_size, cpu.widths,
            cpu.mixed_precision) == (120, 8, 64, (16, 32, 64), False)
    assert preset_recipe(cpu) == preset_recipe("cpu")
    if keras.backend.backend() == "tensorflow":
        assert {k: v for k, v in preset_recipe("cpu").items() if k != "numerics"} == {
            "task": "letters", "train_per_class": 120, "seed": 0, "epochs": 8,
            "batch_size": 64, "learning_rate": 3e-3, "widths": [16, 32, 64], "version": 1}
        if tk.environment.numerics_tag() == "portable-1":
            assert recipe_key(preset_recipe("cpu")) == PORTABLE_SOURCE_KEY
    else:  # other numerics, other weights: a cache of their own
        assert preset_recipe("cpu")["backend"] == keras.backend.backend()
        assert recipe_key(preset_recipe("cpu")) != ORIGINAL_SOURCE_KEY


@pytest.mark.skipif(bool(tk.device_report()["gpus"]), reason="checks the defaults on a CPU-only machine")
def test_on_a_cpu_machine_the_defaults_are_the_cpu_preset():
    """Committed notebook outputs depend on this: same recipe, same widths, float32."""
    assert tk.SOURCE_RECIPE == preset_recipe("cpu")
    assert tk.models.DEFAULT_WIDTHS == (16, 32, 64)
    assert keras.config.dtype_policy().name == "float32"
    model = tk.build_model(10)
    assert [model.get_layer(f"block{i}_conv").filters for i in (1, 2, 3)] == [16, 32, 64]


def test_gpu_preset_is_bigger_and_caches_under_another_key():
    cpu, gpu = tk.environment.PRESETS["cpu"], tk.environment.PRESETS["gpu"]
    assert gpu.source_train_per_class > cpu.source_train_per_class
    assert all(g >= c for g, c in zip(gpu.widths, cpu.widths)) and gpu.mixed_precision
    assert recipe_key(preset_recipe("gpu")) != ORIGINAL_SOURCE_KEY
    assert preset_recipe("gpu")["widths"] == list(gpu.widths)


def test_describe_device_names_the_preset(no_preset_env):
    assert f"preset {tk.environment.preset().name!r}" in tk.describe_device()
    assert tk.device_report()["preset"] == tk.environment.preset().name


@pytest.mark.skipif(keras.backend.backend() == "tensorflow"
                    and tk.environment._numerics.label().startswith("portable")
                    and not tk.environment._gpus(),
                    reason="portable numerics hold oneDNN to AVX2, which has no float16 "
                           "convolution (TensorFlow: 'could not create a primitive descriptor'); "
                           "mixed precision is the gpu preset's, where numerics are native")
def test_model_trains_under_mixed_precision_with_float32_logits(letters):
    """What the gpu preset switches on (on a GPU); float16 kernels also run on CPUs, slowly."""
    before = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        tk.set_seed(0)
        model = tk.build_model(3, widths=(4, 8), name="mixed")
        assert model.get_layer("block1_conv").compute_dtype == "float16"
        assert model.outputs[0].dtype == "float32"  # the head: stable softmax and loss
        assert all(w.dtype == "float32" for w in model.weights)  # weights stay float32
        tk.compile_model(model, 1e-2)
        history = tk.fit(model, letters, epochs=2, batch_size=12)
        assert np.all(np.isfinite(history.metrics["loss"]))
        logits = model.predict(letters.x[:4], verbose=0)
        assert np.asarray(logits).dtype == np.float32
    finally:
        keras.config.set_dtype_policy(before)
