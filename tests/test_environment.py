"""Backend, device description, cache folder (environment.py)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

import transferkit as tk
from helpers import fresh_process_result
from transferkit.environment import ENV_CACHE


def test_cache_dir_follows_the_environment_variable(tmp_path, monkeypatch):
    folder = tmp_path / "a" / "b"
    monkeypatch.setenv(ENV_CACHE, str(folder))
    assert tk.cache_dir(create=False) == folder and not folder.exists()
    assert tk.cache_dir() == folder and folder.is_dir()


def test_cache_dir_that_cannot_be_created_says_what_to_do(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv(ENV_CACHE, str(blocker / "cache"))
    with pytest.raises(OSError) as err:
        tk.cache_dir()
    assert str(blocker / "cache") in str(err.value) and ENV_CACHE in str(err.value)


def test_device_report_and_description():
    report = tk.device_report()
    assert report["backend"] == os.environ.get("KERAS_BACKEND", "tensorflow")  # the one asked for
    assert report["device"] == "CPU" or report["device"].startswith("GPU")
    assert report["cpu_cores"] == os.cpu_count()
    assert report["cpu"] and report["cpu"] == tk.environment.cpu_description()
    if Path("/proc/cpuinfo").is_file() and " avx2 " in Path("/proc/cpuinfo").read_text():
        assert "avx2" in report["cpu"]  # the instruction sets that change the numbers are named
    line = tk.describe_device()
    assert f"Keras {report['keras']}" in line and report["backend"] in line


@pytest.mark.fresh_process
def test_fit_works_in_a_fresh_process_without_set_seed():
    """TF_DETERMINISTIC_OPS=1 (set on import) makes TensorFlow refuse unseeded random ops,
    such as Keras' shuffle in fit: importing the kit must leave a process that can train
    without an explicit tk.set_seed.  The run is helpers.FRESH_PROCESS_SCRIPT."""
    returncode, out, err = fresh_process_result()
    assert returncode == 0, err[-3000:]
    assert "EPOCHS 1" in out
