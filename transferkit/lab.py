"""The strategy lab: an ipywidgets panel to run transfer strategies and compare them.

Pressing **Run** trains in a worker thread, so the kernel keeps handling the panel's
messages while the run trains: the plot (an ``ipywidgets.Image`` whose PNG is replaced,
which every widget frontend renders) and the progress bar update during the run, **Stop**
(or Kernel -> Interrupt) ends it after the current batch, and a click during a run is
refused with a message instead of queuing a second run.

The panel is also a plain Python object: ``lab.run(...)`` trains in the calling thread and
returns the new row (for notebook cells and tests), ``lab.start(...)`` is what Run does,
``lab.stop()`` what Stop does, ``lab.wait()`` waits for a started run.
"""
from __future__ import annotations

import html
import signal
import threading
import time
from types import SimpleNamespace

import keras

from .checks import check_choice, check_integer, check_number
from .data import few_shot, target_task
from .models import DEFAULT_WIDTHS
from .plots import LiveCurves, in_jupyter, run_color
from .strategies import (BN_MODES, HEAD_LR, STRATEGIES, check_bn_mode, get_strategy,
                         split_epochs)
from .evaluation import evaluate
from .experiments import run_strategy
from .history import StopSwitch
from .source import source_model
from .transfer import param_summary

__all__ = ["BUSY", "COLUMNS", "FRAME_INTERVAL", "NUMERIC", "PLOT", "SETTINGS", "StrategyLab",
           "lr_text"]

COLUMNS = ("strategy", "BatchNorm", "shots", "learning rate", "epochs", "seed", "test accuracy",
           "macro F1", "trainable params", "transferred", "seconds")
NUMERIC = {"run", "shots", "learning rate", "epochs", "seed", "test accuracy", "macro F1",
           "trainable params", "seconds"}
SETTINGS = ("strategy", "bn_mode", "shots", "learning_rate", "epochs", "seed")
FRAME_INTERVAL = 0.5          # seconds between plot frames, at least (and >= 10x a frame's cost)
# rendered size; the panel scales it to its width.  Legend under the axes: in a narrow panel
# (1024 px screen, file browser open) the text stays about 9 px high
PLOT = {"figsize": (8, 4.6), "dpi": 96, "legend": "below"}
BUSY = "A run is in progress: this click was ignored; press Stop to end the run first."


def lr_text(value):
    """A learning rate written as the panel's slider writes it: ``3e-3`` (not ``3e-03``)."""
    mantissa, exponent = f"{value:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def _current_cell():
    """The execution count of the cell running now (None outside Jupyter)."""
    if not in_jupyter():
        return None
    # optional: IPython is there only inside a kernel
    from IPython import get_ipython
    return get_ipython().execution_count


class _Progress(keras.callbacks.Callback):
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


