"""Knowledge transfer (knowledge.py): the distillation loss and trainer, L2-SP."""
from __future__ import annotations

import math

import keras
import numpy as np
import pytest

import transferkit as tk
from helpers import snapshot, all_equal, tiny_model


def _loss(temperature, alpha, labels, teacher, student):
    y_true = tk.pack_targets(np.asarray(labels), np.asarray(teacher, np.float32))
    fn = tk.DistillationLoss(temperature, alpha)
    return float(keras.ops.convert_to_numpy(fn(y_true, np.asarray(student, np.float32))))


def test_alpha_one_is_plain_cross_entropy():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, size=16)
    teacher, student = rng.normal(size=(16, 4)), rng.normal(size=(16, 4)) * 3
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(labels, student)
    assert _loss(3.0, 1.0, labels, teacher, student) == pytest.approx(
        float(keras.ops.convert_to_numpy(ce)), rel=1e-5)


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_soft_term_is_hand_computed_kl(temperature):
    # teacher logits (0, ln 3), student (0, 0); at T=1: p_teacher = (1/4, 3/4), p_student = (1/2, 1/2)
    teacher, student = [[0.0, math.log(3.0)]], [[0.0, 0.0]]
    t = temperature
    a, b = 1.0, 3.0 ** (1 / t)                     # softmax(teacher / T), unnormalised
    p = (a / (a + b), b / (a + b))
    kl = p[0] * math.log(p[0] / 0.5) + p[1] * math.log(p[1] / 0.5)
    assert _loss(t, 0.0, [1], teacher, student) == pytest.approx(t * t * kl, rel=1e-5)
    # alpha mixes the two: hard CE here is ln 2
    assert _loss(t, 0.25, [1], teacher, student) == pytest.approx(
        0.25 * math.log(2) + 0.75 * t * t * kl, rel=1e-5)


def test_unlabelled_examples_carry_only_the_soft_term():
    teacher, student = [[2.0, 0.0, -1.0]], [[0.5, 0.1, 0.0]]
    assert _loss(2.0, 1.0, [tk.knowledge.NO_LABEL], teacher, student) == 0.0
    assert _loss(2.0, 0.5, [-1], teacher, student) == pytest.approx(
        0.5 * _loss(2.0, 0.0, [-1], teacher, student), rel=1e-6)
    assert _loss(2.0, 0.0, [-1], teacher, teacher) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("temperature, alpha, match", [
    (0, 0.5, "temperature=0 is out of range; use a positive number"),
    (-2.0, 0.5, "temperature=-2.0"),
    (float("nan"), 0.5, "temperature=nan"),
    ("hot", 0.5, "temperature='hot'"),
    (2.0, 1.5, r"alpha=1.5 is out of range; use a number from 0 to 1"),
    (2.0, -0.1, r"alpha=-0.1"),
    (2.0, None, r"alpha=None"),
])
def test_bad_temperature_or_alpha(temperature, alpha, match):
    with pytest.raises(ValueError, match=match):
        tk.DistillationLoss(temperature, alpha)


def test_pack_targets_layout_and_errors():
    packed = tk.pack_targets(np.array([2, -1]), np.zeros((2, 3)))
    np.testing.assert_array_equal(packed[:, :2], [[2, 1], [-1, 0]])
    assert packed.shape == (2, 5) and packed.dtype == np.float32
    with pytest.raises(ValueError, match=r"label 3 but the logits have 3 classes \(labels 0..2"):
        tk.pack_targets(np.array([3]), np.zeros((1, 3)))
    with pytest.raises(ValueError, match="do not match"):
        tk.pack_targets(np.array([0, 1]), np.zeros((3, 3)))


def test_unlabelled_rest_drops_the_labelled_examples(letters):
    labelled = tk.few_shot(letters, 4, seed=0)
    rest = tk.unlabelled_rest(letters, labelled)
    assert isinstance(rest, np.ndarray) and rest.shape == (len(letters) - 12, 28, 28, 1)
    seen = {img.tobytes() for img in labelled.x}
    assert not any(img.tobytes() in seen for img in rest)


