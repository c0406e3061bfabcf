"""tk.cachecheck: what the cache holds, each item verified (python -m transferkit info).

A truncated or replaced weights file was reported as "cached"; now a source model is
"verified" only when its metadata names the recipe, its checksum is the one recorded and
it reads as a whole, finite weights file, and an online file set when its checksums (where
known) are right and a dataset reads whole.
"""
from __future__ import annotations

import contextlib
import gzip
import io
import json
from pathlib import Path

import numpy as np
import pytest

import transferkit as tk
from helpers import TINY_WIDTHS
from transferkit.cachecheck import cache_report, verify_online, verify_source
from transferkit.source import source_paths

TINY_RECIPE = dict(tk.SOURCE_RECIPE, train_per_class=5, epochs=1, widths=list(TINY_WIDTHS))


@pytest.fixture
def tiny_source():
    """A published tiny source model in this test's private cache: (weights, metadata)."""
    with contextlib.redirect_stdout(io.StringIO()):
        tk.source_model(TINY_RECIPE)
    return source_paths(TINY_RECIPE)


def test_an_empty_cache_holds_nothing_verified():
    items = cache_report()
    assert [i.state for i in items] == ["not cached"] * len(items)
    assert items[0].line().startswith("source model       not cached yet (source-")
    assert any(i.line() == "  mnist                not cached (optional, online)" for i in items)


def test_a_published_source_model_is_verified(tiny_source):
    item = verify_source(TINY_RECIPE)
    assert item.cached and item.state == "verified" and item.detail == "checksum and weights"


@pytest.mark.parametrize("damage, needle", [
    ("truncated", "truncated file"),
    ("replaced", "its checksum is not the one recorded"),
    ("no metadata", "no readable metadata"),
    ("no weights", "no weights file"),
    ("nan", "NaN or infinite weight"),
])
def test_a_damaged_source_model_is_not_reported_as_cached(tiny_source, damage, needle):
    weights, meta = tiny_source
    data = weights.read_bytes()
    if damage == "truncated":
        weights.write_bytes(data[: len(data) // 2])
    elif damage == "replaced":
        tk.set_seed(9)
        tk.save_weights(tk.build_model(26, widths=TINY_WIDTHS, name="source"), weights)
    elif damage == "no metadata":
        meta.unlink()
    elif damage == "no weights":
        weights.unlink()
    else:  # NaN weights whose checksum the metadata records (a hand-made pair)
        model = tk.build_model(26, widths=TINY_WIDTHS, name="source")
        kernel = model.get_layer("head").kernel
        kernel.assign(np.full(kernel.shape, np.nan, dtype="float32"))
        model.save_weights(weights)
        import hashlib
        info = json.loads(meta.read_text())
        info["sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()
        meta.write_text(json.dumps(info))
    item = verify_source(TINY_RECIPE)
    assert item.state == "damaged" and not item.cached, item
    assert needle in item.detail and "\n" not in item.line()
    assert item.detail.endswith("it is trained again on first use")


def test_the_report_lists_the_default_source_model_verified(monkeypatch):
    tk.set_seed(0)
    model = tk.build_model(26, widths=tuple(tk.SOURCE_RECIPE["widths"]), name="source")
    scores = tk.Scores(0.5, 0.5, 0.5, 0.5, np.zeros((26, 26)), tuple(tk.data.UPPERCASE))
    weights, _ = tk.publish_source(model, scores)
    first = cache_report()[0]
    assert first.line() == f"source model       cached, verified ({weights.name}: checksum and weights)"
    data = weights.read_bytes()
    weights.write_bytes(data[:100])
    line = cache_report()[0].line()
    assert line.startswith(f"source model       damaged ({weights.name}: ") and "truncated" in line


def _idx(path, header, payload):
    with gzip.open(path, "wb") as f:
        f.write(header + payload)


def test_online_files_are_verified_by_checksum_and_by_reading_them():
    mnist = tk.online_file_paths("mnist")[0]
    mnist.parent.mkdir(parents=True)
    mnist.write_bytes(b"not the real file")
    item = verify_online("mnist")
    assert item.state == "damaged" and "checksum" in item.detail and "fetch again" in item.detail
    paths = tk.online_file_paths("fashion_mnist")
    paths[0].parent.mkdir(parents=True)
    n = 3
    for path in paths:
        images = "images" in path.name
        _idx(path, bytes(16 if images else 8), bytes(n * 784 if images else n))
    assert verify_online("fashion_mnist").state == "verified"
    assert verify_online("fashion_mnist").detail == "contents read whole; no checksum is known"
    data = paths[1].read_bytes()
    paths[1].write_bytes(data[: len(data) // 2])  # an interrupted copy
    item = verify_online("fashion_mnist")
    assert item.state == "damaged" and item.detail.startswith("unreadable (")
    paths[3].unlink()
    assert verify_online("fashion_mnist").detail.startswith("1 of 4 files missing")
