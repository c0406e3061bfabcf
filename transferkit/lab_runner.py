"""Running one lab run off the kernel's thread: the worker, Stop, Kernel -> Interrupt, progress.

A Run click trains in a worker thread, so the kernel keeps handling the panel's messages
(plot frames, progress, Stop).  ``Runner.claim`` makes sure one run at a time holds the
panel and ``release`` always frees it, whatever happened in between; ``stop`` ends a run
after its current batch; while a worker trains, SIGINT (Kernel -> Interrupt) presses Stop.
"""
from __future__ import annotations

import signal
import threading
import time

import keras

from .history import StopSwitch
from .curves import in_jupyter

__all__ = ["Progress", "Runner", "current_cell"]


def current_cell():
    """The execution count of the cell running now (None outside Jupyter)."""
    if not in_jupyter():
        return None
    return _ipython().execution_count


def _ipython():
    try:
        # optional: IPython is there only inside a kernel
        from IPython import get_ipython
    except ImportError:
        return None
    return get_ipython()


class Progress(keras.callbacks.Callback):
    """Epoch k of n, the phase, elapsed and estimated time left, after every epoch."""

    def __init__(self, show, phase_names, phase_epochs):
        super().__init__()
        self.show, self.names, self.total = show, list(phase_names), int(sum(phase_epochs))
        self.phase, self.done, self.started = -1, 0, time.monotonic()

    def on_train_begin(self, logs=None):
        self.phase = min(self.phase + 1, len(self.names) - 1)
        self._update()

    def on_epoch_end(self, epoch, logs=None):
        self.done += 1
        self._update()

    def _update(self):
        elapsed = time.monotonic() - self.started
        left = (f"about {elapsed / self.done * (self.total - self.done):.0f} s left"
                if self.done else "building the training step")
        self.show(self.done / max(1, self.total),
                  f"epoch {self.done} of {self.total} · phase {self.phase + 1} of "
                  f"{len(self.names)}: {self.names[self.phase]} · {elapsed:.1f} s elapsed · "
                  f"{left}")


class Runner:
    """Who holds the panel: ``claim`` (False if a run is in progress), ``release``, the
    worker thread, its Stop switch and the cell an interrupt ended."""

    def __init__(self):
        self.busy = False
        self.switch = None
        self.thread = None
        self.interrupted_cell = None
        self._lock = threading.Lock()

    def claim(self):
        """Hold the panel for a new run; False if another run holds it."""
        with self._lock:
            if self.busy:
                return False
            self.busy = True
            self.switch = StopSwitch()
            return True

    def release(self):
        self.busy = False

    def start(self, work, plan):
        """``work(plan)`` in a worker thread (the panel must be claimed)."""
        self._catch_interrupts()
        self.thread = threading.Thread(target=work, args=(plan,), daemon=True,
                                       name="strategy-lab-run")
        self.thread.start()
        return self.thread

    def wait(self, timeout=None):
        thread = self.thread
        if thread is not None:
            thread.join(timeout)
        return not self.busy

    def stop(self):
        """Ask the running run to end after its current batch; False if none runs."""
        if not self.busy or self.switch is None:
            return False
        self.switch.request()
        return True

    @property
    def stopped(self):
        return self.switch is not None and self.switch.requested

    def skip_this_cell(self):
        """True when the current cell was interrupted: its later runs must not start."""
        return self.interrupted_cell is not None and self.interrupted_cell == current_cell()

    def remember_interrupt(self):
        if threading.current_thread() is threading.main_thread():
            self.interrupted_cell = current_cell()

    def _catch_interrupts(self):
        """Kernel -> Interrupt sends SIGINT, which ipykernel ignores between messages: a
        button-started run would go on.  While one trains, SIGINT presses Stop instead."""
        if threading.current_thread() is not threading.main_thread():
            return
        kernel = getattr(_ipython(), "kernel", None)
        # inside a click's message handler ipykernel has swapped in a temporary handler and
        # restores `saved_sigint_handler` afterwards: chain to (and replace) that one
        restores = kernel is not None and hasattr(kernel, "saved_sigint_handler")
        previous = kernel.saved_sigint_handler if restores else signal.getsignal(signal.SIGINT)
        if getattr(previous, "strategy_lab_runner", None) is self:
            return

        def on_sigint(signum, frame):
            if self.busy and self.thread is not None and self.thread.is_alive():
                self.stop()
            elif callable(previous):
                previous(signum, frame)

        on_sigint.strategy_lab_runner = self
        signal.signal(signal.SIGINT, on_sigint)
        if restores:
            kernel.saved_sigint_handler = on_sigint
