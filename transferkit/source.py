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

import keras
import numpy as np

from .files import shown, write_text
from .checks import check_choice
from .data import Dataset, Task, rich_source_task, shift, source_task
from .environment import (ENV_CACHE, Preset, cache_dir, mixed_precision_active, numerics_tag,
                          preset, set_seed)
from .models import build_model, check_kit_model
from .evaluation import evaluate
from .shared_cache import check_shared_cache, entry, refusal
from .training import compile_model, fit
from .transfer import load_matching_weights, save_weights
from .weightfiles import check_weights_values

__all__ = ["SOURCE_RECIPE", "SOURCE_RECIPES", "SOURCE_TASKS", "SourceModel", "preset_recipe",
           "publish_source", "recipe_key", "recipe_task", "resolve_recipe", "source_model",
           "source_paths", "train_source_model"]


def preset_recipe(chosen=None):
    """The letters recipe sized by a preset (a name or ``tk.environment.preset()``; default:
    this machine's)."""
    chosen = chosen if isinstance(chosen, Preset) else preset(chosen)
    recipe = {
        "task": "letters", "train_per_class": chosen.source_train_per_class, "seed": 0,
        "epochs": chosen.source_epochs, "batch_size": chosen.batch_size,
        "learning_rate": 3e-3, "widths": list(chosen.widths), "version": 1,
    }
    if chosen.mixed_precision and mixed_precision_active():
        recipe["mixed_precision"] = True  # float16 training gives other weights: another key
    if keras.backend.backend() != "tensorflow":
        # JAX and torch train to other weights than TensorFlow, whose weights the committed
        # notebook outputs show: their own key, so no backend overwrites another's cache
        recipe["backend"] = keras.backend.backend()
    # Seeded training gives other weights under other numerics (instruction set, threads;
    # transferkit/_numerics.py): their own key, so e.g. a run on one CPU with the portable
    # settings switched off never replaces the model that two CPUs cached.
    recipe["numerics"] = numerics_tag()
    return recipe


# The recipe; changing any value gives a new cache key, so stale files are never used.
# On a CPU (the "cpu" preset) with TensorFlow and portable numerics: key PORTABLE_KEY below
# (the kit's original recipe, trained with each CPU's own kernels, had 285eab59d9).
SOURCE_RECIPE = preset_recipe()


# Cheap alternative sources (seconds to train), for notebooks 08 and 09: what transfers
# when the source is mismatched, untrained or trained briefly.  Same cache, own keys.
_CHEAP = {"train_per_class": 40, "epochs": 4}
SOURCE_RECIPES = {
    "letters": SOURCE_RECIPE,
    "letters-brief": {**SOURCE_RECIPE, "epochs": 2},
    "letters-shuffled": {**SOURCE_RECIPE, **_CHEAP, "task": "letters-shuffled", "epochs": 8},
    "letters-inverted": {**SOURCE_RECIPE, **_CHEAP, "task": "letters-inverted"},
    "noise": {**SOURCE_RECIPE, **_CHEAP, "task": "noise"},
    "untrained": {**SOURCE_RECIPE, "train_per_class": 10, "epochs": 0},
    # a source that reaches real handwriting (benchmarks/arc.py --target handwritten --source
    # letters-rich): twice the classes, 200 per class, 15 epochs (about a minute on 2 cores)
    "letters-rich": {**SOURCE_RECIPE, "task": "letters-rich", "train_per_class": 200,
                     "epochs": 15},
}
SOURCE_TASKS = {
    "letters": "the letters task as it is",
    "letters-shuffled": "letters with training and validation labels shuffled at random",
    "letters-inverted": "letters drawn black on white (every pixel p becomes 1 - p)",
    "noise": "uniform noise images with random labels: nothing to learn",
    "letters-rich": "52 letters (A-Z, a-z), warped harder, half blurred to 8x8 and back like "
                    "tk.handwritten_digits",
}


