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


# ------------------------------------------------------------------ the other self-checks
def _check(notebook, namespace, marker=""):
    """Run the self-check cell of ``notebook`` (the one mentioning ``marker``) in ``namespace``."""
    check = next(c.source for c in _cells(notebook)
                 if "self-check" in c.metadata.get("tags", []) and marker in c.source)
    return _run(check, namespace)


def _solution(notebook):
    cell = next(c.source for c in _cells(notebook) if "solution" in c.metadata.get("tags", []))
    return re.search(r"```python\n(.*?)```", cell, re.S).group(1)


def test_every_self_check_has_wrong_answer_tests_here():
    """Each notebook with a self-check cell is fed a wrong answer below (or above)."""
    tested = {"00", "01", "02", "03", "04", "05", "06", "07", "08", "09", "10", "11"}
    with_checks = {p.name[:2] for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")
                   if any("self-check" in c.metadata.get("tags", []) for c in _cells(p.name))}
    assert with_checks <= tested, f"self-checks without tests: {sorted(with_checks - tested)}"


# 00: a 3-shot set of the 10 digits, and its size
@pytest.fixture(scope="module")
def digits():
    import transferkit as tk

    return tk.data.glyph_dataset("0123456789", 4, seed=0, name="digits")


@pytest.mark.parametrize("k, answer, verdict", [
    (3, "len", "Correct"), (3, 31, "Not quite"), (2, "len", "Not quite"), (3, 3, "Not quite"),
    (None, None, "Not answered yet")])
def test_00_counts_a_three_shot_set(digits, k, answer, verdict):
    import transferkit as tk

    three_shot = tk.few_shot(digits, k=k, seed=7) if k else None
    answer = len(three_shot) if answer == "len" else answer
    said = _check("00_index.ipynb", {"tk": tk, "three_shot": three_shot, "answer": answer})
    assert said.startswith(verdict), said


def test_00_accepts_its_solution(digits):
    import transferkit as tk

    namespace = {"tk": tk, "target": SimpleNamespace(train=digits)}
    _run(_solution("00_index.ipynb"), namespace)
    assert _check("00_index.ipynb", namespace).startswith("Correct")


# 01: the letter recognised least often, recomputed from the confusion matrix
def _check_01(worst):
    confusion = np.array([[9, 1, 0], [4, 6, 0], [0, 2, 8]])   # B is the worst: 6 of 10
    namespace = {"np": np, "worst": worst, "scores": SimpleNamespace(confusion=confusion),
                 "task": SimpleNamespace(class_names=["A", "B", "C"])}
    return _run(_solution("01_source_training.ipynb"), dict(namespace)) if worst == "solution" \
        else _check("01_source_training.ipynb", namespace)


@pytest.mark.parametrize("worst, verdict", [
    ("B", "Correct: 'B', recognised 60%"), ("A", "Not quite: 'A' is recognised 90%"),
    ("Q", "Not quite: 'Q' is not one of the classes"), (None, "Not answered yet")])
def test_01_names_the_worst_letter(worst, verdict):
    said = _check_01(worst)
    assert said.startswith(verdict), said


def test_01_accepts_its_solution():
    confusion = np.array([[9, 1, 0], [4, 6, 0], [0, 2, 8]])
    namespace = {"np": np, "scores": SimpleNamespace(confusion=confusion),
                 "task": SimpleNamespace(class_names=["A", "B", "C"])}
    _run(_solution("01_source_training.ipynb"), namespace)
    assert namespace["worst"] == "B"
    assert _check("01_source_training.ipynb", namespace).startswith("Correct")


# 02: the report of loading the source into a 5-class model, recomputed
@pytest.fixture(scope="module")
def source_file(tmp_path_factory):
    import transferkit as tk

    tk.set_seed(0)
    path = tmp_path_factory.mktemp("source") / "source.weights.h5"
    return tk.save_weights(tk.build_model(26, name="source"), path)


@pytest.mark.parametrize("classes, verdict", [(5, "Correct"), (3, "Not quite"), (26, "Not quite")])
def test_02_recomputes_the_five_class_report(source_file, classes, verdict):
    """A 3-class model's report skips the head too (the old check accepted it)."""
    import transferkit as tk

    report = tk.load_matching_weights(tk.build_model(classes, name="answer"), source_file)
    namespace = {"tk": tk, "five_report": report,
                 "source": SimpleNamespace(weights_path=source_file)}
    said = _check("02_weight_loading.ipynb", namespace)
    assert said.startswith(verdict), said
    if verdict == "Correct":
        assert "6 backbone layers" in said and "64x26" in said


