"""Shared fixtures for the transferkit unit tests.

Everything is tiny on purpose (2-block models of width 4/8, a few dozen glyph
images, 1-2 epochs) so the suite runs in about a minute on a 2-core CPU.
"""
from __future__ import annotations

from types import SimpleNamespace

import pytest

import transferkit as tk  # first, so it sets TF_DETERMINISTIC_OPS before TensorFlow loads
import helpers
from helpers import TINY_WIDTHS

CHARS = "ABC"


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    """No test may read or write the real shared cache (data/cache)."""
    monkeypatch.setenv("TRANSFERKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("TRANSFERKIT_SHARED_CACHE", raising=False)  # a class hub's (set there)


@pytest.fixture(scope="session")
def letters():
    """36 training images: 12 per class of 'A', 'B', 'C'."""
    return tk.data.glyph_dataset(CHARS, 12, seed=0, name="abc train")


@pytest.fixture(scope="session")
def letters_val():
    """15 validation images: 5 per class, an independent draw."""
    return tk.data.glyph_dataset(CHARS, 5, seed=1, name="abc val")


@pytest.fixture(scope="session")
def trained(letters, letters_val):
    """A tiny 3-class model trained for 2 epochs, followed by a LiveCurves callback.

    Shared to save training time (each new model costs a few seconds of tracing):
    tests must only read it.
    """
    tk.set_seed(0)
    model = tk.build_model(3, widths=TINY_WIDTHS, name="trained")
    tk.compile_model(model, learning_rate=1e-2)
    live = tk.LiveCurves(label="live")
    history = tk.fit(model, letters, letters_val, epochs=2, batch_size=8, label="tiny",
                     callbacks=[live])
    return SimpleNamespace(model=model, history=history, live=live)


@pytest.fixture(scope="session")
def well_trained(letters, letters_val):
    """A tiny 3-class model trained until its features separate A, B and C on every backend
    (the 2-epoch `trained` model can still be at chance, e.g. on JAX). Read only."""
    tk.set_seed(0)
    model = tk.build_model(3, widths=TINY_WIDTHS, name="well_trained")
    tk.compile_model(model, learning_rate=1e-2)
    tk.fit(model, letters, letters_val, epochs=15, batch_size=8, repeat=4, label="tiny")
    return model


# ----------------------------------------------------------------- fresh-process test
# A test marked `fresh_process` needs a new interpreter, whose TensorFlow import alone
# takes ~10 s.  Start it in the background as soon as collection ends and run that test
# last, so the wait overlaps with the rest of the suite.
def pytest_configure(config):
    config.addinivalue_line("markers", "fresh_process: runs helpers.FRESH_PROCESS_SCRIPT in "
                                       "a new interpreter started at collection time")


def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: item.get_closest_marker("fresh_process") is not None)


def pytest_collection_finish(session):
    if any(item.get_closest_marker("fresh_process") for item in session.items):
        helpers.start_fresh_process()


def pytest_sessionfinish(session, exitstatus):
    helpers.stop_fresh_process()
