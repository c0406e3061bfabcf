"""The API walk: every public ``tk.X`` that takes data, labels, a model or weights, called
with each kind of bad input a learner brings, must refuse it clearly or, where a model the
kit did not build is legitimately fine, give the right answer.

``WALK`` declares, as data, for each such callable: how to build valid arguments cheaply (a
tiny model, 36 letters) and what kind each bad-input parameter is.  Each kind has its
corruptions (``CORRUPTIONS``): a NaN pixel, uint8 0-255 images, float 0-255 images, a label
of -1, a label equal to the number of classes, float labels, a model the kit did not build
(``keras.Sequential`` Flatten + Dense, with logits or with a softmax), a weights file with
NaN in it, an HDF5 file that is not a weights file, a truncated weights file.  A case passes
when the kit raises ValueError or TypeError in ONE line that names the value and a fix,
raised inside transferkit/ with no chained traceback and before any training (Keras' ``fit``
is replaced by a sentinel); or, for a foreign model where ``foreign_ok`` says it is fine,
when the result equals a direct computation.  Anything else fails: a result returned, an
error from inside NumPy / Keras / h5py, a message of several lines, a run that trained.
``NO_DATA`` lists, with the reason, every public callable that takes none of these, and a
test checks that each public callable is in one of the two tables.
"""
from __future__ import annotations

import copy
import inspect
import re
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import h5py
import keras
import numpy as np
import pytest

import transferkit as tk
from helpers import TINY_WIDTHS, tiny_model

KIT = Path(tk.__file__).resolve().parent
CLASSES = 3  # the letters A, B, C of conftest.letters
TINY_RECIPE = dict(tk.SOURCE_RECIPE, train_per_class=5, epochs=1, widths=list(TINY_WIDTHS))
FIX = re.compile(r"(; |: )(.*\b)?(e\.g\.|pass|use|build|convert|divide|drop|delete|save|rename|"
                 r"call|load|choose|rescale|map|flatten|take|compute|train|publish|set|give|"
                 r"check|freeze|restart|compile|reshape)\b")


class Reached(Exception):
    """Keras' fit was called: training would have started."""


# --------------------------------------------------------------------------- the world
@pytest.fixture(scope="module")
def w(letters, letters_val, tmp_path_factory):
    """Cheap valid things, built once; models are built fresh for every call (w.kit())."""
    folder = tmp_path_factory.mktemp("walk")
    test = tk.data.glyph_dataset("ABC", 6, seed=2, name="abc test")
    tk.set_seed(1)
    tiny = tk.build_model(CLASSES, widths=TINY_WIDTHS, name="saved")
    weights = tk.save_weights(tiny, folder / "tiny.weights.h5")
    tk.set_seed(2)
    source = tk.save_weights(tk.build_model(CLASSES, name="source"),
                             folder / "source.weights.h5")  # the default widths: transferable
    broken = tk.build_model(CLASSES, widths=TINY_WIDTHS, name="diverged")
    kernel = broken.get_layer("block1_conv").kernel
    kernel.assign(np.where(np.arange(int(np.prod(kernel.shape))).reshape(kernel.shape) == 0,
                           np.nan, keras.ops.convert_to_numpy(kernel)).astype("float32"))
    nan_weights = folder / "diverged.weights.h5"
    broken.save_weights(nan_weights)  # Keras itself: tk.save_weights may refuse it one day
    random_h5 = folder / "random.weights.h5"
    with h5py.File(random_h5, "w") as f:
        f.create_dataset("data", data=np.arange(10.0))
    truncated = folder / "cut.weights.h5"
    data = Path(weights).read_bytes()
    truncated.write_bytes(data[: len(data) // 2])

    shared = {}

    def kit(name="kit", compiled=True):
        """A tiny kit model; the same one again while ``world.fresh`` is False (entries whose
        callable changes a model get a fresh one: building costs ~50 ms)."""
        if not world.fresh and (name, compiled) in shared:
            return shared[name, compiled]
        model = tiny_model(CLASSES, name=name)
        model = tk.compile_model(model) if compiled else model
        if not world.fresh:
            shared[name, compiled] = model
        return model

    def foreign(softmax=False, compiled=True):
        tk.set_seed(3)
        name = "foreign_softmax" if softmax else "foreign"
        model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(),
                                  keras.layers.Dense(CLASSES, activation="softmax" if softmax
                                                     else None)], name=name)
        if compiled:
            model.compile(optimizer="adam", metrics=["accuracy"],
                          loss=keras.losses.SparseCategoricalCrossentropy(from_logits=not softmax))
        return model

    world = SimpleNamespace(letters=letters, val=letters_val, test=test, folder=folder,
                            weights=weights, source=source, nan_weights=nan_weights,
                            random_h5=random_h5, truncated=truncated, kit=kit, foreign=foreign,
                            task=tk.Task("abc", letters, letters_val, test), fresh=True,
                            fit_calls=[])
    return world


