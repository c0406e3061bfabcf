"""Exercise self-checks recompute what they check: fed a wrong answer they say so, fed the
solution they accept it. The cells are taken from the committed notebooks and run here."""
from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path
from types import SimpleNamespace

import nbformat
import numpy as np
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def _cells(name):
    return nbformat.read(NOTEBOOKS / name, as_version=4).cells


def _run(source, namespace):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(source, "<cell>", "exec"), namespace)
    return out.getvalue()


# ------------------------------------------------------------------ 03, exercise 2: the seed article
def _bug_hunt():
    cells = _cells("03_freezing.ipynb")
    setup = next(c.source for c in cells if "def article_cnn" in c.source)
    check = next(c.source for c in cells if "self-check" in c.metadata.get("tags", [])
                 and "transfer_problems" in c.source)
    solution = next(c.source for c in cells if "solution" in c.metadata.get("tags", [])
                    and "article_cnn" in c.source)
    solution = re.search(r"```python\n(.*?)```", solution, re.S).group(1)
    return setup, check, solution


ARTICLE = '''
weights_file = "source_model_weights.h5"          # bug 2

def transfer(source_model, num_classes):
    target_model = article_cnn(num_classes)
    source_model.trainable = False                 # bug 1: the wrong model
    for s, t in zip(source_model.layers, target_model.layers):
        t.set_weights(s.get_weights())             # bug 3: the head too (as load_weights does)
    target_model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return target_model
'''

NOT_COMPILED = '''
weights_file = "source.weights.h5"

def transfer(source_model, num_classes):
    target_model = article_cnn(num_classes)
    for s, t in zip(source_model.layers[:-1], target_model.layers[:-1]):
        t.set_weights(s.get_weights())
        t.trainable = False
    return target_model
'''


@pytest.fixture(scope="module")
def bug_hunt():
    import keras

    setup, check, solution = _bug_hunt()

    def answer(code):
        namespace = {"keras": keras, "np": np}
        _run(setup, namespace)
        _run(code, namespace)
        return _run(check, namespace)

    return SimpleNamespace(answer=answer, solution=solution)


def test_bug_hunt_accepts_the_solution(bug_hunt):
    assert bug_hunt.answer(bug_hunt.solution).startswith("Correct")


def test_bug_hunt_rejects_the_articles_own_code(bug_hunt):
    said = bug_hunt.answer(ARTICLE)
    assert said.startswith("Not quite")
    for problem in ("weights_file", "raised ValueError", "the head holds the source's head",
                    "freeze the target's layers", "the source model changed"):
        assert problem in said, (problem, said)


def test_bug_hunt_rejects_a_target_that_was_not_compiled(bug_hunt):
    said = bug_hunt.answer(NOT_COMPILED)
    assert said.startswith("Not quite") and "compiled?" in said


def test_bug_hunt_without_an_answer(bug_hunt):
    cells = _cells("03_freezing.ipynb")
    exercise = next(c.source for c in cells if "exercise" in c.metadata.get("tags", [])
                    and "def transfer" in c.source)
    assert bug_hunt.answer(exercise).startswith("Not answered yet")


# ------------------------------------------------------------------ 04: full fine-tuning accuracy
class _FakeKit:
    """The few tk calls 04's self-check makes; the recomputed recipe scores `accuracy`."""

    def __init__(self, accuracy):
        self.accuracy, self.fine_tune_options = accuracy, None

    def set_seed(self, seed):
        self.seed = seed

    def build_model(self, num_classes, name=None):
        return SimpleNamespace(name=name)

    def load_matching_weights(self, model, path):
        pass

    def fine_tune(self, model, train, val, **options):
        self.fine_tune_options = options

    def evaluate(self, model, test):
        return SimpleNamespace(accuracy=self.accuracy)


def _check_04(full_accuracy, recomputed=0.712):
    check = next(c.source for c in _cells("04_fine_tuning.ipynb")
                 if "self-check" in c.metadata.get("tags", []))
    kit = _FakeKit(recomputed)
    namespace = {"tk": kit, "full_accuracy": full_accuracy, "ft_scores": SimpleNamespace(accuracy=0.754),
                 "target": SimpleNamespace(num_classes=10, val=None, test=None), "train": None,
                 "source": SimpleNamespace(weights_path="w"), "repeat": 4}
    return _run(check, namespace), kit


@pytest.mark.parametrize("wrong", [0.5, 0.754, 0.0, 1.0])
def test_04_rejects_an_accuracy_that_is_not_the_recipes(wrong):
    said, kit = _check_04(wrong)
    assert said.startswith("Not quite"), said
    assert kit.fine_tune_options["unfreeze_top"] == 3 and kit.seed == 0


def test_04_accepts_the_recomputed_accuracy():
    said, _ = _check_04(0.712)
    assert said.startswith("Correct") and "not higher" in said


def test_04_without_an_answer_trains_nothing():
    said, kit = _check_04(None)
    assert said.startswith("Not answered yet") and kit.fine_tune_options is None


