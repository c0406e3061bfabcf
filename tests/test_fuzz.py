"""Property-based fuzzing (Hypothesis) of the kit's public entry points with odd types,
shapes, ranges and empty inputs.

The property is the catalogue's: every input either is refused in one line by the kit's
own check (type, value, fix; no chained traceback; raised in transferkit/) before any
work, or it is sane enough to train on.  Training itself is replaced by a sentinel, so
the examples cost milliseconds; ``derandomize=True`` keeps every run of the suite on the
same examples.  Where fuzzing found a silent or unclear failure, it became a catalogue
entry (docs/troubleshooting.md, C37-C54, C64).
"""
from __future__ import annotations

import math
import warnings
from pathlib import Path
from unittest import mock

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import transferkit as tk  # noqa: E402
from helpers import tiny_model  # noqa: E402

KIT = Path(tk.__file__).resolve().parent
FUZZ = settings(derandomize=True, deadline=None, max_examples=80, database=None,
                suppress_health_check=[HealthCheck.too_slow])


class Reached(Exception):
    """Training would have started."""


def assert_kit_error(exc):
    msg = str(exc)
    assert isinstance(exc, (ValueError, TypeError)), f"{type(exc).__name__}: {msg}"
    assert msg and "\n" not in msg, f"not one line: {msg!r}"
    assert exc.__cause__ is None and (exc.__context__ is None or exc.__suppress_context__)
    tb = exc.__traceback__
    while tb.tb_next is not None:
        tb = tb.tb_next
    origin = Path(tb.tb_frame.f_code.co_filename).resolve()
    assert KIT in origin.parents, f"raised in {origin}: {msg}"


FAULTS = ("none", "count", "shape", "dtype", "range", "special", "label count", "label kind",
          "label values", "anything")


@st.composite
def fit_data(draw):
    """Sane (x, y) with one fault injected (or none, or every parameter drawn freely)."""
    fault = draw(st.sampled_from(FAULTS))
    free = fault == "anything"
    pick = lambda name, sane, odd: draw(st.sampled_from(odd)) if free or fault == name else sane
    n = pick("count", 6, [0, 1, 2, 5])
    shape = pick("shape", (28, 28, 1), [(28, 28), (32, 32, 1), (28, 28, 3), (), (1, 28, 28, 1)])
    dtype = pick("dtype", "float32", ["float64", "float16", "uint8", "int64", "bool", "<U3",
                                      "object"])
    low, scale = pick("range", (0.0, 1.0), [(0.0, 0.0), (0.0, 1 / 255 ** 2), (0.0, 1 / 255),
                                            (-1.0, 2.0), (-1e-3, 1.0), (-50.0, 100.0),
                                            (0.0, 2.0), (0.0, 255.0), (0.5, 1e6)])
    special = pick("special", None, [math.nan, math.inf, -math.inf])
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 16)))
    x = low + scale * rng.random((n, *shape))
    if special is not None and x.size:
        x.flat[draw(st.integers(0, x.size - 1))] = special
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # NaN cast to an integer dtype
        x = x.astype(dtype)
    m = max(0, n + pick("label count", 0, [-1, 1]))
    values = np.arange(m) % 3 if fault != "label values" else np.array(
        draw(st.lists(st.integers(-1, 4), min_size=m, max_size=m)), dtype=np.int64)
    kind = pick("label kind", "int", ["float", "fraction", "str", "bool", "column", "one-hot"])
    y = {"int": lambda v: v.astype(np.int64), "float": lambda v: v.astype(np.float32),
         "fraction": lambda v: v + 0.5, "str": lambda v: v.astype(str),
         "bool": lambda v: v > 0, "column": lambda v: v.reshape(-1, 1),
         "one-hot": lambda v: np.eye(3, dtype=np.int64)[np.clip(v, 0, 2)]}[kind](values)
    return x, y