# --------------------------------------------------------------------------- corruptions
def _nan(x):
    x = np.array(x, dtype=np.float32, copy=True)
    x.reshape(-1)[5] = np.nan
    return x


IMAGE_CORRUPTIONS = {
    "nan pixel": (_nan, "NaN"),
    "uint8 0-255": (lambda x: np.round(np.asarray(x) * 255).astype(np.uint8), "255"),
    "float 0-255": (lambda x: (np.asarray(x) * 255).astype(np.float32), "255"),
}


def _label(value):
    def corrupt(y):
        y = np.array(y, copy=True)
        y[0] = value
        return y
    return corrupt


LABEL_CORRUPTIONS = {
    "label -1": (_label(-1), "-1"),
    "label == classes": (_label(CLASSES), f"label {CLASSES}"),
    "float labels": (lambda y: np.asarray(y).astype(np.float32), "float32"),
}


def _mutated(dataset, x=None, y=None):
    """The Dataset as a learner may change it after it was made (``train.x = raw``)."""
    out = copy.copy(dataset)
    if x is not None:
        out.x = x
    if y is not None:
        out.y = y
    return out


def corruptions(kind):
    """{name: (make(valid value, w) -> bad value, needle(s) the message must hold)}."""
    if kind in ("images", "image"):
        return {n: (lambda v, w, f=f: f(v), needle) for n, (f, needle) in IMAGE_CORRUPTIONS.items()}
    if kind == "labels":
        return {n: (lambda v, w, f=f: f(v), needle) for n, (f, needle) in LABEL_CORRUPTIONS.items()}
    if kind == "features":
        return {"nan feature": (lambda v, w: _nan(v), "NaN")}
    if kind in ("dataset", "xy"):
        def on_images(f):
            return (lambda v, w: _mutated(v, x=f(v.x)) if kind == "dataset" else (f(v[0]), v[1]))

        def on_labels(f):
            return (lambda v, w: _mutated(v, y=f(v.y)) if kind == "dataset" else (v[0], f(v[1])))
        out = {n: (on_images(f), needle) for n, (f, needle) in IMAGE_CORRUPTIONS.items()}
        out.update({n: (on_labels(f), needle) for n, (f, needle) in LABEL_CORRUPTIONS.items()})
        return out
    if kind == "task":
        def split(part, f, images=True):
            def make(task, w):
                d = getattr(task, part)
                bad = _mutated(d, x=f(d.x)) if images else _mutated(d, y=f(d.y))
                out = copy.copy(task)
                setattr(out, part, bad)
                return out
            return make
        return {"train: nan pixel": (split("train", _nan), "NaN"),
                "train: uint8 0-255": (split("train", IMAGE_CORRUPTIONS["uint8 0-255"][0]), "255"),
                "train: label == classes": (split("train", _label(CLASSES), images=False),
                                            f"label {CLASSES}"),
                "test: nan pixel": (split("test", _nan), "NaN")}
    if kind in ("model", "models"):
        wrap = (lambda m: {"m": m}) if kind == "models" else (lambda m: m)
        return {"foreign": (lambda v, w: wrap(w.foreign()), ("'foreign'", "tk.build_model")),
                "foreign softmax": (lambda v, w: wrap(w.foreign(softmax=True)),
                                    ("softmax", "'foreign_softmax'", "tk.build_model"))}
    if kind == "weights":
        return {"nan weights": (lambda v, w: w.nan_weights, "NaN"),
                "random hdf5": (lambda v, w: w.random_h5, "not a Keras weights file"),
                "truncated": (lambda v, w: w.truncated, "truncated")}
    raise AssertionError(kind)