def resolve_recipe(recipe):
    """A recipe dict, given one or the name of one in ``SOURCE_RECIPES``; checked."""
    if isinstance(recipe, str):
        return SOURCE_RECIPES[check_choice(recipe, "source recipe", SOURCE_RECIPES,
                                           described=True)]
    if not isinstance(recipe, dict) or recipe.get("task") not in SOURCE_TASKS:
        task = recipe.get("task") if isinstance(recipe, dict) else recipe
        raise ValueError(f"source recipe task {task!r} is unknown; use one of "
                         f"{list(SOURCE_TASKS)}, e.g. dict(tk.SOURCE_RECIPE, task='noise')")
    return recipe


def recipe_task(recipe=SOURCE_RECIPE):
    """The source task a recipe trains on (test labels always stay true)."""
    recipe = resolve_recipe(recipe)
    kind = recipe["task"]
    if kind == "letters-rich":
        return rich_source_task(train_per_class=recipe["train_per_class"])
    task = source_task(train_per_class=recipe["train_per_class"])
    if kind == "letters":
        return task
    rng = np.random.default_rng(recipe["seed"])
    parts = []
    for part in (task.train, task.val, task.test):
        if kind == "letters-inverted":
            part = shift(part, "inverted")
        elif kind == "noise":
            part = Dataset(rng.random(part.x.shape, dtype=np.float32),
                           rng.integers(0, part.num_classes, len(part)),
                           part.class_names, f"noise ({part.name})")
        elif part is not task.test:  # letters-shuffled: labels say nothing about images
            part = Dataset(part.x, rng.permutation(part.y), part.class_names, part.name)
        parts.append(part)
    return Task(f"{task.name} ({kind})", *parts, description=SOURCE_TASKS[kind])


def recipe_key(recipe=SOURCE_RECIPE):
    text = json.dumps(resolve_recipe(recipe), sort_keys=True)
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
    recipe = resolve_recipe(recipe)
    task = task or recipe_task(recipe)
    set_seed(recipe["seed"])
    model = build_model(task.num_classes, widths=tuple(recipe["widths"]), name="source")
    compile_model(model, recipe["learning_rate"])
    if recipe["epochs"] == 0:  # the "untrained" source: random weights, for comparison
        return model, None, evaluate(model, task.test)
    history = fit(model, task.train, task.val, epochs=recipe["epochs"],
                  batch_size=recipe["batch_size"], callbacks=callbacks, label="source")
    return model, history, evaluate(model, task.test)


def publish_source(model, scores, recipe=SOURCE_RECIPE):
    """Write weights, then metadata, each atomically; the metadata marks the pair complete."""
    recipe = resolve_recipe(recipe)
    _check_publishable(model, recipe)
    if not all(hasattr(scores, key) for key in ("accuracy", "class_names")):
        raise TypeError(f"scores must be what tk.evaluate(model, task.test) returns, got "
                        f"{type(scores).__name__}; pass tk.evaluate(model, task.test)")
    weights, meta = source_paths(recipe)
    save_weights(model, weights)
    info = {"task": recipe["task"], "classes": list(scores.class_names),
            "test_accuracy": scores.accuracy, "recipe": recipe, "key": recipe_key(recipe),
            "sha256": _digest(weights)}  # checked on load: a swapped or torn file is not used
    write_text(meta, json.dumps(info, indent=1))
    return weights, info


def _check_publishable(model, recipe):
    """The cache holds only what the recipe builds, with finite weights (a diverged model's
    NaN weights would otherwise load as "6 of 6 layers" and train to chance)."""
    check_kit_model(model, purpose="the cache holds the recipe's CNN",
                    fix="publish a model built with tk.build_model(..., widths=recipe['widths'])")
    widths = [int(layer.filters) for layer in model.layers if layer.name.endswith("_conv")]
    if widths != list(recipe["widths"]):
        raise ValueError(f"model {model.name!r} has widths {widths} but the recipe {recipe['widths']}"
                         "; build it with tk.build_model(..., widths=recipe['widths'])")
    check_weights_values({w.path: [keras.ops.convert_to_numpy(w)] for w in model.weights},
                         f"model {model.name!r}")


def _read_info(meta, recipe):
    try:
        info = json.loads(Path(meta).read_text())
    except (OSError, ValueError):
        return None
    return info if info.get("key") == recipe_key(recipe) else None


