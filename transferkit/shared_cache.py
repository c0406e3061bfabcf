"""A read-only cache of source models that a whole class shares, looked in first.

On a class hub every learner's kernel would otherwise train the same source model into its
own cache: thirty trainings at once on one server.  The teacher builds the shared cache once
(``TRANSFERKIT_CACHE=/srv/transferkit/cache python -m transferkit prepare --all-sources``)
and the hub sets ``TRANSFERKIT_SHARED_CACHE=/srv/transferkit/cache`` for every learner.
``tk.source_model()`` then

- loads a complete, verified entry from it and writes nothing there (no lock, no temporary
  file: the folder may be read-only);
- for a source the shared cache should hold (one of ``tk.source.SOURCE_RECIPES``) but holds
  damaged, or not at all (partial, or built for another recipe or kit version: stale), raises
  one line naming the folder, what is wrong and the teacher's fix instead of training: a
  broken shared cache must not start a training in thirty kernels at once;
- keeps the learner's own cache (``TRANSFERKIT_CACHE``, else the default) for everything
  else: what notebook 01 saves, and sources of a learner's own recipe.

The same folder named by both variables (the teacher building it on the hub) is simply the
own cache.  Tier 1: no Keras, no NumPy, so the command line checks the variable before the
backend loads.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from .checks import ENV_CACHE, cache_location

__all__ = ["ENV_SHARED_CACHE", "Entry", "SharedCacheError", "check_shared_cache", "entry",
           "held_entries", "rebuild_command", "refusal", "shared_cache_location", "status_lines"]

ENV_SHARED_CACHE = "TRANSFERKIT_SHARED_CACHE"
PREFIX = "source-"


class SharedCacheError(RuntimeError):
    """The shared cache lacks (or holds damaged) a source model it should hold."""


def shared_cache_location():
    """The folder named by $TRANSFERKIT_SHARED_CACHE, or None: unset, or the same folder as
    the own cache (which is then just the own cache)."""
    env = os.environ.get(ENV_SHARED_CACHE)
    if not env:
        return None
    folder = Path(env).expanduser()
    if os.path.realpath(folder) == os.path.realpath(cache_location()):
        return None
    return folder


def rebuild_command(folder):
    """What the teacher runs to (re)build the shared cache ``folder``."""
    return f"{ENV_CACHE}={folder} python -m transferkit prepare --all-sources"


def check_shared_cache():
    """The shared cache folder (or None), checked: it exists and this user can read it.

    Checked without writing anything; one line naming the value and the fix otherwise.
    """
    folder = shared_cache_location()
    if folder is None:
        return None
    if not folder.exists():
        problem = "does not exist"
    elif not folder.is_dir():
        problem = "is a file, not a folder"
    elif not os.access(folder, os.R_OK | os.X_OK):
        problem = "cannot be read by this user (Permission denied)"
    else:
        return folder
    raise OSError(f"{ENV_SHARED_CACHE}={str(folder)!r} {problem}; ask the teacher to build it "
                  f"({rebuild_command(folder)}), or unset {ENV_SHARED_CACHE} to use your own "
                  "cache only")


@dataclass(frozen=True)
class Entry:
    """One source model in the shared cache: its files, its metadata, what is wrong (or None)."""
    key: str
    weights: Path
    meta: Path
    info: dict | None
    problem: str | None

    @property
    def complete(self):
        return self.problem is None


def _digest(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def entry(folder, key):
    """The entry for cache key ``key`` in ``folder``, verified (its checksum), never written.

    ``problem``: None when complete; ``"missing"`` when neither file is there; else what is
    damaged (a file missing, unreadable metadata, another key's metadata, a checksum that
    does not match).
    """
    base = Path(folder) / f"{PREFIX}{key}"
    weights, meta = base.with_suffix(".weights.h5"), base.with_suffix(".json")
    info, problem = None, None
    if not weights.exists() and not meta.exists():
        problem = "missing"
    elif not meta.exists():
        problem = "its metadata file is missing (an interrupted build?)"
    else:
        try:
            info = json.loads(meta.read_text())
        except (OSError, ValueError) as exc:
            problem = f"its metadata cannot be read ({getattr(exc, 'strerror', None) or exc})"
        else:
            if not isinstance(info, dict) or info.get("key") != key:
                problem, info = "its metadata describes another model", None
            elif not weights.exists():
                problem = "its weights file is missing"
            else:
                try:
                    if info.get("sha256") != _digest(weights):
                        problem = "its weights do not match their checksum (damaged or replaced)"
                except OSError as exc:
                    problem = f"its weights cannot be read ({exc.strerror})"
    return Entry(key, weights, meta, info, problem)


def held_entries(folder):
    """{key: Entry} of every source model whose metadata lies in ``folder``."""
    found = {}
    for meta in sorted(Path(folder).glob(f"{PREFIX}*.json")):
        key = meta.name[len(PREFIX):-len(".json")]
        found[key] = entry(folder, key)
    return found


def _closest_differences(recipe, held):
    """The recipe fields in which the closest held model of the same task differs."""
    options = [sorted(k for k in set(recipe) | set(e.info["recipe"])
                      if recipe.get(k) != e.info["recipe"].get(k))
               for e in held.values()
               if e.info and e.info.get("recipe", {}).get("task") == recipe.get("task")]
    return min(options, key=len) if options else []


def refusal(folder, name, recipe, key, expected, problem=None):
    """The SharedCacheError to raise instead of training source ``name`` (its recipe dict
    and cache key) that the shared cache ``folder`` does not hold whole; ``expected``:
    {name: key} of every source the shared cache should hold; ``problem``: why an entry
    that looked whole could not be loaded."""
    here = entry(folder, key)
    problem = problem or here.problem
    fix = (f"nothing was trained; ask the teacher to rebuild it: {rebuild_command(folder)} "
           f"(or unset {ENV_SHARED_CACHE} to train your own copy)")
    where = f"the shared cache {str(folder)!r}"
    if problem != "missing":
        return SharedCacheError(f"{where} holds a damaged {name!r} source model "
                                f"({here.weights.name}: {problem}); {fix}")
    held = held_entries(folder)
    present = [n for n, k in expected.items() if k in held and held[k].complete]
    if not held:
        what = "is empty"
    elif present:
        what = f"is partial: it holds {', '.join(present)} but no {name!r} source model"
    else:
        differ = _closest_differences(recipe, held)
        why = f" (its {recipe['task']!r} model differs in {', '.join(differ)})" if differ else ""
        what = (f"is stale: built for another recipe or kit version, it has no {name!r} source "
                f"model with key {key}{why}")
    return SharedCacheError(f"{where} {what}; {fix}")


def status_lines(expected):
    """``python -m transferkit info``'s lines on the shared cache: where it is, whether this
    user may write it, and the state of each source it should hold (``expected``: {name:
    key}), plus models it holds that this kit version does not use."""
    folder = check_shared_cache()
    if folder is None:
        return [f"shared cache       none ({ENV_SHARED_CACHE} not set)"]
    access = "writable by you" if os.access(folder, os.W_OK) else "read-only for you"
    lines = [f"shared cache       {folder} ({access}; looked in first, never written)"]
    for name, key in expected.items():
        found = entry(folder, key)
        lines.append(f"  source {name:<17} {'complete' if found.complete else found.problem} "
                     f"({found.weights.name})")
    others = sorted(set(held_entries(folder)) - set(expected.values()))
    if others:
        lines.append(f"  {len(others)} other model(s), not used by this kit version and settings: "
                     f"keys {', '.join(others)}")
    return lines