@pytest.fixture(scope="module")
def model():
    return tk.compile_model(tiny_model(3, name="fuzzed"))


@FUZZ
@given(xy=fit_data())
def test_fit_refuses_in_one_line_or_gets_sane_data(model, xy):
    x, y = xy
    with mock.patch.object(type(model), "fit", side_effect=Reached):
        try:
            tk.fit(model, (x, y), epochs=1)
        except Reached:
            hypothesis.event("reached training")
        except Exception as exc:  # noqa: BLE001 -- the property is about any exception
            assert_kit_error(exc)
            return
    # it reached training: the data must be what the kit's models are built for
    assert x.shape[1:] == (28, 28, 1) and x.dtype.kind in "fiu" and len(x) == len(y) > 0
    assert np.isfinite(x).all() and x.min() >= 0 and 1.01 / 255 < x.max() <= 2.0
    assert y.ndim == 1 and y.dtype.kind in "iu" and 0 <= y.min() and y.max() < 3
    assert len(np.unique(y)) >= 2


ODD = st.one_of(st.none(), st.booleans(), st.integers(-3, 10 ** 6), st.floats(allow_nan=True),
                st.text(max_size=4), st.lists(st.integers(0, 3), max_size=3),
                st.tuples(st.integers(-1, 40), st.integers(-1, 40)))


@FUZZ
@given(k=ODD, seed=ODD)
def test_few_shot_refuses_odd_k_and_seed_in_one_line(letters, k, seed):
    try:
        sample = tk.few_shot(letters, k, seed=seed)
    except Exception as exc:  # noqa: BLE001
        assert_kit_error(exc)
        return
    assert isinstance(k, int) and 1 <= k <= 12 and isinstance(seed, int) and seed >= 0
    assert sample.counts() == [k] * 3
    assert tk.few_shot(letters, k, seed=seed).x.tobytes() == sample.x.tobytes()  # repeatable


@FUZZ
@given(rate=ODD)
def test_compile_model_refuses_odd_learning_rates_in_one_line(model, rate):
    with mock.patch.object(type(model), "compile") as compile_:
        try:
            tk.compile_model(model, rate)
        except Exception as exc:  # noqa: BLE001
            assert_kit_error(exc)
            assert not compile_.called
            return
    assert not isinstance(rate, (str, bool)) and 0 < float(rate) <= 1


@FUZZ
@given(seeds=ODD)
def test_over_seeds_refuses_odd_seeds_in_one_line(seeds):
    try:
        summary = tk.over_seeds(lambda seed: 0.5, seeds=seeds)
    except Exception as exc:  # noqa: BLE001
        assert_kit_error(exc)
        return
    assert summary.mean == 0.5 and len(summary.values) == len(set(summary.seeds)) >= 1


@settings(derandomize=True, deadline=None, max_examples=25, database=None)
@given(shape=st.one_of(st.tuples(st.integers(-1, 9), st.integers(-1, 9), st.integers(-1, 3)),
                       ODD))
@example(shape=(9, 9, 2))
def test_build_model_refuses_odd_input_shapes_in_one_line(shape):
    try:
        model = tk.build_model(3, input_shape=shape, widths=(2, 2, 2))
    except Exception as exc:  # noqa: BLE001
        assert_kit_error(exc)
        return
    hypothesis.event("built")
    assert tuple(model.inputs[0].shape[1:]) == tuple(shape)


NAMES = st.lists(st.sampled_from(["scratch", "scratch", "fine_tune_top", "bogus"]), max_size=3)
SHOTS = st.lists(st.one_of(st.integers(1, 12), st.integers(-1, 14), st.floats(0, 3)),
                 max_size=3)


@FUZZ
@given(strategies=st.one_of(NAMES, ODD), shots=st.one_of(SHOTS, ODD),
       epochs=st.one_of(st.integers(0, 5), ODD))
