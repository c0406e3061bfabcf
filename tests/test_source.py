"""The cached source model (source.py), with a tiny recipe and private cache folders.

Training even the tiny recipe takes a few seconds, so one module-scoped fixture
trains it once into its own temporary cache; the tests then load from (a copy of)
that cache.
"""
from __future__ import annotations

import contextlib
import io
import json
import shutil
from types import SimpleNamespace

import pytest

import transferkit as tk
from helpers import all_equal, snapshot
from transferkit.source import recipe_key, source_paths

TINY_RECIPE = dict(tk.SOURCE_RECIPE, train_per_class=5, epochs=1, widths=[4, 8])


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The first ``source_model(TINY_RECIPE)`` call, into an empty private cache."""
    folder = tmp_path_factory.mktemp("source-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRANSFERKIT_CACHE", str(folder))
        weights, meta = source_paths(TINY_RECIPE)
        existed = weights.exists() or meta.exists()
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            first = tk.source_model(TINY_RECIPE)
    return SimpleNamespace(folder=folder, first=first, printed=printed.getvalue(),
                           existed=existed, weights=weights, meta=meta,
                           weights_bytes=weights.read_bytes())


def test_source_paths_live_in_the_configured_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TRANSFERKIT_CACHE", str(tmp_path / "c"))
    weights, meta = source_paths(TINY_RECIPE)
    assert weights.parent == tmp_path / "c" and meta.parent == tmp_path / "c"
    assert weights.name.endswith(".weights.h5") and meta.suffix == ".json"
    assert recipe_key(TINY_RECIPE) in weights.name


def test_changed_recipe_gets_a_different_path(tmp_path, monkeypatch):
    monkeypatch.setenv("TRANSFERKIT_CACHE", str(tmp_path))
    weights, meta = source_paths(TINY_RECIPE)
    for change in (dict(epochs=2), dict(seed=1), dict(widths=[4, 16]), dict(version=2)):
        other = dict(TINY_RECIPE, **change)
        other_weights, other_meta = source_paths(other)
        assert other_weights != weights and other_meta != meta, change
        assert recipe_key(other) != recipe_key(TINY_RECIPE)
    # the key depends on the content, not on the order of the keys
    reordered = dict(reversed(list(TINY_RECIPE.items())))
    assert source_paths(reordered) == (weights, meta)


def test_first_call_trains_and_publishes_weights_and_metadata(built):
    assert not built.existed
    assert "training it now" in built.printed and "Saved" in built.printed
    assert "Loaded" not in built.printed
    first = built.first
    assert isinstance(first, tk.source.SourceModel) and first.weights_path == built.weights
    assert built.weights.exists() and built.meta.exists()
    # nothing else is left behind (no temporary files): weights, metadata, the lock
    assert {p.name for p in built.folder.iterdir()} == {
        built.weights.name, built.meta.name, built.meta.name + ".lock"}
    info = json.loads(built.meta.read_text())
    assert info == first.info
    assert info["key"] == recipe_key(TINY_RECIPE) and info["recipe"] == TINY_RECIPE
    assert info["classes"] == list(tk.data.UPPERCASE)
    assert 0.0 <= info["test_accuracy"] <= 1.0
    assert first.model.output_shape == (None, 26)
    assert tk.models.block_names(first.model) == ["block1", "block2"]
    stored = tk.read_weights_file(built.weights)
    assert all_equal(stored, snapshot(first.model))


def test_second_call_loads_bit_equal_weights(built, monkeypatch, capsys):
    monkeypatch.setenv("TRANSFERKIT_CACHE", str(built.folder))
    second = tk.source_model(TINY_RECIPE)
    out = capsys.readouterr().out
    assert "Loaded" in out and "training" not in out
    assert second.model is not built.first.model
    assert all_equal(snapshot(second.model), snapshot(built.first.model))
    assert second.info == built.first.info and second.weights_path == built.weights
    assert built.weights.read_bytes() == built.weights_bytes  # loading did not rewrite it

    tk.source_model(TINY_RECIPE, verbose=False)
    assert capsys.readouterr().out == ""
    # a changed recipe is never served from this entry
    assert not source_paths(dict(TINY_RECIPE, epochs=2))[0].exists()


def test_stale_metadata_is_not_trusted(built, tmp_path, monkeypatch, capsys):
    """Weights whose .json records another recipe key are retrained, not loaded."""
    cache = tmp_path / "copy"
    shutil.copytree(built.folder, cache)
    monkeypatch.setenv("TRANSFERKIT_CACHE", str(cache))
    weights, meta = source_paths(TINY_RECIPE)
    info = json.loads(meta.read_text())
    meta.write_text(json.dumps(dict(info, key="0000000000")))

    again = tk.source_model(TINY_RECIPE)
    assert "training it now" in capsys.readouterr().out
    assert json.loads(meta.read_text())["key"] == recipe_key(TINY_RECIPE)
    # same recipe and seed: retraining reproduces the same model, bit for bit
    assert all_equal(snapshot(again.model), snapshot(built.first.model))
    assert weights.read_bytes() != b""