def test_02_accepts_its_solution_and_waits_for_an_answer(source_file):
    import transferkit as tk

    namespace = {"tk": tk, "source": SimpleNamespace(weights_path=source_file)}
    _run(_solution("02_weight_loading.ipynb"), namespace)
    assert _check("02_weight_loading.ipynb", namespace).startswith("Correct")
    assert _check("02_weight_loading.ipynb", {**namespace, "five_report": None}).startswith(
        "Not answered yet")


# 05: which of two lab runs is better, read from the lab's own results
def _lab(gradual=0.62, frozen=0.55):
    rows = [{"strategy": "from scratch", "shots": 10, "accuracy": 0.3}]
    if gradual is not None:
        rows.append({"strategy": "gradual unfreezing", "shots": 5, "accuracy": gradual})
    if frozen is not None:
        rows.append({"strategy": "feature extraction", "shots": 5, "accuracy": frozen})
    return SimpleNamespace(results=rows)


@pytest.mark.parametrize("gradual, frozen, better, verdict", [
    (0.62, 0.55, True, "Correct"), (0.62, 0.55, False, "Look again"),
    (0.50, 0.55, False, "Correct"), (0.50, 0.55, True, "Look again"),
    (0.62, 0.55, None, "Both runs are there"), (0.62, None, True, "Not answered yet"),
    (None, None, None, "Not answered yet")])
def test_05_compares_the_lab_runs(gradual, frozen, better, verdict):
    said = _check("05_strategy_lab.ipynb", {"lab": _lab(gradual, frozen), "better": better})
    assert said.startswith(verdict), said


def test_05_accepts_its_solution():
    lab = _lab(None, None)

    def run(strategy, shots):   # the lab's run, with the accuracies a real run would record
        title = strategy.replace("_", " ")
        accuracy = {"gradual unfreezing": 0.5, "feature extraction": 0.6}[title]
        lab.results.append({"strategy": title, "shots": shots, "accuracy": accuracy})

    lab.run = run
    namespace = {"lab": lab}
    _run(_solution("05_strategy_lab.ipynb"), namespace)
    assert namespace["better"] is False
    assert _check("05_strategy_lab.ipynb", namespace).startswith("Correct")


# 06: the 5-NN accuracy of the fine-tuned model's map, recomputed with tk.embed
@pytest.fixture(scope="module")
def embedding_case():
    import transferkit as tk
    from helpers import tiny_model

    sample = tk.data.glyph_dataset("ABC", 8, seed=2, name="sample")
    tuned = tiny_model(3, name="tuned")
    right = tk.embed(tuned, sample, method="pca").knn_accuracy
    return SimpleNamespace(tk=tk, sample=sample, tuned=tuned, right=right)


@pytest.mark.parametrize("answer, verdict", [
    ("right", "Correct"), ("off", "Not quite"), (1.0, "Not quite"), (None, "Not answered yet")])
def test_06_recomputes_the_knn_accuracy(embedding_case, answer, verdict):
    case = embedding_case
    answer = {"right": case.right, "off": case.right - 0.01}.get(answer, answer)
    namespace = {"tk": case.tk, "tuned": case.tuned, "sample": case.sample, "tuned_knn": answer,
                 "from_source": SimpleNamespace(knn_accuracy=0.5)}
    said = _check("06_feature_transfer.ipynb", namespace)
    assert said.startswith(verdict), said


def test_06_accepts_its_solution(embedding_case):
    case = embedding_case
    namespace = {"tk": case.tk, "tuned": case.tuned, "sample": case.sample,
                 "from_source": SimpleNamespace(knn_accuracy=0.5)}
    _run(_solution("06_feature_transfer.ipynb"), namespace)
    assert _check("06_feature_transfer.ipynb", namespace).startswith("Correct")