@example(strategies=["scratch"], shots=[1, 2], epochs=2)  # a valid call, to show it passes
def test_sweep_refuses_odd_arguments_before_any_run(letters, strategies, shots, epochs):
    task = tk.Task("abc", letters, letters, letters)
    with mock.patch("transferkit.experiments.run_strategy", side_effect=Reached):
        try:
            tk.sweep(strategies, task, shots=shots, epochs=epochs)
        except Reached:
            hypothesis.event("reached")
            chosen = [tk.strategies.get_strategy(s) for s in strategies]
            assert chosen and all(not s.uses_source for s in chosen)  # no source weights given
            assert shots and all(isinstance(k, int) and 1 <= k <= 12 for k in shots)
            assert isinstance(epochs, int) and epochs >= max(s.min_epochs() for s in chosen)
        except Exception as exc:  # noqa: BLE001
            assert_kit_error(exc)


def test_build_model_refuses_images_too_small_for_its_blocks():
    """Found by the fuzzing above: Keras failed deep inside MaxPooling2D (catalogue C64)."""
    with pytest.raises(ValueError) as err:
        tk.build_model(3, input_shape=(2, 2, 1))
    assert_kit_error(err.value)
    assert "input_shape=(2, 2, 1) is too small for 3 blocks" in str(err.value)
    assert "at least 3x3 pixels" in str(err.value)


# --------------------------------------------------------------------------- issue 23
# The data-taking entries beyond fit, with the same faults, and models the kit did not
# build: every input is refused in one line by the kit, or it is sane and the result right.
def _foreign(softmax):
    import keras

    tk.set_seed(3)
    return keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(),
                             keras.layers.Dense(3, activation="softmax" if softmax else None)],
                            name="foreign_softmax" if softmax else "foreign")


@pytest.fixture(scope="module")
def models():
    """A kit model, a kit model whose weights went NaN (training diverged), and two foreign
    classifiers (logits, softmax); the entries below only read them."""
    diverged = tiny_model(3, name="diverged")
    kernel = diverged.get_layer("head").kernel
    kernel.assign(np.full(kernel.shape, np.nan, dtype="float32"))
    out = {"kit": tiny_model(3, name="kit"), "diverged": diverged,
           "foreign": _foreign(False), "foreign softmax": _foreign(True)}
    return out


def _sane_images(x, at_least=1):
    assert x.shape[1:] == (28, 28, 1) and x.dtype.kind in "fiu" and len(x) >= at_least
    assert np.isfinite(x).all() and x.min() >= 0 and 1.01 / 255 < x.max() <= 2.0


def _sane_labels(x, y):
    assert y.ndim == 1 and y.dtype.kind in "iu" and len(y) == len(x)
    assert 0 <= y.min() and y.max() < 3


# entries that read a model's structure: a model the kit did not build is refused there
KIT_ONLY = {"extract_features", "adapt_batchnorm", "feature_maps"}
IMAGE_ENTRIES = {
    "predict": lambda m, x: tk.predict(m, x),
    "extract_features": lambda m, x: tk.extract_features(m, x),
    "adapt_batchnorm": lambda m, x: tk.adapt_batchnorm(m, x),
    "teacher_logits": lambda m, x: tk.teacher_logits(m, x),
    "feature_maps": lambda m, x: tk.feature_maps(m, x[:1]),
}
XY_ENTRIES = {
    "evaluate": lambda m, xy: tk.evaluate(m, xy),
    "class_report": lambda m, xy: tk.class_report(m, xy),
    "worst_mistakes": lambda m, xy: tk.worst_mistakes(m, xy, n=1),
}


def _finite_result(result):
    """No NaN reaches the learner as a number: scores, probabilities, features, logits."""
    values = [getattr(result, k) for k in ("accuracy", "f1", "probabilities", "confidence",
                                           "loss", "recall") if hasattr(result, k)]
    values = values or ([result] if isinstance(result, np.ndarray) else [])
    for v in values:
        assert np.isfinite(np.asarray(v, dtype=float)).all(), f"a non-finite result: {v!r}"


