"""What differs between Keras backends (TensorFlow, JAX, torch) and must not reach a learner.

The whole unit suite runs on each backend (see README, "Other backends"); these tests
pin down the known traps.  On JAX, training after a change of ``trainable`` without a
new ``compile`` raises inside Keras and leaves the model unusable even after compiling
again; TF and torch silently train the old set of weights.  The kit's guard must
refuse first, whichever way the model was trained, and leave the model usable.
"""
from __future__ import annotations

import numpy as np
import pytest

import transferkit as tk
from helpers import tiny_model, to_np


def _train_keras_way(model, data):
    model.fit(data.x, data.y, epochs=1, batch_size=12, verbose=0)


def _train_kit_way(model, data):
    tk.fit(model, data, epochs=1, batch_size=12)


@pytest.mark.parametrize("first_fit", [_train_kit_way, _train_keras_way],
                         ids=["after tk.fit", "after Keras' model.fit"])
@pytest.mark.parametrize("change", ["freeze", "unfreeze"])
def test_guard_refuses_before_keras_and_the_model_stays_usable(letters, first_fit, change):
    model = tiny_model(3, name="switch")
    if change == "unfreeze":
        tk.freeze(model)
    tk.compile_model(model, 1e-2)
    first_fit(model, letters)
    tk.freeze(model) if change == "freeze" else tk.unfreeze(model)
    before = {w.path: to_np(w) for w in model.weights}
    with pytest.raises(tk.RecompileError, match="compiled again.*tk.compile_model"):
        tk.fit(model, letters, epochs=1)
    assert all(np.array_equal(before[w.path], to_np(w)) for w in model.weights)  # untouched
    tk.compile_model(model, 1e-2)  # the fix the message names
    tk.fit(model, letters, epochs=1, batch_size=12)
    moved = {w.path for w in model.weights if not np.array_equal(before[w.path], to_np(w))}
    assert "head/kernel" in moved
    assert ("block1_conv/kernel" in moved) == (change == "unfreeze")


def test_no_false_alarm_when_trainable_is_unchanged_or_restored(letters):
    model = tk.compile_model(tiny_model(3, name="same"), 1e-2)
    _train_keras_way(model, letters)
    tk.fit(model, letters, epochs=1)  # nothing changed since Keras built the step
    tk.freeze(model)
    tk.unfreeze(model, train_batchnorm=True)  # back to the set the step was built for
    tk.fit(model, letters, epochs=1)