# --------------------------------------------------------------------------- the table
@dataclass
class Entry:
    """How to call one public callable with valid, cheap arguments (``build(w)`` -> kwargs),
    which of its parameters take data, labels, a model or weights (``params``: name -> kind),
    and, for a model the kit did not build that the callable handles legitimately,
    ``foreign_ok(w, result, kwargs)`` asserting the result equals a direct computation."""

    build: object
    params: dict
    foreign_ok: object = None
    trains: bool = False
    fresh: bool = False  # it changes the models it is given: build them anew for every call
    call: object = None  # how to call it (default: tk.<name>(**kwargs))
    labels_negative: int = -1
    xfail: dict = field(default_factory=dict)  # (param, corruption) -> reason


def _logits(model, x):
    return np.asarray(keras.ops.convert_to_numpy(model(x, training=False)), np.float64)


def _probabilities(model, x):
    out = _logits(model, x)
    if model.layers[-1].activation is keras.activations.softmax:
        return out
    e = np.exp(out - out.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _model_of(kwargs):
    return next(v for k, v in kwargs.items() if isinstance(v, keras.Model))


def ok_evaluate(w, scores, kwargs):
    model, (x, y) = kwargs["model"], kwargs["data"]
    assert scores.accuracy == pytest.approx(np.mean(_logits(model, x).argmax(1) == y))


def ok_class_report(w, report, kwargs):
    from sklearn.metrics import recall_score
    model, (x, y) = kwargs["model"], kwargs["data"]
    direct = recall_score(y, _logits(model, x).argmax(1), labels=range(CLASSES), average=None,
                          zero_division=0)
    np.testing.assert_allclose(report.recall, direct)


def ok_predict(w, predictions, kwargs):
    np.testing.assert_allclose(predictions.probabilities,
                               _probabilities(kwargs["model"], kwargs["images"]), rtol=1e-5)


def ok_worst_mistakes(w, mistakes, kwargs):
    model, (x, y) = kwargs["model"], kwargs["data"]
    loss = -np.log(_probabilities(model, x)[np.arange(len(y)), y])
    np.testing.assert_allclose(mistakes.loss, np.sort(loss)[::-1][:len(mistakes)], rtol=1e-4)


def ok_fit(w, history, kwargs):
    model, (vx, vy) = kwargs["model"], kwargs["val"]
    assert history.epochs == 1 and np.isfinite(history.metrics["loss"][0])
    p = _probabilities(model, vx)
    direct = float(np.mean(-np.log(p[np.arange(len(vy)), vy])))
    assert history.metrics["val_loss"][0] == pytest.approx(direct, rel=1e-4)


def ok_compile(w, model, kwargs):
    assert model.compiled and model.loss.get_config()["from_logits"]


def ok_save_model(w, path, kwargs):
    again = keras.saving.load_model(path)
    x = w.letters.x[:4]
    np.testing.assert_array_equal(_logits(again, x), _logits(kwargs["model"], x))


def ok_save_weights(w, path, kwargs):
    stored = tk.read_weights_file(path)
    model = kwargs["model"]
    for layer in model.layers:
        if layer.weights:
            for a, b in zip(stored[layer.name], layer.get_weights()):
                np.testing.assert_array_equal(a, b)


def ok_snapshot(w, snap, kwargs):
    model = kwargs["model"]
    assert set(snap) == {layer.name for layer in model.layers if layer.weights}
    dense = next(layer for layer in model.layers if isinstance(layer, keras.layers.Dense))
    np.testing.assert_array_equal(snap[dense.name][0], dense.get_weights()[0])


def ok_random_like(w, clone, kwargs):
    model = kwargs["model"]
    assert [v.shape for v in clone.weights] == [v.shape for v in model.weights]
    assert not np.array_equal(clone.get_weights()[0], model.get_weights()[0])


def ok_l2sp_penalty(w, penalty, kwargs):
    assert penalty == 0.0  # nothing anchored


def ok_teacher_logits(w, logits, kwargs):
    np.testing.assert_allclose(logits, _logits(kwargs["teacher"], kwargs["data"]), rtol=1e-5)


def ok_complexity(w, report, kwargs):
    assert report["m"].parameters == kwargs["models"]["m"].count_params()


def ok_shift(w, report, kwargs):
    model, test = kwargs["model"], kwargs["test"]
    assert report.clean == pytest.approx(np.mean(_logits(model, test.x).argmax(1) == test.y))


def ok_pretrained(w, model, kwargs):
    assert tuple(model.outputs[0].shape) == (None, CLASSES)
    assert not kwargs["backbone"].trainable and model.get_layer("head").trainable


def ok_distill(w, reached, kwargs):
    """Training started (the sentinel) on the targets a direct computation gives."""
    assert isinstance(reached, Reached)
    (x, targets), _ = w.fit_calls[-1]
    (tx, ty), ux = kwargs["train"], kwargs["unlabelled"]
    logits = _logits(kwargs["teacher"], np.concatenate([tx, ux]))
    np.testing.assert_allclose(targets[:, 2:], logits, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(targets[:, 0], np.concatenate([ty, np.full(len(ux), -1)]))


def call_lab(kwargs):
    """The lab never raises for bad settings: it refuses in the panel (``lab.message``)."""
    lab = tk.StrategyLab(SimpleNamespace(weights_path=kwargs["source"]), kwargs["task"],
                         strategies=("feature_extraction",), shots=2, epochs=2)
    row = lab.run()
    if row is None and lab.message.startswith("The run failed: Reached"):
        raise Reached  # training began: the lab's worker reports what stopped it in its panel
    if row is None:
        raise PanelRefusal(lab.message)
    return row


class PanelRefusal(Exception):
    """The lab's refusal, shown in its panel."""



WALK = {
    # data
    "Dataset": Entry(lambda w: dict(x=w.letters.x, y=w.letters.y, class_names=("A", "B", "C"),
                                    name="made"),
                     {"x": "images", "y": "labels"}),
    "Task": Entry(lambda w: dict(name="abc", train=w.letters, val=w.val, test=w.test),
                  {"train": "dataset", "test": "dataset"}),
    "few_shot": Entry(lambda w: dict(dataset=w.letters, k=2, seed=0), {"dataset": "dataset"}),
    "shift": Entry(lambda w: dict(dataset=w.letters, kind="inverted"), {"dataset": "dataset"}),
    "shift_task": Entry(lambda w: dict(task=w.task, kind="noisy"), {"task": "task"}),
    "show_images": Entry(lambda w: dict(dataset=w.letters, n=3), {"dataset": "dataset"}),
    "show_augmented": Entry(lambda w: dict(augmentation=tk.augmentation_layers(),
                                           images=w.letters.x[:2], copies=2),
                            {"images": "images"}),
    # training
    "compile_model": Entry(lambda w: dict(model=w.kit(compiled=False)), {"model": "model"},
                           foreign_ok=ok_compile, fresh=True),
    "fit": Entry(lambda w: dict(model=w.kit(), train=(w.letters.x, w.letters.y),
                                val=(w.val.x, w.val.y), epochs=1, batch_size=36),
                 {"model": "model", "train": "xy", "val": "xy"}, foreign_ok=ok_fit, trains=True,
                 fresh=True),
    "fine_tune": Entry(lambda w: dict(model=w.kit(), train=w.letters, val=w.val, head_epochs=1,
                                      finetune_epochs=1),
                       {"model": "model", "train": "dataset", "val": "dataset"}, trains=True,
                       fresh=True),
    "train_from_scratch": Entry(lambda w: dict(train=(w.letters.x, w.letters.y),
                                               val=(w.val.x, w.val.y), num_classes=CLASSES,
                                               epochs=1),
                                {"train": "xy", "val": "xy"}, trains=True),
    "run_strategy": Entry(lambda w: dict(strategy="feature_extraction", train=w.letters,
                                         val=w.val, num_classes=CLASSES, source_weights=w.source,
                                         epochs=1, bn_mode="adapt", unlabelled=w.val.x),
                          {"train": "dataset", "val": "dataset", "source_weights": "weights",
                           "unlabelled": "images"}, trains=True),
    "sweep": Entry(lambda w: dict(strategies=["feature_extraction"], task=w.task, shots=[1],
                                  epochs=1, source_weights=w.source),
                   {"task": "task", "source_weights": "weights"}, trains=True),
    "StrategyLab": Entry(lambda w: dict(task=w.task, source=w.source),
                         {"task": "task", "source": "weights"}, trains=True, call=call_lab),
    "distill": Entry(lambda w: dict(student=w.kit("student", compiled=False),
                                    teacher=w.kit("teacher"), train=(w.letters.x, w.letters.y),
                                    unlabelled=w.val.x, val=(w.val.x, w.val.y), epochs=1),
                     {"student": "model", "teacher": "model", "train": "xy",
                      "unlabelled": "images", "val": "xy"}, foreign_ok=ok_distill, trains=True,
                     fresh=True),
    # scoring and predicting
    "evaluate": Entry(lambda w: dict(model=w.kit(), data=(w.test.x, w.test.y)),
                      {"model": "model", "data": "xy"}, foreign_ok=ok_evaluate),
    "class_report": Entry(lambda w: dict(model=w.kit(), data=(w.test.x, w.test.y)),
                          {"model": "model", "data": "xy"}, foreign_ok=ok_class_report),
    "score_predictions": Entry(lambda w: dict(y_true=w.test.y, y_pred=w.test.y[::-1].copy(),
                                              class_names=("A", "B", "C")),
                               {"y_true": "labels", "y_pred": "labels"}),
    "predict": Entry(lambda w: dict(model=w.kit(), images=w.test.x),
                     {"model": "model", "images": "images"}, foreign_ok=ok_predict),
    "worst_mistakes": Entry(lambda w: dict(model=w.kit(), data=(w.test.x, w.test.y), n=3),
                            {"model": "model", "data": "xy"}, foreign_ok=ok_worst_mistakes),
    "complexity": Entry(lambda w: dict(models={"m": w.kit()}, data=w.test.x[:8], repeats=1),
                        {"models": "models", "data": "images"}, foreign_ok=ok_complexity),
    "accuracy_under_shift": Entry(lambda w: dict(model=w.kit(), test=w.test, kinds=("inverted",)),
                                  {"model": "model", "test": "dataset"}, foreign_ok=ok_shift),
    # weights and blocks
    "save_weights": Entry(lambda w: dict(model=w.kit(), path=w.folder / "out.weights.h5"),
                          {"model": "model"}, foreign_ok=ok_save_weights),
    "save_model": Entry(lambda w: dict(model=w.kit(), path=w.folder / "out.keras"),
                        {"model": "model"}, foreign_ok=ok_save_model),
    "read_weights_file": Entry(lambda w: dict(path=w.weights), {"path": "weights"}),
    "load_matching_weights": Entry(lambda w: dict(model=w.kit(), path=w.weights),
                                   {"model": "model", "path": "weights"}, fresh=True),
    "publish_source": Entry(lambda w: dict(model=(m := w.kit()), scores=tk.evaluate(m, w.test),
                                           recipe=TINY_RECIPE), {"model": "model"}),
    "freeze": Entry(lambda w: dict(model=w.kit(), blocks=["block1"]), {"model": "model"},
                    fresh=True),
    "unfreeze": Entry(lambda w: dict(model=w.kit(), top=1), {"model": "model"}, fresh=True),
    "param_summary": Entry(lambda w: dict(model=w.kit()), {"model": "model"}),
    "adapt_batchnorm": Entry(lambda w: dict(model=w.kit(), images=w.val.x),
                             {"model": "model", "images": "images"}, fresh=True),
    "feature_extractor": Entry(lambda w: dict(model=w.kit()), {"model": "model"}),
    "pretrained_target_model": Entry(lambda w: dict(backbone=tk.feature_extractor(w.kit()),
                                                    num_classes=CLASSES),
                                     {"backbone": "model"}, foreign_ok=ok_pretrained),
    "with_head": Entry(lambda w: dict(backbone_model=w.kit("tuned"), head_model=w.kit("src")),
                       {"backbone_model": "model", "head_model": "model"}),
    "forgetting": Entry(lambda w: dict(source_model=w.kit("src"), tuned_model=w.kit("tuned"),
                                       source_test=w.test),
                        {"source_model": "model", "tuned_model": "model",
                         "source_test": "dataset"}),
    # features, knowledge
    "extract_features": Entry(lambda w: dict(model=w.kit(), data=w.test.x),
                              {"model": "model", "data": "images"}),
    "linear_probe": Entry(lambda w: dict(model=w.kit(), train=w.letters, test=w.test),
                          {"model": "model", "train": "dataset", "test": "dataset"}),
    "embed": Entry(lambda w: dict(model=w.kit(), data=w.letters), {"model": "model",
                                                                     "data": "dataset"}),
    "feature_maps": Entry(lambda w: dict(model=w.kit(), image=w.test.x[0]),
                          {"model": "model", "image": "image"}),
    "first_layer_filters": Entry(lambda w: dict(model=w.kit()), {"model": "model"}),
    "snapshot_weights": Entry(lambda w: dict(model=w.kit()), {"model": "model"},
                              foreign_ok=ok_snapshot),
    "weight_change": Entry(lambda w: dict(before=w.kit(), after=w.kit()),
                           {"before": "model", "after": "model"}),
    "random_like": Entry(lambda w: dict(model=w.kit()), {"model": "model"},
                         foreign_ok=ok_random_like),
    "coral": Entry(lambda w: dict(source_features=np.random.default_rng(0).random((12, 4)),
                                  target_features=np.random.default_rng(1).random((12, 4))),
                   {"source_features": "features", "target_features": "features"}),
    "rank_sources": Entry(lambda w: dict(candidates={"a": w.kit("a")}, train=w.letters,
                                         val=w.val),
                          {"candidates": "models", "train": "dataset", "val": "dataset"}),
    "teacher_logits": Entry(lambda w: dict(teacher=w.kit(), data=w.test.x),
                            {"teacher": "model", "data": "images"}, foreign_ok=ok_teacher_logits),
    "unlabelled_rest": Entry(lambda w: dict(pool=w.letters.x, labelled=w.letters.x[:5]),
                             {"pool": "images", "labelled": "images"}),
    "pack_targets": Entry(lambda w: dict(labels=np.array([0, 1, 2, -1]),
                                         logits=np.random.default_rng(0).random((4, 3))),
                          {"labels": "labels", "logits": "features"}, labels_negative=-2),
    "attach_l2sp": Entry(lambda w: dict(model=w.kit()), {"model": "model"}, fresh=True),
    "l2sp_penalty": Entry(lambda w: dict(model=w.kit()), {"model": "model"},
                          foreign_ok=ok_l2sp_penalty),
}

# Every other public callable, and why it takes no data, labels, model or weights.
NO_DATA = {
    "describe_device": "no arguments", "device_report": "no arguments",
    "numerics_fingerprint": "no arguments", "cache_dir": "a flag",
    "set_seed": "a seed (tests/test_catalogue.py C26)",
    "handwritten_digits": "makes data", "source_task": "makes data (counts and a seed)",
    "target_task": "makes data (counts and a seed)",
    "build_model": "numbers and shapes (tests/test_fuzz.py)",
    "augmentation_layers": "numbers (C65)", "repeat_for": "numbers", "steps_per_epoch": "numbers",
    "over_seeds": "a function and seeds (C49, C50, tests/test_fuzz.py)",
    "recommend_strategy": "numbers and a word", "claim": "a statement and evidence",
    "source_model": "a recipe name; its cached files are checked on load (test_catalogue: "
                    "damaged caches) and by tk.cachecheck",
    "online_task": "a name (C29)", "load_online_dataset": "a name (C29)",
    "pretrained_backbone": "a name; its file is checked on load", "online_cache_dir": "a flag",
    "online_file_paths": "a name", "backbone_architecture": "a size",
    "try_online": "a function",
    "plot_confusion": "a tk.Scores", "plot_history": "RunHistory results",
    "plot_bars": "a dict of numbers", "plot_sweep": "sweep rows",
    "plot_embeddings": "tk.embed results", "plot_filters": "tk.first_layer_filters' result",
    "plot_feature_maps": "tk.feature_maps' result", "plot_weight_change": "tk.weight_change's",
    "plot_mistakes": "tk.worst_mistakes' result (C66)",
    "Scores": "a result record", "LiveCurves": "a callback (numbers and a label)",
    "DistillationLoss": "numbers (temperature, alpha)",
    "RecompileError": "an exception", "OfflineError": "an exception",
}


def public_callables():
    return sorted(name for name in tk.__all__ if callable(getattr(tk, name)))


def test_every_public_callable_is_walked_or_listed_as_taking_no_data():
    public = set(public_callables())
    missing = public - set(WALK) - set(NO_DATA)
    assert not missing, f"add these public callables to WALK or NO_DATA: {sorted(missing)}"
    assert not (set(WALK) | set(NO_DATA)) - public, "tables name callables that are not public"
    assert not set(WALK) & set(NO_DATA)


@pytest.mark.parametrize("name", sorted(n for n, e in WALK.items() if e.call is None))
def test_the_walk_names_real_parameters(name):
    signature = inspect.signature(getattr(tk, name))
    assert set(WALK[name].params) <= set(signature.parameters), name


def cases():
    for name, entry in sorted(WALK.items()):
        for param, kind in entry.params.items():
            for corruption in corruptions(kind):
                marks = ()
                if (param, corruption) in entry.xfail:
                    marks = pytest.mark.xfail(reason=entry.xfail[(param, corruption)],
                                              strict=True)
                yield pytest.param(name, param, corruption, id=f"{name}-{param}-{corruption}",
                                   marks=marks)


def _call(name, entry, kwargs):
    if entry.call is not None:
        return entry.call(kwargs)
    return getattr(tk, name)(**kwargs)


def _run(w, name, entry, kwargs, sentinel):
    if not sentinel:
        return _call(name, entry, kwargs)

    def reached(*args, **kw):
        w.fit_calls.append((args, kw))
        raise Reached

    with mock.patch.object(keras.Model, "fit", side_effect=reached):
        return _call(name, entry, kwargs)


def assert_refused(exc, needles):
    """The kit's clear refusal: ValueError / TypeError (or the lab's panel message), one line
    naming the value (any of ``needles``) and a fix, raised in transferkit/, no chain."""
    assert not isinstance(exc, Reached), "it trained on the bad input before refusing it"
    msg = str(exc)
    assert isinstance(exc, (ValueError, TypeError, PanelRefusal)), f"{type(exc).__name__}: {msg}"
    assert msg and "\n" not in msg, f"not one line: {msg!r}"
    needles = (needles,) if isinstance(needles, str) else needles
    assert any(n in msg for n in needles), f"none of {needles} in {msg!r}"
    assert FIX.search(msg), f"no fix named in {msg!r}"
    if isinstance(exc, PanelRefusal):
        return
    assert exc.__cause__ is None and (exc.__context__ is None or exc.__suppress_context__), msg
    tb = exc.__traceback__
    while tb.tb_next is not None:
        tb = tb.tb_next
    origin = Path(tb.tb_frame.f_code.co_filename).resolve()
    assert KIT in origin.parents, f"raised in {origin}: {msg}"


@pytest.mark.parametrize("name", sorted(WALK))
def test_valid_arguments_pass(w, name):
    """The table's valid arguments are accepted (training reached, for those that train)."""
    entry = WALK[name]
    w.fresh = entry.fresh
    kwargs = entry.build(w)
    try:
        _run(w, name, entry, kwargs, sentinel=entry.trains)
    except Reached:
        assert entry.trains
    except PanelRefusal as refusal:
        raise AssertionError(f"the lab refused valid settings: {refusal}") from None


@pytest.mark.parametrize("name, param, corruption", list(cases()))
def test_bad_input_is_refused_clearly_or_handled_right(w, name, param, corruption):
    entry = WALK[name]
    w.fresh = entry.fresh
    kwargs = entry.build(w)
    make, needles = corruptions(entry.params[param])[corruption]
    if corruption == "label -1" and entry.labels_negative != -1:
        make, needles = (lambda v, w: _label(entry.labels_negative)(v)), str(entry.labels_negative)
    kwargs[param] = make(kwargs[param], w)
    legit_foreign = entry.foreign_ok is not None and corruption == "foreign" or (
        entry.foreign_ok is not None and corruption == "foreign softmax"
        and name not in SOFTMAX_REFUSED)
    try:
        # a legitimate foreign model trains for real (fit: its loss is checked), but distill
        # only starts (the sentinel): its targets are checked
        result = _run(w, name, entry, kwargs, sentinel=not legit_foreign or name == "distill")
    except Reached as reached:
        if not (legit_foreign and name == "distill"):
            assert_refused(reached, needles)
        result = reached
    except Exception as exc:  # noqa: BLE001 -- the property is about any exception
        if legit_foreign:
            raise AssertionError(f"{name} refused a model it handles: {exc}") from None
        assert_refused(exc, needles)
        return
    assert legit_foreign, f"{name} returned {type(result).__name__} for {corruption} {param}"
    entry.foreign_ok(w, result, kwargs)


# a softmax output is refused where the kit reads the output as logits
SOFTMAX_REFUSED = {"compile_model", "teacher_logits", "distill"}