@FUZZ
@given(xy=fit_data(), entry=st.sampled_from(sorted(IMAGE_ENTRIES)),
       which=st.sampled_from(["kit", "kit", "diverged", "foreign", "foreign softmax"]))
def test_image_entries_refuse_in_one_line_or_give_a_finite_right_result(models, xy, entry,
                                                                        which):
    x, _ = xy
    model = models[which]
    if entry == "adapt_batchnorm" and which == "kit":
        model = tiny_model(3, name="adapted")  # it changes the model
    try:
        result = IMAGE_ENTRIES[entry](model, x)
    except Exception as exc:  # noqa: BLE001
        assert_kit_error(exc)
        return
    hypothesis.event(f"{entry} returned")
    _sane_images(x, at_least=2 if entry == "adapt_batchnorm" else 1)
    assert not (which.startswith("foreign") and entry in KIT_ONLY), f"{entry} took {which}"
    # its head is NaN: its outputs are (its features, below the head, are not)
    assert which != "diverged" or entry not in ("predict", "teacher_logits"), entry
    assert not (which == "foreign softmax" and entry == "teacher_logits")
    if entry != "adapt_batchnorm":
        _finite_result(result)


@FUZZ
@given(xy=fit_data(), entry=st.sampled_from(sorted(XY_ENTRIES)),
       which=st.sampled_from(["kit", "kit", "diverged", "foreign", "foreign softmax"]))
def test_scoring_entries_refuse_in_one_line_or_score_right(models, xy, entry, which):
    x, y = xy
    model = models[which]
    try:
        result = XY_ENTRIES[entry](model, (x, y))
    except Exception as exc:  # noqa: BLE001
        assert_kit_error(exc)
        return
    hypothesis.event(f"{entry} returned")
    _sane_images(x)
    _sane_labels(x, y)
    assert which != "diverged", f"{entry} scored a model whose outputs are NaN"
    _finite_result(result)
    if entry == "evaluate":  # any compatible classifier: the right accuracy
        import keras

        pred = keras.ops.convert_to_numpy(model(x.astype("float32"), training=False)).argmax(1)
        assert result.accuracy == pytest.approx(np.mean(pred == y))


@FUZZ
@given(xy=fit_data(), names=st.sampled_from([("A", "B", "C"), ("A", "B"), (), ("A",) * 5]))
def test_datasets_hold_only_what_the_kit_reads(letters, xy, names):
    """tk.Dataset when it is made, and few_shot / shift on one changed afterwards."""
    import copy

    x, y = xy
    try:
        made = tk.Dataset(x, y, names, "fuzzed")
    except Exception as exc:  # noqa: BLE001
        assert_kit_error(exc)
    else:
        hypothesis.event("Dataset made")
        assert made.x.dtype.kind in "fiu" and made.y.dtype.kind in "iu" and made.y.ndim == 1
        if made.x.size:
            assert np.isfinite(made.x).all() and 0 <= made.x.min() and made.x.max() <= 2.0
        if names and len(made.y):
            assert made.y.min() >= 0 and made.y.max() < len(names)
    changed = copy.copy(letters)  # a learner's `train.x = ...`, `train.y = ...`
    changed.x, changed.y = x, y
    for name, call in (("few_shot", lambda: tk.few_shot(changed, 1)),
                       ("shift", lambda: tk.shift(changed, "inverted"))):
        try:
            out = call()
        except Exception as exc:  # noqa: BLE001
            assert_kit_error(exc)
            continue
        assert np.isfinite(out.x).all() and out.y.dtype.kind in "iu"
        assert out.counts() == [1, 1, 1] if name == "few_shot" else len(out) == len(y)
        assert not len(out) or (0 <= out.y.min() and out.y.max() < 3)