@contextlib.contextmanager
def _lock(path):
    try:
        import fcntl  # optional: POSIX only
    except ImportError:  # Windows: atomic publish alone still prevents torn files
        yield
        return
    try:
        handle = open(path, "a+")
    except OSError as exc:  # checked before training: no 20 s lost to a save that must fail
        raise OSError(f"cannot write in the cache folder {os.path.dirname(path)!r} "
                      f"({exc.strerror}); set {ENV_CACHE} to a writable folder") from None
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _digest(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _load(weights, info, num_classes):
    if info.get("sha256") and _digest(weights) != info["sha256"]:
        raise ValueError(f"{str(weights)!r} is not the file its metadata describes")
    model = build_model(num_classes, widths=tuple(info["recipe"]["widths"]), name="source")
    load_matching_weights(model, weights, strict=True)
    return model


def source_model(recipe=SOURCE_RECIPE, verbose=True):
    """The cached source model, trained first if the cache is missing or stale.

    ``recipe``: a recipe dict or a name from ``SOURCE_RECIPES`` (default: the letters model).
    """
    recipe = resolve_recipe(recipe)
    shared, refused = _from_shared_cache(recipe, verbose)
    if shared is not None:
        return shared
    weights, meta = source_paths(recipe)
    cached, _ = _cached(weights, meta, recipe)
    if cached is None and refused is not None:
        raise refused  # the shared cache should hold it: never 30 trainings at once
    if cached is None:
        with _lock(str(meta) + ".lock"):
            cached, damage = _cached(weights, meta, recipe)
            if cached is None:  # nobody else built it while we waited
                if verbose and damage:
                    print(f"The cached source model {shown(weights)} is damaged or incomplete "
                          f"({damage}): training it again ...")
                elif verbose and recipe == SOURCE_RECIPE:
                    print("No cached source model yet: training it now with the recipe of "
                          "notebook 01 (deterministic, about 20 s) ...")
                elif verbose:
                    took = ("about a minute" if recipe["task"] == "letters-rich"
                            else "a few seconds")
                    print(f"No cached {recipe['task']} source model with this recipe yet: "
                          f"training it now (deterministic, {took}) ...")
                model, _, scores = train_source_model(recipe=recipe)
                weights, info = publish_source(model, scores, recipe)
                if verbose:
                    print(f"Saved {shown(weights)}")
                return SourceModel(model, weights, info)
    if verbose:
        print(f"Loaded the source model from {shown(weights)}")
    return cached


def _cached(weights, meta, recipe):
    """(SourceModel, None) from a complete, verified cache; else (None, what is wrong)."""
    info = _read_info(meta, recipe) if weights.exists() else None
    if info is None:
        return None, None
    try:
        return SourceModel(_load(weights, info, len(info["classes"])), weights, info), None
    except (OSError, ValueError) as exc:  # truncated or foreign file: rebuild, never use it
        return None, str(exc).split(";")[0]



def _from_shared_cache(recipe, verbose):
    """(SourceModel, None) from the shared cache ($TRANSFERKIT_SHARED_CACHE, read-only:
    nothing is written there); (None, SharedCacheError) when it should hold this source but
    does not hold it whole; (None, None) without a shared cache, or for a recipe of the
    learner's own (not one of SOURCE_RECIPES), which the own cache serves."""
    folder = check_shared_cache()
    names = [n for n, r in SOURCE_RECIPES.items() if r == recipe]
    if folder is None or not names:
        return None, None
    key, problem = recipe_key(recipe), None
    found = entry(folder, key)
    if found.complete:
        try:
            model = _load(found.weights, found.info, len(found.info["classes"]))
        except (OSError, ValueError) as exc:  # verified, yet unreadable: refused, not trained
            problem = f"it cannot be loaded: {str(exc).split(';')[0]}"
        else:
            if verbose:
                print(f"Loaded the source model from the shared cache {shown(found.weights)}")
            return SourceModel(model, found.weights, found.info), None
    expected = {n: recipe_key(r) for n, r in SOURCE_RECIPES.items()}
    return None, refusal(folder, names[0], recipe, key, expected, problem)