def test_distill_trains_student_and_leaves_teacher_alone(trained, letters, letters_val):
    teacher = trained.model
    teacher_before = snapshot(teacher)
    student = tiny_model(name="student")
    labelled = tk.few_shot(letters, 3, seed=0)
    history = tk.distill(student, teacher, labelled, unlabelled=tk.unlabelled_rest(letters, labelled),
                         val=letters_val, epochs=3, temperature=2.0, alpha=0.5,
                         learning_rate=1e-2, batch_size=8)
    assert history.epochs == 3
    assert history.metrics["loss"][-1] < history.metrics["loss"][0]
    assert np.isfinite(history.metrics["val_loss"]).all()
    assert all_equal(snapshot(teacher), teacher_before)
    scores = tk.evaluate(student, letters_val)  # an ordinary classifier afterwards
    assert 0.0 <= scores.accuracy <= 1.0


def test_distill_rejects_bad_arguments(trained, letters):
    student = tiny_model(name="student")
    with pytest.raises(ValueError, match="temperature=0"):
        tk.distill(student, trained.model, letters, temperature=0)
    with pytest.raises(ValueError, match="epochs=0"):
        tk.distill(student, trained.model, letters, epochs=0)
    with pytest.raises(ValueError, match="teacher has 3 outputs but student 5"):
        tk.distill(tiny_model(num_classes=5), trained.model, letters)
    with pytest.raises(ValueError, match="does not fit model"):
        tk.distill(student, trained.model, letters, unlabelled=np.zeros((4, 32, 32, 1)))


# ----------------------------------------------------------------------------- L2-SP
def test_l2sp_is_zero_at_the_source_and_grows_with_distance():
    model = tiny_model()
    count = tk.attach_l2sp(model, alpha=0.1)
    assert count == 6  # block1/2: conv kernel, BatchNorm gamma and beta; not the head
    assert model.get_layer("head").kernel.regularizer is None
    assert tk.l2sp_penalty(model) == 0.0
    kernel = model.get_layer("block2_conv").kernel
    source = kernel.numpy().copy()
    penalties = []
    for step in (0.01, 0.02, 0.04):
        kernel.assign(source + step)
        penalties.append(tk.l2sp_penalty(model))
    assert penalties[0] == pytest.approx(0.5 * 0.1 * source.size * 0.01 ** 2, rel=1e-3)
    assert penalties[1] == pytest.approx(4 * penalties[0], rel=1e-3)  # quadratic
    assert penalties[2] > penalties[1] > penalties[0] > 0


def test_l2sp_reaches_the_training_loss_only_for_trainable_weights():
    model = tiny_model()
    tk.attach_l2sp(model, alpha=0.1)
    kernel = model.get_layer("block1_conv").kernel
    kernel.assign(kernel.numpy() + 0.1)
    losses = [float(keras.ops.convert_to_numpy(v)) for v in model.losses]
    assert sum(losses) == pytest.approx(tk.l2sp_penalty(model), rel=1e-6) and sum(losses) > 0
    tk.freeze(model)  # frozen weights cannot move: Keras leaves their penalty out
    assert model.losses == []
    tk.knowledge.detach_l2sp(model)
    tk.unfreeze(model)
    assert tk.l2sp_penalty(model) == 0.0 and model.losses == []


def test_l2sp_keeps_fine_tuned_weights_closer_to_the_source(letters):
    changes = {}
    for alpha in (0.0, 10.0):
        model = tiny_model()
        before = tk.snapshot_weights(model)
        if alpha:
            tk.attach_l2sp(model, alpha)
        tk.compile_model(model, learning_rate=3e-2)
        tk.fit(model, letters, epochs=2, batch_size=8)
        changes[alpha] = tk.weight_change(before, model, by="layer")["block2_conv"]
    assert 0 < changes[10.0] < 0.7 * changes[0.0]


@pytest.mark.parametrize("alpha", [-1.0, float("inf"), "strong"])
def test_l2sp_rejects_bad_alpha(alpha):
    with pytest.raises(ValueError, match=r"alpha=.*non-negative"):
        tk.attach_l2sp(tiny_model(), alpha)
    with pytest.raises(ValueError, match=r"alpha=.*non-negative"):
        tk.knowledge.L2SP(np.zeros(3), alpha)
