"""The strategy lab: an ipywidgets panel to run transfer strategies and compare them.

Pressing **Run** trains in a worker thread (``lab_runner``), so the kernel keeps handling the
panel's messages while the run trains: the plot (an ``ipywidgets.Image`` whose PNG is
replaced, which every widget frontend renders) and the progress bar update during the run,
**Stop** (or Kernel -> Interrupt) ends it after the current batch, and a click during a run
is refused with a message instead of queuing a second run.  The controls (``lab_controls``)
come from the settings table and refuse values outside their range; the table is
``lab_table``.

The panel is also a plain Python object: ``lab.run(...)`` trains in the calling thread and
returns the new row (for notebook cells and tests), ``lab.start(...)`` is what Run does,
``lab.stop()`` what Stop does, ``lab.wait()`` waits for a started run.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from types import SimpleNamespace

from .data import Task, check_task_values, few_shot, target_task
from .evaluation import evaluate
from .experiments import run_strategy, unlabelled_for
from .lab_controls import Controls
from .lab_panel import Panel
from .lab_runner import Progress, Runner
from .lab_table import ResultsTable, lr_text
from .models import DEFAULT_WIDTHS, build_model
from .curves import LiveCurves
from .settings import resolve
from .source import SourceModel, source_model
from .strategies import STRATEGIES, get_strategy, split_epochs
from .transfer import PARTIAL_FIX, load_matching_weights

__all__ = ["BUSY", "FRAME_INTERVAL", "PLOT", "StrategyLab", "lr_text"]

FRAME_INTERVAL = 0.5          # seconds between plot frames, at least (and >= 10x a frame's cost)
# rendered size; the panel scales it to its width.  Legend under the axes: in a narrow panel
# (1024 px screen, file browser open) the text stays about 9 px high
PLOT = {"figsize": (8, 4.6), "dpi": 96, "legend": "below"}
BUSY = "A run is in progress: this click was ignored; press Stop to end the run first."
BLOCKS = [f"block{i}" for i in range(1, len(DEFAULT_WIDTHS) + 1)]
PANEL_WIDGETS = ("run_button", "stop_button", "clear_button", "sort", "progress",
                 "progress_text", "status", "plot", "table")


def _checked(task, strategies):
    """The lab's task and strategies, checked before any widget exists."""
    task = target_task() if task is None else task
    if not isinstance(task, Task):
        raise TypeError(f"task={task!r} is not a tk.Task; pass e.g. tk.target_task()")
    chosen = [get_strategy(s) for s in strategies]
    if not chosen:
        raise ValueError(f"strategies={strategies!r} is empty; pass some of {list(STRATEGIES)}")
    return task, chosen


def _weights_path(source, task):
    """The source weights file the lab transfers from, checked before any widget exists."""
    if isinstance(source, SourceModel):
        return source.weights_path  # verified when it was loaded
    path = getattr(source, "weights_path", source)
    if isinstance(path, (str, os.PathLike)):
        load_matching_weights(build_model(task.num_classes, name="lab_check"), path,
                              require_backbone=True, fix=PARTIAL_FIX)
        return Path(path)
    raise TypeError(f"source={source!r} is not a source model; pass tk.source_model() (or the "
                    "path of a .weights.h5 file of the kit's CNN)")


