"""The record of a training run (per-epoch metrics, phases, time) and its Stop switch.

``RunHistory`` is what ``fit``, ``fine_tune``, ``run_strategy`` and ``distill`` return and
what the plots draw; ``HistoryRecorder`` is the Keras callback that fills it, ``StopSwitch``
the one that ends a run early (the lab's Stop button).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field

import keras

__all__ = ["METRICS", "HistoryRecorder", "RunHistory", "StopSwitch", "current_learning_rate"]

METRICS = ("loss", "accuracy", "val_loss", "val_accuracy")


@dataclass
class RunHistory:
    """Per-epoch metrics of one run, possibly made of several phases."""

    label: str = "run"
    metrics: dict = field(default_factory=lambda: {k: [] for k in METRICS})
    phases: list = field(default_factory=list)  # (name, first epoch index)
    seconds: float = 0.0
    interrupted: bool = False
    learning_rates: list = field(default_factory=list)  # the optimizer's rate after each epoch

    @property
    def epochs(self):
        return len(self.metrics["loss"])

    def add_epoch(self, logs, learning_rate=None):
        for key in METRICS:
            value = logs.get(key)
            self.metrics[key].append(float(value) if value is not None else float("nan"))
        self.learning_rates.append(float("nan") if learning_rate is None else float(learning_rate))

    def then(self, other, label=None):
        """This run followed by ``other`` (a later phase) as one history."""
        out = RunHistory(label or self.label)
        for key in METRICS:
            out.metrics[key] = self.metrics[key] + other.metrics[key]
        out.phases = (self.phases or [(self.label, 0)]) + [
            (name, start + self.epochs) for name, start in (other.phases or [(other.label, 0)])]
        out.seconds = self.seconds + other.seconds
        out.learning_rates = self._rates() + other._rates()
        return out

    def _rates(self):
        """One learning rate per epoch (NaN where none was recorded)."""
        rates = list(self.learning_rates)[:self.epochs]
        return rates + [float("nan")] * (self.epochs - len(rates))

    def last(self, key="val_accuracy"):
        return self.metrics[key][-1] if self.metrics[key] else float("nan")

    def __repr__(self):
        return (f"RunHistory({self.label!r}: {self.epochs} epochs, "
                f"loss {self.last('loss'):.3f}, val_accuracy {self.last('val_accuracy'):.3f})")


class HistoryRecorder(keras.callbacks.Callback):
    """Adds each epoch's logs to a ``RunHistory``."""

    def __init__(self, history):
        super().__init__()
        self.history_ = history

    def on_epoch_end(self, epoch, logs=None):
        self.history_.add_epoch(logs or {}, current_learning_rate(self.model))


def current_learning_rate(model):
    """The learning rate the model's optimizer is at now (a schedule's current value), or None."""
    rate = getattr(getattr(model, "optimizer", None), "learning_rate", None)
    return None if rate is None else float(keras.ops.convert_to_numpy(rate))


class StopSwitch(keras.callbacks.Callback):
    """A Stop button for ``fit``: after ``request()`` (from any thread) training ends at the
    end of the current batch, and the run's history says ``interrupted=True``.

    ``run_strategy`` then starts no further phase.  The model keeps the weights it reached.
    """

    def __init__(self):
        super().__init__()
        self._event = threading.Event()

    def request(self):
        self._event.set()

    @property
    def requested(self):
        return self._event.is_set()

    def on_train_batch_end(self, batch, logs=None):
        if self._event.is_set():
            self.model.stop_training = True
