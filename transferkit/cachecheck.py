"""What the cache holds, each item verified, not just found: ``python -m transferkit info``.

``cache_report()`` returns one ``CachedItem`` per source model and online file set.  A
source model is ``"verified"`` when its metadata names this recipe, its weights file's
SHA-256 is the one recorded when it was published, and the file reads as a whole, finite
Keras weights file (``weightfiles``); an online set when every file is there, its checksum
is right where one is known and a dataset reads whole.  Anything else is ``"damaged"``,
with one line saying what is wrong (the kit trains or fetches it again rather than use it).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from .onlinefiles import READ_ERRORS, READERS, checksum_problem
from .online import BACKBONE_FILES, ONLINE_DATASETS, online_file_paths
from .source import SOURCE_RECIPE, SOURCE_RECIPES, recipe_key, resolve_recipe, source_paths
from .weightfiles import read_weights_file

__all__ = ["CachedItem", "cache_report", "verify_online", "verify_source"]


@dataclass
class CachedItem:
    """One entry of ``cache_report``: a source model or an online file set."""

    name: str
    state: str    # "verified", "not cached" or "damaged"
    detail: str   # one line: what was verified, or what is wrong
    file: str = ""

    @property
    def cached(self):
        """True only for a complete, verified item."""
        return self.state == "verified"

    def line(self):
        """As ``python -m transferkit info`` prints it."""
        words = {"verified": "cached, verified", "not cached": "not cached", "damaged": "damaged"}
        if self.file:  # a source model
            if self.state == "not cached":
                return f"{self.name:<18} not cached yet ({self.file})"
            return f"{self.name:<18} {words[self.state]} ({self.file}: {self.detail})"
        return f"  {self.name:<20} {words[self.state]} ({self.detail})"

    def __str__(self):
        return self.line()


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _source_problem(recipe, weights, meta):
    """None for a complete, verified source model, else what is wrong."""
    try:
        info = json.loads(meta.read_text())
    except (OSError, ValueError):
        return "no readable metadata (an interrupted save)"
    if not isinstance(info, dict) or info.get("key") != recipe_key(recipe):
        return "its metadata is for another recipe"
    if not weights.is_file():
        return "no weights file"
    try:  # first: it says what a torn file is (truncated, empty, NaN weights, ...)
        read_weights_file(weights)
    except (OSError, ValueError) as exc:
        return str(exc).split("; ")[0].replace(repr(str(weights)), "the file")
    if info.get("sha256") != _sha256(weights):
        return "its checksum is not the one recorded (a replaced file)"
    return None


def verify_source(recipe=SOURCE_RECIPE):
    """A ``CachedItem`` for one recipe's source model (a recipe dict or name)."""
    recipe = resolve_recipe(recipe)
    weights, meta = source_paths(recipe)
    name = "source model" if recipe == SOURCE_RECIPE else f"source {recipe['task']}"
    if not weights.exists() and not meta.exists():
        return CachedItem(name, "not cached", "trained on first use", weights.name)
    problem = _source_problem(recipe, weights, meta)
    if problem:
        return CachedItem(name, "damaged", f"{problem}; it is trained again on first use",
                          weights.name)
    return CachedItem(name, "verified", "checksum and weights", weights.name)


def verify_online(name):
    """A ``CachedItem`` for a dataset's or backbone's cached files (``online_file_paths``)."""
    paths = online_file_paths(name)
    files = ONLINE_DATASETS[name].files if name in ONLINE_DATASETS else (BACKBONE_FILES[name],)
    missing = [p.name for p in paths if not p.is_file()]
    if len(missing) == len(paths):
        return CachedItem(name, "not cached", "optional, online")
    problem = (f"{len(missing)} of {len(paths)} files missing ({missing[0]})" if missing else
               next(filter(None, (checksum_problem(p, f.file_hash)
                                  for f, p in zip(files, paths))), None))
    if problem is None and name in READERS:
        try:
            READERS[name](paths)
        except READ_ERRORS as exc:
            problem = f"unreadable ({(str(exc).splitlines() or [type(exc).__name__])[0]})"
    if problem:
        return CachedItem(name, "damaged", f"{problem}; delete it and fetch again")
    known = all(f.file_hash for f in files)
    return CachedItem(name, "verified", "checksum and contents" if known and name in READERS else
                      "checksum" if known else "contents read whole; no checksum is known")


def cache_report():
    """The source model, any other source recipe with files in the cache, then every online
    dataset and backbone: a verified ``CachedItem`` each."""
    items = [verify_source(SOURCE_RECIPE)]
    items += [verify_source(recipe) for recipe in SOURCE_RECIPES.values()
              if recipe != SOURCE_RECIPE and any(p.exists() for p in source_paths(recipe))]
    return items + [verify_online(name) for name in [*ONLINE_DATASETS, *BACKBONE_FILES]]