# ------------------------------------------------------------------ 08: clean + noisy training
class _FakeShiftKit:
    """The tk calls of 08's self-check; the recomputed recipe scores `accuracy`."""

    Dataset = staticmethod(lambda x, y, names, name="": SimpleNamespace(x=x, y=y, class_names=names))

    def __init__(self, accuracy, before=0.124):
        self.accuracy, self.before, self.trained_on = accuracy, before, None

    def shift(self, data, kind):
        assert kind == "noisy"
        return SimpleNamespace(x=data.x + 1, y=data.y, class_names=data.class_names)

    def run_strategy(self, strategy, data, val, num_classes, **settings):
        self.trained_on = (strategy, len(data.y), settings)
        return SimpleNamespace(model="recomputed")

    def evaluate(self, model, test):
        return SimpleNamespace(accuracy=self.accuracy if model == "recomputed" else self.before)


def _check_08(noisy_accuracy, recomputed=0.155):
    check = next(c.source for c in _cells("08_when_transfer_fails.ipynb")
                 if "self-check" in c.metadata.get("tags", []))
    kit = _FakeShiftKit(recomputed)
    train = SimpleNamespace(x=np.zeros(100), y=np.arange(100) % 10, class_names=tuple("0123456789"))
    namespace = {"tk": kit, "np": np, "noisy_accuracy": noisy_accuracy, "train": train,
                 "target": SimpleNamespace(val=None, test=train), "scratch": SimpleNamespace(model="clean"),
                 "settings": {"epochs": 12, "learning_rate": 1e-2, "seed": 0}}
    return _run(check, namespace), kit


@pytest.mark.parametrize("wrong", [0.99, 0.5, 0.124])
def test_08_rejects_an_accuracy_that_is_not_the_recipes(wrong):
    """The old check accepted any value above the clean-only model's accuracy (0.99 among them)."""
    said, kit = _check_08(wrong)
    assert said.startswith("Not quite"), said
    assert kit.trained_on == ("scratch", 200, {"epochs": 12, "learning_rate": 1e-2, "seed": 0})


def test_08_accepts_the_recomputed_accuracy():
    said, _ = _check_08(0.155)
    assert said.startswith("Correct") and "up from" in said


def test_08_without_an_answer_trains_nothing():
    said, kit = _check_08(None)
    assert said.startswith("Not answered yet") and kit.trained_on is None


# ------------------------------------------------------------------ 03, exercise 1: what trains
@pytest.mark.parametrize("frozen, answer, verdict", [
    (["block1", "block2"], "right", "Correct"),
    (["block1", "block2", "block3"], "right", "Not quite"),   # the old check accepted this one
    ([], "right", "Not quite"),
    (["block1", "block2"], 650, "Not quite"),
    (["block1", "block2"], None, "Not answered yet"),
])
def test_03_counts_trainable_parameters_of_the_asked_freezing(frozen, answer, verdict):
    import transferkit as tk

    check = next(c.source for c in _cells("03_freezing.ipynb")
                 if "self-check" in c.metadata.get("tags", []) and "exercise_model" in c.source)
    transferred_model = lambda: tk.build_model(10, name="target")   # counts need no source weights
    exercise_model = transferred_model()
    if frozen:
        tk.freeze(exercise_model, blocks=frozen)
    if answer == "right":
        answer = tk.param_summary(exercise_model).trainable
    namespace = {"tk": tk, "np": np, "transferred_model": transferred_model,
                 "exercise_model": exercise_model, "answer": answer}
    assert _run(check, namespace).startswith(verdict)


# ------------------------------------------------------------------ 11: a new image, from the saved file
@pytest.fixture(scope="module")
def kept_model(tmp_path_factory):
    """A tiny model saved as the notebook saves its kept model, and the image to classify."""
    import transferkit as tk

    tk.set_seed(0)
    model = tk.build_model(3, widths=(4, 8), name="kept", augmentation=tk.augmentation_layers())
    path = tk.save_model(model, tmp_path_factory.mktemp("kept") / "kept.keras")
    image = tk.data.glyph_dataset("ABC", 1, seed=5).x[0]
    said = tk.predict(model, image, class_names=("A", "B", "C"))
    return SimpleNamespace(path=path, image=image, name=said.names[0],
                           confidence=float(said.confidence[0]))


def _check_11(kept, predicted_class, confidence):
    import keras
    import transferkit as tk

    check = next(c.source for c in _cells("11_full_workflow.ipynb")
                 if "self-check" in c.metadata.get("tags", []))
    namespace = {"tk": tk, "keras": keras, "np": np, "path": kept.path, "new_image": kept.image,
                 "predicted_class": predicted_class, "confidence": confidence,
                 "target": SimpleNamespace(class_names=("A", "B", "C")),
                 "handwritten": SimpleNamespace(class_names=("A", "B", "C"), y=np.array([1]))}
    return _run(check, namespace)


def test_11_accepts_what_the_saved_model_says(kept_model):
    said = _check_11(kept_model, kept_model.name, kept_model.confidence)
    assert said.startswith("Correct") and repr(kept_model.name) in said


@pytest.mark.parametrize("wrong", ["class", "confidence", "both"])
def test_11_rejects_another_class_or_probability(kept_model, wrong):
    other = next(n for n in "ABC" if n != kept_model.name)
    name = other if wrong in ("class", "both") else kept_model.name
    confidence = (kept_model.confidence if wrong == "class" else 1.0 - kept_model.confidence
                  if wrong == "confidence" else None)
    assert _check_11(kept_model, name, confidence).startswith("Not quite")


def test_11_without_an_answer(kept_model):
    assert _check_11(kept_model, None, None).startswith("Not answered yet")
