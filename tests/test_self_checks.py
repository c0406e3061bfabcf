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