# 07: the L2-SP penalty after moving one kernel by +0.01
def _l2sp_case(move):
    import transferkit as tk
    from helpers import tiny_model

    exercise = tiny_model(3, name="exercise")
    tk.attach_l2sp(exercise, alpha=1.0)
    kernel = exercise.get_layer("block2_conv").kernel
    if move:
        kernel.assign(kernel.numpy() + move)
    return {"tk": tk, "np": np, "exercise": exercise, "kernel": kernel}


@pytest.mark.parametrize("move, answer, verdict", [
    (0.01, "penalty", "Correct"), (0.02, "penalty", "Not quite"),      # moved twice as far
    (0.0, "formula", "Not quite"),      # the formula's number without moving the kernel
    (0.01, 0.5, "Not quite"), (0.0, None, "Not answered yet")])
def test_07_recomputes_the_penalty(move, answer, verdict):
    import transferkit as tk

    namespace = _l2sp_case(move)
    if answer == "penalty":
        answer = tk.l2sp_penalty(namespace["exercise"])
    elif answer == "formula":
        answer = 0.5 * int(np.prod(namespace["kernel"].shape)) * 0.01 ** 2
    said = _check("07_knowledge_transfer.ipynb", {**namespace, "penalty": answer})
    assert said.startswith(verdict), said


def test_07_accepts_its_solution():
    namespace = _l2sp_case(0.0)
    _run(_solution("07_knowledge_transfer.ipynb"), namespace)
    assert _check("07_knowledge_transfer.ipynb", namespace).startswith("Correct")


# 09: Spearman's rho of the H-scores against the accuracies, recomputed
def _ranking_case():
    from scipy.stats import spearmanr

    names = ["letters", "shapes", "noise", "digits"]
    h = {"letters": 3.1, "shapes": 1.2, "noise": 0.4, "digits": 2.0}
    actual = {"letters": 0.8, "shapes": 0.5, "noise": 0.3, "digits": 0.6}
    ranking = SimpleNamespace(score=lambda name, kind: {"h_score": h}[kind][name])
    return {"spearmanr": spearmanr, "names": names, "actual": actual, "ranking": ranking,
            "rho": 0.4}


@pytest.mark.parametrize("answer, verdict", [
    ("right", "Correct"), ("reversed", "is not it"), (0.5, "is not it"), ("pair", "is not it"),
    (None, "Not answered yet")])
def test_09_recomputes_the_rank_correlation(answer, verdict):
    namespace = _ranking_case()
    names, actual, h = namespace["names"], namespace["actual"], namespace["ranking"].score
    scores = [h(n, "h_score") for n in names]
    spearmanr = namespace["spearmanr"]
    answer = {"right": spearmanr(scores, [actual[n] for n in names])[0],
              "reversed": spearmanr(scores, [actual[n] for n in names[::-1]])[0],
              "pair": spearmanr(scores, [actual[n] for n in names])[1]}.get(answer, answer)
    said = _check("09_evaluation_and_choosing.ipynb", {**namespace, "rho_h": answer})
    assert verdict in said.splitlines()[0], said
    assert (verdict == "Correct") == said.startswith("Correct")


def test_09_accepts_its_solution():
    namespace = _ranking_case()
    _run(_solution("09_evaluation_and_choosing.ipynb"), namespace)
    assert _check("09_evaluation_and_choosing.ipynb", namespace).startswith("Correct")


# 10: the trainable fraction of the adapted model, recomputed from its weights
def _adapted():
    import keras

    inputs = keras.Input((8,))
    backbone = keras.layers.Dense(16, name="backbone")
    backbone.trainable = False
    outputs = keras.layers.Dense(3, name="head")(backbone(inputs))
    return keras.Model(inputs, outputs)    # 144 weights, 51 of them trainable


@pytest.mark.parametrize("answer, verdict", [
    (51 / 195, "Right"), (1.0, "is not it"), (51 / 144, "is not it"), (None, "Not answered yet")])
def test_10_recomputes_the_trainable_fraction(answer, verdict):
    said = _check("10_pretrained_backbone.ipynb", {"np": np, "adapted": _adapted(),
                                                   "trainable_fraction": answer})
    assert verdict in said.splitlines()[0], said


def test_10_accepts_its_solution():
    namespace = {"np": np, "adapted": _adapted()}
    _run(_solution("10_pretrained_backbone.ipynb"), namespace)
    assert _check("10_pretrained_backbone.ipynb", namespace).startswith("Right")
