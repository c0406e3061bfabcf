"""The kit's source model: trained once on the letters task, cached, shared by notebooks.

Notebook 01 trains it step by step; every later notebook calls ``source_model()``,
which loads the cache or, if it is missing (a notebook opened out of order),
trains it with exactly the same recipe and says so.  Publishing is atomic and
guarded by a lock, so two kernels starting at once end with one correct file.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from .data import source_task
from .environment import cache_dir, set_seed
from .models import DEFAULT_WIDTHS, build_model
from .training import compile_model, evaluate, fit
from .transfer import load_matching_weights, save_atomically, save_weights

# The recipe; changing any value gives a new cache key, so stale files are never used.
SOURCE_RECIPE = {
    "task": "letters", "train_per_class": 120, "seed": 0, "epochs": 8, "batch_size": 64,
    "learning_rate": 3e-3, "widths": list(DEFAULT_WIDTHS), "version": 1,
}


def recipe_key(recipe=SOURCE_RECIPE):
    text = json.dumps(recipe, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def source_paths(recipe=SOURCE_RECIPE):
    base = cache_dir() / f"source-{recipe_key(recipe)}"
    return base.with_suffix(".weights.h5"), base.with_suffix(".json")


@dataclass
class SourceModel:
    model: object
    weights_path: Path
    info: dict

    def __repr__(self):
        return (f"SourceModel({self.info['task']}: test accuracy "
                f"{self.info['test_accuracy']:.1%}, weights {self.weights_path.name})")


def train_source_model(task=None, recipe=SOURCE_RECIPE, callbacks=()):
    """Train the source model from scratch with the recipe; returns (model, history, scores)."""
    task = task or source_task(train_per_class=recipe["train_per_class"])
    set_seed(recipe["seed"])
    model = build_model(task.num_classes, widths=tuple(recipe["widths"]), name="source")
    compile_model(model, recipe["learning_rate"])
    history = fit(model, task.train, task.val, recipe["epochs"], recipe["batch_size"],
                  callbacks, label="source")
    return model, history, evaluate(model, task.test)


def publish_source(model, scores, recipe=SOURCE_RECIPE):
    """Write weights, then metadata, each atomically; the metadata marks the pair complete."""
    weights, meta = source_paths(recipe)
    save_weights(model, weights)
    info = {"task": recipe["task"], "classes": list(scores.class_names),
            "test_accuracy": scores.accuracy, "recipe": recipe, "key": recipe_key(recipe)}

    def write(tmp):
        Path(tmp).write_text(json.dumps(info, indent=1))
    save_atomically(write, meta)
    return weights, info


def _read_info(meta, recipe):
    try:
        info = json.loads(Path(meta).read_text())
    except (OSError, ValueError):
        return None
    return info if info.get("key") == recipe_key(recipe) else None


@contextlib.contextmanager
def _lock(path):
    try:
        import fcntl
    except ImportError:  # Windows: atomic publish alone still prevents torn files
        yield
        return
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _load(weights, info, num_classes):
    model = build_model(num_classes, widths=tuple(info["recipe"]["widths"]), name="source")
    load_matching_weights(model, weights, strict=True)
    return model


def source_model(recipe=SOURCE_RECIPE, verbose=True):
    """The cached source model, trained first if the cache is missing or stale."""
    weights, meta = source_paths(recipe)
    info = _read_info(meta, recipe) if weights.exists() else None
    if info is None:
        with _lock(str(meta) + ".lock"):
            info = _read_info(meta, recipe) if weights.exists() else None
            if info is None:  # nobody else built it while we waited
                if verbose:
                    print("No cached source model yet: training it now with the recipe of "
                          "notebook 01 (deterministic, about 20 s) ...")
                model, _, scores = train_source_model(recipe=recipe)
                weights, info = publish_source(model, scores, recipe)
                if verbose:
                    print(f"Saved {_shown(weights)}")
                return SourceModel(model, weights, info)
    model = _load(weights, info, len(info["classes"]))
    if verbose:
        print(f"Loaded the source model from {_shown(weights)}")
    return SourceModel(model, weights, info)


def _shown(path):
    """The path relative to the working folder when that is shorter (stable in notebooks)."""
    try:
        return os.path.relpath(path)
    except ValueError:
        return str(path)
