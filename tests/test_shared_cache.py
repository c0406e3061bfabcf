"""The shared, read-only cache of a class hub ($TRANSFERKIT_SHARED_CACHE, transferkit/shared_cache.py).

A complete entry loads from it and nothing is written there; a source it should hold but
holds damaged, stale (another recipe or kit version) or not at all (partial, empty) is a
one-line refusal naming the folder and the teacher's fix, never a training; a learner's own
recipe and what notebooks save still go to the learner's own cache.

The shared cache serves the named recipes (tk.source.SOURCE_RECIPES, what ``prepare
--all-sources`` builds); training even one of them takes seconds, so a tiny recipe is added
to that table under the name "tiny" (monkeypatch) and built once into a module folder.  The
hub test (tests/test_hub.py) checks the same with real Unix users and the real recipes.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
from pathlib import Path

import pytest

import transferkit as tk
from helpers import TINY_WIDTHS, all_equal, snapshot
from test_catalogue import assert_clear, assert_cli_error, run_cli
from transferkit import shared_cache
from transferkit.files import shown
from transferkit.source import recipe_key

TINY = dict(tk.SOURCE_RECIPE, train_per_class=5, epochs=1, widths=list(TINY_WIDTHS))
TINY_OTHER = dict(TINY, epochs=2)  # another named recipe, never built
FIX = "prepare --all-sources"


def tree(folder):
    """{relative path: (mode, size, mtime_ns, sha256)}: any write shows."""
    out = {}
    for path in sorted(Path(folder).rglob("*")):
        st = path.stat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
        out[str(path.relative_to(folder))] = (st.st_mode, st.st_size, st.st_mtime_ns, digest)
    return out


@pytest.fixture
def named(monkeypatch):
    """The tiny recipes as named sources, as if ``prepare --all-sources`` built them."""
    monkeypatch.setitem(tk.source.SOURCE_RECIPES, "tiny", TINY)
    monkeypatch.setitem(tk.source.SOURCE_RECIPES, "tiny-other", TINY_OTHER)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A shared cache as the teacher builds it: the tiny source trained once, read-only."""
    folder = tmp_path_factory.mktemp("shared")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRANSFERKIT_CACHE", str(folder))
        mp.delenv("TRANSFERKIT_SHARED_CACHE", raising=False)
        with contextlib.redirect_stdout(io.StringIO()):
            model = tk.source_model(TINY).model
    return folder, snapshot(model)


@pytest.fixture
def shared(built, tmp_path, monkeypatch, named):
    """A read-only copy of the built shared cache, named by $TRANSFERKIT_SHARED_CACHE; the
    learner's own cache ($TRANSFERKIT_CACHE, from conftest) is empty."""
    folder = tmp_path / "srv-cache"
    shutil.copytree(built[0], folder)
    for path in folder.iterdir():
        path.chmod(0o444)
    folder.chmod(0o555)
    monkeypatch.setenv("TRANSFERKIT_SHARED_CACHE", str(folder))
    yield folder
    folder.chmod(0o755)


def own_cache():
    return Path(os.environ["TRANSFERKIT_CACHE"])


def own_models():
    return sorted(p.name for p in own_cache().glob("source-*")) if own_cache().exists() else []


def load(recipe):
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        src = tk.source_model(recipe)
    return src, printed.getvalue()


# --------------------------------------------------------------------------- loading
def test_a_complete_entry_loads_from_the_shared_cache_and_nothing_is_written_anywhere(
        shared, built):
    before = tree(shared)
    src, printed = load(TINY)
    assert printed == f"Loaded the source model from the shared cache {shown(src.weights_path)}\n"
    assert src.weights_path.parent == shared
    assert all_equal(snapshot(src.model), built[1])  # the teacher's weights, bit for bit
    assert tree(shared) == before  # no lock file, no temporary, no changed mode or time
    assert own_models() == []  # and no copy in the learner's cache


def test_a_learners_own_recipe_trains_into_the_own_cache_never_the_shared_one(shared):
    before = tree(shared)
    own = dict(TINY, seed=5)  # not one of the named sources: the learner's experiment
    src, printed = load(own)
    assert "training it now" in printed
    assert src.weights_path.parent == own_cache()
    assert tree(shared) == before


def test_notebook_01s_own_publish_goes_to_the_own_cache(shared):
    before = tree(shared)
    model, _, scores = tk.source.train_source_model(recipe=TINY)
    weights, _ = tk.publish_source(model, scores, TINY)
    assert weights.parent == own_cache() and tree(shared) == before
    # and the next notebook still loads the shared copy first
    assert load(TINY)[0].weights_path.parent == shared


# --------------------------------------------------------------------------- refusals
def refused(recipe, *needles):
    with pytest.raises(shared_cache.SharedCacheError) as err:
        load(recipe)
    assert_clear(err, *needles, "nothing was trained", FIX, "unset TRANSFERKIT_SHARED_CACHE")
    assert own_models() == [], "a refusal must come before any training"
    return str(err.value)


def damage(folder, path, data):
    folder.chmod(0o755)
    path.chmod(0o644)
    path.write_bytes(data)