class StrategyLab:
    """Widgets: strategy, BatchNorm mode, shots per class, learning rate (log), epochs, seed;
    Run, Stop,
    Clear; a progress bar; live curves of every run; a results table.

    ``results`` holds one dict per finished run; ``histories`` the curves drawn (run ``i``
    keeps colour ``tk.plots.run_color(i)`` in the plot and the table).
    """

    def __init__(self, source=None, task=None, strategies=tuple(STRATEGIES), shots=10,
                 learning_rate=HEAD_LR, epochs=10, seed=0, bn_mode="frozen"):
        # optional: ipywidgets is needed only for the panel
        import ipywidgets as w

        if source is None:
            source = source_model()
        self.source = source
        self.task = task or target_task()
        self.strategies = [get_strategy(s) for s in strategies]
        max_shots = min(self.task.train.counts())
        style = {"description_width": "110px"}
        self.strategy = w.ToggleButtons(options=[(s.title, s.key) for s in self.strategies],
                                        value=self.strategies[0].key, description="strategy",
                                        style={"button_width": "150px", **style})
        # a dropdown, not toggle buttons: the strategy stays the panel's one toggle row
        self.bn_mode = w.Dropdown(options=[(f"{key}: {text.split(' (')[0]}", key)
                                           for key, text in BN_MODES.items()],
                                  value=check_bn_mode(bn_mode), description="BatchNorm",
                                  style=style, layout=w.Layout(width="560px"))
        self.bn_mode.add_class("tk-lab-bn-mode")
        self.shots = w.IntSlider(value=min(shots, max_shots), min=1, max=max_shots,
                                 description="shots / class", style=style)
        # readout ".0e" shows 3e-3; the table writes the same (lr_text)
        self.learning_rate = w.FloatLogSlider(value=learning_rate, base=10, min=-5, max=-0.5,
                                              step=0.25, readout_format=".0e",
                                              description="learning rate", style=style)
        self.epochs = w.IntSlider(value=epochs, min=2, max=40, description="epochs", style=style)
        self.seed = w.BoundedIntText(value=seed, min=0, max=9999, description="seed",
                                     style=style, layout=w.Layout(width="200px"))
        self.run_button = w.Button(description="Run", button_style="primary", icon="play")
        self.stop_button = w.Button(description="Stop", button_style="warning", icon="stop",
                                    disabled=True)
        self.clear_button = w.Button(description="Clear", icon="trash")
        self.sort = w.Dropdown(options=[("run order", "run"),
                                        ("test accuracy, best first", "accuracy")],
                               value="run", description="sort table by", style=style)
        for button, name in ((self.run_button, "run"), (self.stop_button, "stop"),
                             (self.clear_button, "clear")):
            button.add_class(f"tk-lab-{name}")
        self.progress = w.FloatProgress(value=0, min=0, max=1, layout=w.Layout(width="220px"))
        self.progress_text = w.HTML()
        self.progress.add_class("tk-lab-progress")
        self.progress_text.add_class("tk-lab-progress-text")
        self.status = w.HTML()
        self.status.add_class("tk-lab-status")
        self.plot = w.Image(format="png", layout=w.Layout(width="100%", height="auto"))
        self.plot.add_class("tk-lab-plot")
        self.table = w.HTML()
        self.table.add_class("tk-lab-results")
        self.run_button.on_click(self._on_run_click)
        self.stop_button.on_click(lambda _: self.stop())
        self.clear_button.on_click(lambda _: self.clear())
        self.sort.observe(lambda _: self._render_table(), "value")
        self.strategy.observe(self._epochs_floor, "value")
        self.results, self.histories = [], []
        self.curves = None
        self.last_model = None      # the model of the latest run, also a stopped one
        self.message = ""
        self.frames = 0             # plot frames sent to the panel
        self.ignored_clicks = 0     # Run clicks refused because a run was in progress
        self._busy = False
        self._lock = threading.Lock()
        self._thread = self._switch = None
        self._interrupted_cell = None
        controls = w.VBox([self.strategy, self.bn_mode,
                           w.HBox([self.shots, self.learning_rate]),
                           w.HBox([self.epochs, self.seed]),
                           w.HBox([self.run_button, self.stop_button, self.clear_button,
                                   self.sort]),
                           w.HBox([self.progress, self.progress_text]), self.status])
        self.widget = w.VBox([controls, self.plot, self.table],
                             layout=w.Layout(width="100%"))
        self.widget.add_class("tk-lab")
        self._epochs_floor()
        self._render_table()
        self._redraw()

    def _ipython_display_(self):
        # optional: IPython is there only inside a kernel
        from IPython.display import display
        display(self.widget)

    @property
    def busy(self):
        """True while a run trains."""
        return self._busy

    # -- what the buttons do -----------------------------------------------------------
    def run(self, **settings):
        """One run with the panel's settings (``settings`` override and update them), in
        this thread.  Returns the new result row, or None when the run did not happen or
        did not finish (the reason is shown in the panel); never raises for bad settings.
        """
        if self._interrupted_cell is not None and self._interrupted_cell == _current_cell():
            self._say("Skipped: this cell was interrupted, so its remaining runs do not "
                      "start; run the cell again to train them.", "error")
            return None
        plan = self._begin(settings)
        return None if plan is None else self._train(plan)

    def start(self, **settings):
        """What Run does: ``run(**settings)`` in a worker thread, so the panel keeps
        answering (plot, progress, Stop).  Returns the thread, or None if nothing started."""
        plan = self._begin(settings)
        if plan is None:
            return None
        self._catch_interrupts()
        self._thread = threading.Thread(target=self._train, args=(plan,), daemon=True,
                                        name="strategy-lab-run")
        self._thread.start()
        return self._thread

    def wait(self, timeout=None):
        """Wait for a run started with ``start()`` or Run; True when no run is left."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return not self._busy

    def stop(self):
        """What Stop does: end the current run after its current batch.  True if one was
        running.  Earlier results stay; the stopped run is not added."""
        switch = self._switch
        if not self._busy or switch is None:
            self._say("No run in progress: nothing to stop.")
            return False
        switch.request()
        self._say("Stopping after the current batch ...")
        return True

    def clear(self):
        """Forget all runs: empty table and plot."""
        if self._busy:
            self._say("A run is in progress: press Stop first, then Clear.", "error")
            return
        self.results.clear()
        self.histories.clear()
        self._render_table()
        self._redraw()
        self._say("Cleared.")

    def _on_run_click(self, _button):
        if self._busy:       # a second click (or a double-click) during a run
            self.ignored_clicks += 1
            self._say(BUSY, "error")
            return
        self.start()

    # -- a run ---------------------------------------------------------------------------
    def _begin(self, settings):
        """Check the settings and claim the panel; the run's plan, or None (and why)."""
        with self._lock:
            if self._busy:
                self._say(BUSY.replace("this click", "this request"), "error")
                return None
            try:
                for name in settings:
                    check_choice(name, "setting", SETTINGS, described=True)
                for name in sorted(settings, key=SETTINGS.index):  # strategy first: it
                    self._set(name, settings[name])                 # sets the fewest epochs
                strategy = get_strategy(self.strategy.value)
                shots, seed = int(self.shots.value), int(self.seed.value)
                train = few_shot(self.task.train, shots, seed)
            except (ValueError, TypeError) as error:
                self._say(str(error), "error")
                return None
            self._busy = True
        epochs = int(self.epochs.value)
        phases = strategy.phases([f"block{i}" for i in range(1, len(DEFAULT_WIDTHS) + 1)])
        per_phase = split_epochs(phases, epochs)
        plan = SimpleNamespace(strategy=strategy, train=train, shots=shots, seed=seed,
                               bn_mode=self.bn_mode.value,
                               epochs=epochs, learning_rate=float(self.learning_rate.value),
                               label=f"{len(self.histories) + 1} · {strategy.title}, "
                                     f"{shots} shots, lr {lr_text(self.learning_rate.value)}",
                               started=time.perf_counter())
        self._switch = StopSwitch()
        self.curves = LiveCurves(plan.label, previous=list(self.histories),
                                 epochs=sum(per_phase), min_interval=FRAME_INTERVAL,
                                 on_frame=self._show_frame, **PLOT)
        self._progress = _Progress(self._show_progress, [p.name for p in phases], per_phase)
        self.run_button.disabled, self.stop_button.disabled = True, False
        self.progress.bar_style = "info"
        self._show_progress(0.0, f"phase 1 of {len(phases)}: {phases[0].name} · starting")
        self._say(f"Training: {strategy.title}, {shots} shots per class, {epochs} epochs ...")
        return plan

    def _train(self, plan):
        """Carry out ``plan``; the new row or None.  Always frees the panel."""
        try:
            return self._train_and_record(plan)
        finally:
            self._busy = False
            self.run_button.disabled, self.stop_button.disabled = False, True

    def _train_and_record(self, plan):
        try:
            result = run_strategy(plan.strategy, plan.train, self.task.val,
                                  self.task.num_classes, source_weights=self.source.weights_path,
                                  epochs=plan.epochs, learning_rate=plan.learning_rate,
                                  seed=plan.seed, bn_mode=plan.bn_mode,
                                  callbacks=[self.curves, self._progress, self._switch])
            self.last_model = result.model
            if result.history.interrupted:
                return self._not_added(result.history.epochs)
            scores = evaluate(result.model, self.task.test)
        except (ValueError, TypeError, OSError) as error:  # OSError: e.g. a deleted weights file
            return self._failed(str(error))
        except KeyboardInterrupt:
            return self._not_added(self.curves.current.epochs, interrupt=True)
        except Exception as error:
            if threading.current_thread() is threading.main_thread():
                self._failed(f"The run failed: {type(error).__name__}: {error}")
                raise
            # a worker thread has nobody to raise to: the panel says it
            return self._failed(f"The run failed: {type(error).__name__}: {error}")
        result.history.label = plan.label
        self.histories.append(result.history)
        # scratch trains its BatchNorm layers whatever the menu says: the table says so
        bn = plan.bn_mode if plan.strategy.uses_source else "train (scratch)"
        row = {"strategy": plan.strategy.title, "bn_mode": bn, "shots": plan.shots,
               "learning_rate": plan.learning_rate, "epochs": plan.epochs, "seed": plan.seed,
               "accuracy": scores.accuracy, "macro_f1": scores.f1,
               "trainable_params": param_summary(result.model).trainable,
               "transferred": _transferred(result.transfer),
               "seconds": time.perf_counter() - plan.started}
        self.results.append(row)
        self._render_table()
        self.curves.final_frame(self.histories)
        self._show_progress(1.0, f"done: {plan.epochs} epochs in {row['seconds']:.1f} s",
                            "success")
        self._say(f"Done: {plan.strategy.title}, test accuracy {scores.accuracy:.1%}; "
                  f"{result.describe_transfer()}.", "ok")
        return row

    def _not_added(self, epochs_done, interrupt=False):
        stopped = self._switch is not None and self._switch.requested and not interrupt
        if not stopped and threading.current_thread() is threading.main_thread():
            # Kernel -> Interrupt in a cell: later runs in the same cell do not start
            self._interrupted_cell = _current_cell()
        how = "Stopped" if stopped else "Interrupted"
        self._redraw()
        self._show_progress(self.progress.value, f"{how.lower()} after {epochs_done} "
                            f"epoch{'s' if epochs_done != 1 else ''}", "warning")
        self._say(f"{how} after {epochs_done} epoch{'s' if epochs_done != 1 else ''}: this "
                  "run was not added; earlier results are kept (its model: lab.last_model).",
                  "error")
        return None

    def _failed(self, text):
        self._redraw()
        self._show_progress(0.0, "", "danger")
        self._say(text, "error")
        return None

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
        if getattr(previous, "strategy_lab", None) is self:
            return

        def on_sigint(signum, frame):
            if self._busy and self._thread is not None and self._thread.is_alive():
                self.stop()
            elif callable(previous):
                previous(signum, frame)

        on_sigint.strategy_lab = self
        signal.signal(signal.SIGINT, on_sigint)
        if restores:
            kernel.saved_sigint_handler = on_sigint

    # -- display -------------------------------------------------------------------------
    def _epochs_floor(self, _change=None):
        """Every phase of a strategy needs an epoch: the slider starts at the fewest it can
        run (gradual unfreezing: 4), and says so when it had to move up."""
        strategy = get_strategy(self.strategy.value)
        low = max(2, strategy.min_epochs())
        raised = self.epochs.value < low
        self.epochs.min = low
        if raised:
            self._say(f"epochs raised to {low}: {strategy.title} needs one per phase.")

    def _show_frame(self, png):
        self.plot.value = png
        self.frames += 1

    def _redraw(self):
        """The plot with the finished runs only."""
        curves = LiveCurves("", epochs=int(self.epochs.value), on_frame=self._show_frame,
                            **PLOT)
        curves.final_frame(self.histories)

    def _show_progress(self, fraction, text, style=None):
        self.progress.value = min(1.0, max(0.0, fraction))
        if style:
            self.progress.bar_style = style
        self.progress_text.value = f'<span style="color:#555">{html.escape(text)}</span>'

    def _say(self, text, kind="info"):
        color = {"info": "#555", "error": "#b00020", "ok": "#1b5e20"}[kind]
        self.message = text
        self.status.value = f'<span style="color:{color}">{html.escape(text)}</span>'

    def _set(self, name, value):
        if name == "strategy":
            self.strategy.value = get_strategy(value).key
            return
        if name == "bn_mode":
            self.bn_mode.value = check_bn_mode(value)
            return
        widget = {"shots": self.shots, "learning_rate": self.learning_rate,
                  "epochs": self.epochs, "seed": self.seed}[name]
        if name == "learning_rate":
            low, high = 10 ** widget.min, 10 ** widget.max
            value = check_number(value, name, low, high, f"use a value from {low:g} to {high:g}",
                                 closed=True)
        else:
            value = check_integer(value, name, widget.min, widget.max)
        widget.value = value

    # -- the table -----------------------------------------------------------------------
    def table_text(self, seconds=False):
        """The results as fixed-width text (``seconds=False`` leaves out the timing column)."""
        cols = COLUMNS if seconds else COLUMNS[:-1]
        rows = [self._cells(r)[:len(cols)] for r in self.results]
        widths = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c)
                  for i, c in enumerate(cols)]
        lines = ["  ".join(c.ljust(n) for c, n in zip(cols, widths)).rstrip()]
        lines += ["  ".join(v.ljust(n) for v, n in zip(r, widths)).rstrip() for r in rows]
        return "\n".join(lines)

    @staticmethod
    def _cells(r):
        return [r["strategy"], r["bn_mode"], str(r["shots"]), lr_text(r["learning_rate"]), str(r["epochs"]),
                str(r["seed"]), f"{r['accuracy']:.1%}", f"{r['macro_f1']:.1%}",
                f"{r['trainable_params']:,}", r["transferred"], f"{r['seconds']:.1f}"]

    def _render_table(self):
        """Aligned columns (numbers right), stripes, the run's colour, the best run marked;
        sorted as the 'sort table by' menu says."""
        order = list(range(len(self.results)))
        if self.sort.value == "accuracy":
            order.sort(key=lambda i: -self.results[i]["accuracy"])
        best = max(order, key=lambda i: self.results[i]["accuracy"]) if order else None
        cols = ("run",) + COLUMNS
        cell = "padding:3px 8px;border-bottom:1px solid #ddd;white-space:nowrap;"
        head = "".join(
            f'<th style="{cell}border-bottom:2px solid #888;text-align:'
            f'{"right" if c in NUMERIC else "left"}">{c}</th>' for c in cols)
        body = []
        for n, i in enumerate(order):
            r = self.results[i]
            swatch = (f'<span style="display:inline-block;width:10px;height:10px;'
                      f'background:{run_color(i)};margin-right:4px"></span>{i + 1}')
            values = [swatch] + [html.escape(v) for v in self._cells(r)]
            if i == best:
                at = cols.index("test accuracy")
                values[at] = "★ " + values[at]
            shade = "#e8f5e9" if i == best else ("#f7f7f7" if n % 2 else "white")
            weight = "font-weight:600;" if i == best else ""
            tds = "".join(
                f'<td style="{cell}{weight}text-align:{"right" if c in NUMERIC else "left"}">'
                f"{v}</td>" for c, v in zip(cols, values))
            body.append(f'<tr style="background:{shade}">{tds}</tr>')
        self.table.value = (
            '<div style="overflow-x:auto"><table style="border-collapse:collapse;'
            'font-variant-numeric:tabular-nums;font-size:13px"><thead><tr>'
            f'{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'
            '<div style="color:#555;font-size:12px">★ best test accuracy so far</div>')


def _transferred(report):
    """The table's 'transferred' cell: backbone layers loaded from the source, or none."""
    if report is None:
        return "none"
    return f"{sum(n in report.loaded for n in report.backbone)} of {len(report.backbone)} layers"


def _ipython():
    try:
        # optional: IPython is there only inside a kernel
        from IPython import get_ipython
    except ImportError:
        return None
    return get_ipython()