class StrategyLab:
    """Widgets: strategy, shots per class and one control per setting (``tk.settings``);
    Run, Stop, Clear; a progress bar; live curves of every run; a results table.

    ``results`` holds one dict per finished run; ``histories`` the curves drawn (run ``i``
    keeps colour ``tk.curves.run_color(i)`` in the plot and the table).  Every value given to
    the constructor is checked first: a bad one raises with the API's message.
    """

    def __init__(self, source=None, task=None, strategies=tuple(STRATEGIES), shots=None,
                 **settings):
        self.task, self.strategies = _checked(task, strategies)
        check_task_values(self.task)  # before the shots are counted or a run trains
        self.source = source_model() if source is None else source
        self.weights_path = _weights_path(self.source, self.task)
        most = min(self.task.train.counts())  # shots=None: 10, or all a small pool has
        self.controls = Controls(self.strategies, most,
                                 lambda text, kind="error": self.panel.say(text, kind),
                                 shots=min(10, most) if shots is None else shots, **settings)
        self.panel = Panel(self.controls)
        # lab.epochs, lab.learning_rate, lab.bn_mode, ...: the controls by their settings' names
        for name, control in {"strategy": self.controls.strategy, "shots": self.controls.shots,
                              **self.controls.by_name}.items():
            setattr(self, name, control)
        for name in PANEL_WIDGETS:
            setattr(self, name, getattr(self.panel, name))
        for button, action in ((self.run_button, self._on_run_click),
                               (self.stop_button, lambda _: self.stop()),
                               (self.clear_button, lambda _: self.clear())):
            button.on_click(action)
        self.sort.observe(lambda _: self._render_table(), "value")
        self._table, self.histories, self._runner = ResultsTable(), [], Runner()
        self.results, self.ignored_clicks = self._table.rows, 0
        self.curves = self.last_model = None
        self._render_table()
        self._redraw()

    widget = property(lambda self: self.panel.widget)
    message = property(lambda self: self.panel.message)
    frames = property(lambda self: self.panel.frames)

    def _ipython_display_(self):
        # optional: IPython is there only inside a kernel
        from IPython.display import display
        display(self.widget)

    busy = property(lambda self: self._runner.busy, doc="True while a run trains.")

    # -- what the buttons do -----------------------------------------------------------
    def run(self, **settings):
        """One run with the panel's settings (``settings`` override and update them), in this
        thread: the new row, or None when it did not run or finish (the panel says why)."""
        if self._runner.skip_this_cell():
            self.panel.say("Skipped: this cell was interrupted, so its remaining runs do not "
                           "start; run the cell again to train them.", "error")
            return None
        plan = self._begin(settings)
        return None if plan is None else self._train(plan)

    def start(self, **settings):
        """What Run does: ``run(**settings)`` in a worker thread, so the panel keeps
        answering (plot, progress, Stop).  Returns the thread, or None if nothing started."""
        plan = self._begin(settings)
        return None if plan is None else self._runner.start(self._train, plan)

    def wait(self, timeout=None):
        """Wait for a run started with ``start()`` or Run; True when no run is left."""
        return self._runner.wait(timeout)

    def stop(self):
        """What Stop does: end the current run after its batch (it is not added); True if one
        was running."""
        if not self._runner.stop():
            self.panel.say("No run in progress: nothing to stop.")
            return False
        self.panel.say("Stopping after the current batch ...")
        return True

    def clear(self):
        """Forget all runs: empty table and plot."""
        if self.busy:
            self.panel.say("A run is in progress: press Stop first, then Clear.", "error")
            return
        self.results.clear()
        self.histories.clear()
        self._render_table()
        self._redraw()
        self.panel.say("Cleared.")

    def table_text(self, seconds=False):
        """The results as fixed-width text (``seconds=False``: without the timing column)."""
        return self._table.text(seconds)

    def _on_run_click(self, _button):
        if self.busy:       # a second click (or a double-click) during a run
            self.ignored_clicks += 1
            self.panel.say(BUSY, "error")
            return
        self.start()

    # -- a run ---------------------------------------------------------------------------
    def _begin(self, settings):
        """Check the settings and claim the panel; the run's plan, or None (and why)."""
        try:   # everything checked before anything changes: a refusal leaves the panel as is
            values = {**self.controls.values(), **self.controls.check(**settings)}
            strategy = get_strategy(values.pop("strategy"))
            shots = values.pop("shots")
            if "epochs" not in settings:  # as choosing the strategy in the panel does
                values["epochs"] = max(values["epochs"], strategy.min_epochs(BLOCKS))
            resolve(**values).for_strategy(strategy)  # enough epochs for its phases
            train = few_shot(self.task.train, shots, values["seed"])
            self.controls.set(**settings)
        except (ValueError, TypeError) as error:
            self.panel.say(str(error), "error")
            return None
        if not self._runner.claim():
            self.panel.say(BUSY.replace("this click", "this request"), "error")
            return None
        try:
            return self._plan(strategy, shots, train, values)
        except BaseException:
            self._release()
            raise

    def _plan(self, strategy, shots, train, settings):
        phases = strategy.phases(BLOCKS)
        per_phase = split_epochs(phases, settings["epochs"])
        rate = lr_text(settings["learning_rate"])
        plan = SimpleNamespace(strategy=strategy, train=train, shots=shots, settings=settings,
                               label=f"{len(self.histories) + 1} · {strategy.title}, "
                                     f"{shots} shots, lr {rate}", started=time.perf_counter())
        self.curves = LiveCurves(plan.label, previous=list(self.histories),
                                 epochs=sum(per_phase), min_interval=FRAME_INTERVAL,
                                 on_frame=self.panel.show_frame, **PLOT)
        plan.progress = Progress(self.panel.show_progress, [p.name for p in phases], per_phase)
        self.panel.busy(True)
        self.progress.bar_style = "info"
        self.panel.show_progress(0.0, f"phase 1 of {len(phases)}: {phases[0].name} · starting")
        self.panel.say(f"Training: {strategy.title}, {shots} shots per class, "
                       f"{settings['epochs']} epochs ...")
        return plan

    def _release(self):
        self._runner.release()
        self.panel.busy(False)

    def _train(self, plan):
        """Carry out ``plan``; the new row or None.  Always frees the panel."""
        try:
            return self._train_and_record(plan)
        finally:
            self._release()

    def _train_and_record(self, plan):
        settings = plan.settings
        try:
            result = run_strategy(
                plan.strategy, plan.train, self.task.val, self.task.num_classes,
                source_weights=self.weights_path, callbacks=[self.curves, plan.progress,
                                                             self._runner.switch],
                unlabelled=unlabelled_for(plan.strategy, self.task, None, settings["bn_mode"]),
                **settings)
            self.last_model = result.model
            if result.history.interrupted:
                return self._not_added(result.history.epochs)
            scores = evaluate(result.model, self.task.test)
        except KeyboardInterrupt:
            return self._not_added(self.curves.current.epochs, interrupt=True)
        except Exception as error:  # a worker thread has nobody to raise to: the panel says it
            kind = "" if isinstance(error, (ValueError, TypeError, OSError)) else \
                f"The run failed: {type(error).__name__}: "
            return self._failed(f"{kind}{error}")
        result.history.label = plan.label
        self.histories.append(result.history)
        row = self._table.add(plan.shots, settings, result, scores,
                              time.perf_counter() - plan.started)
        self._render_table()
        self.curves.final_frame(self.histories)
        self.panel.done(plan.strategy.title, settings["epochs"], row["seconds"], scores.accuracy,
                        result.describe_transfer())
        return row

    def _not_added(self, epochs_done, interrupt=False):
        stopped = self._runner.stopped and not interrupt
        if not stopped:  # Kernel -> Interrupt in a cell: later runs in the same cell do not start
            self._runner.remember_interrupt()
        self._redraw()
        self.panel.not_added("Stopped" if stopped else "Interrupted", epochs_done)

    def _failed(self, text):
        self._redraw()
        self.panel.failed(text)

    # -- display -------------------------------------------------------------------------
    def _redraw(self):
        """The plot with the finished runs only."""
        LiveCurves("", epochs=int(self.epochs.value), on_frame=self.panel.show_frame,
                   **PLOT).final_frame(self.histories)

    def _render_table(self):
        self.panel.show_table(self._table)