def test_a_damaged_entry_is_refused_in_one_line_not_trained(shared):
    weights = shared / f"source-{recipe_key(TINY)}.weights.h5"
    damage(shared, weights, weights.read_bytes()[:500])  # an interrupted copy
    message = refused(TINY, str(shared), "damaged 'tiny' source model", "checksum")
    assert f"TRANSFERKIT_CACHE={shared} python -m transferkit prepare --all-sources" in message


def test_an_entry_without_its_weights_or_with_torn_metadata_is_refused(shared):
    meta = shared / f"source-{recipe_key(TINY)}.json"
    damage(shared, meta, b'{"key": "')
    refused(TINY, "damaged", "metadata cannot be read")
    (shared / f"source-{recipe_key(TINY)}.weights.h5").unlink()
    meta.unlink()
    (shared / f"source-{recipe_key(TINY)}.weights.h5").write_bytes(b"x")
    refused(TINY, "damaged", "metadata file is missing")


def test_a_partial_shared_cache_names_what_it_holds_and_what_is_missing(shared):
    message = refused(TINY_OTHER, str(shared), "is partial", "holds tiny",
                      "no 'tiny-other' source model")
    assert "stale" not in message


def test_a_stale_shared_cache_says_which_settings_differ(shared):
    """Built by another kit version: its model's recipe has another value (here the
    numerics tag), so no key this kit computes is there."""
    key = recipe_key(TINY)
    shared.chmod(0o755)
    info = json.loads((shared / f"source-{key}.json").read_text())
    info["recipe"] = dict(info["recipe"], numerics="portable-0")
    info["key"] = old = recipe_key(info["recipe"])
    for suffix in (".json", ".weights.h5"):
        (shared / f"source-{key}{suffix}").rename(shared / f"source-{old}{suffix}")
    (shared / f"source-{old}.json").chmod(0o644)
    (shared / f"source-{old}.json").write_text(json.dumps(info))
    refused(TINY, str(shared), "is stale", "another recipe or kit version", "differs in numerics")


def test_an_empty_shared_cache_is_refused(tmp_path, monkeypatch, named):
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("TRANSFERKIT_SHARED_CACHE", str(tmp_path / "empty"))
    refused(TINY, str(tmp_path / "empty"), "is empty")


def test_the_own_cache_still_serves_what_the_shared_one_lacks(shared, built):
    """A learner who trained 'tiny-other' before (own cache) is not refused."""
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("TRANSFERKIT_SHARED_CACHE")
        load(TINY_OTHER)
    src, printed = load(TINY_OTHER)
    assert src.weights_path.parent == own_cache() and "training" not in printed


def test_the_same_folder_in_both_variables_is_the_own_cache(tmp_path, monkeypatch, named):
    """The teacher building the shared cache on the hub, where every server has the variable:
    ``TRANSFERKIT_CACHE=/srv/... prepare`` trains into it, not refused."""
    folder = tmp_path / "srv"
    monkeypatch.setenv("TRANSFERKIT_CACHE", str(folder))
    monkeypatch.setenv("TRANSFERKIT_SHARED_CACHE", str(folder) + "/")
    assert shared_cache.shared_cache_location() is None
    src, printed = load(TINY)
    assert "training it now" in printed and src.weights_path.parent == folder


# --------------------------------------------------------------------------- the variable
@pytest.mark.parametrize("kind", ["missing", "file"])
def test_a_shared_cache_variable_naming_no_folder_is_one_line_before_keras(tmp_path, kind,
                                                                           monkeypatch):
    target = tmp_path / "nowhere"
    if kind == "file":
        target.write_text("")
    problem = "does not exist" if kind == "missing" else "is a file, not a folder"
    code, lines, _, imported = run_cli("prepare", env={"TRANSFERKIT_SHARED_CACHE": str(target)})
    assert_cli_error(code, lines, imported, 2, f"TRANSFERKIT_SHARED_CACHE={str(target)!r} "
                     f"{problem}", FIX, "unset TRANSFERKIT_SHARED_CACHE")
    monkeypatch.setenv("TRANSFERKIT_SHARED_CACHE", str(target))
    with pytest.raises(OSError) as err:  # the library: the same line
        tk.source_model()
    assert_clear(err, problem, FIX)


def test_info_lists_the_shared_cache_and_the_state_of_each_source(shared):
    expected = {"tiny": recipe_key(TINY), "tiny-other": recipe_key(TINY_OTHER)}
    shared.chmod(0o755)
    (shared / "source-0123456789.json").write_text(json.dumps({"key": "0123456789"}))
    lines = shared_cache.status_lines(expected)
    assert lines[0].startswith(f"shared cache       {shared} (")
    assert "looked in first, never written" in lines[0]
    assert any("source tiny " in line and "complete" in line for line in lines)
    assert any("source tiny-other" in line and "missing" in line for line in lines)
    assert "1 other model(s)" in lines[-1] and "0123456789" in lines[-1]


def test_info_says_when_there_is_no_shared_cache():
    assert shared_cache.status_lines({}) == [
        "shared cache       none (TRANSFERKIT_SHARED_CACHE not set)"]
