"""The strategy lab's panel: its widgets, their layout and what they show.

The controls (``lab_controls``) on top, then Run / Stop / Clear and the sort menu, the
progress bar and its text, a status line, the live plot (an ``ipywidgets.Image`` whose PNG
is replaced: every widget frontend renders that) and the results table (``lab_table``).
The CSS classes ``tk-lab-*`` are what the browser test finds them by.
"""
from __future__ import annotations

import html

import ipywidgets as w

from .lab_controls import STYLE

__all__ = ["COLOURS", "Panel"]

COLOURS = {"info": "#555", "error": "#b00020", "ok": "#1b5e20"}


class Panel:
    """The widgets around the controls; ``say``, ``show_progress``, ``show_frame``,
    ``show_table`` change what they show, ``busy(True/False)`` the buttons."""

    def __init__(self, controls):
        self.controls = controls
        self.message, self.frames = "", 0
        self.status = w.HTML()
        self.run_button = w.Button(description="Run", button_style="primary", icon="play")
        self.stop_button = w.Button(description="Stop", button_style="warning", icon="stop",
                                    disabled=True)
        self.clear_button = w.Button(description="Clear", icon="trash")
        self.sort = w.Dropdown(options=[("run order", "run"),
                                        ("test accuracy, best first", "accuracy")],
                               value="run", description="sort table by", style=STYLE)
        self.progress = w.FloatProgress(value=0, min=0, max=1, layout=w.Layout(width="220px"))
        self.progress_text, self.table = w.HTML(), w.HTML()
        self.plot = w.Image(format="png", layout=w.Layout(width="100%", height="auto"))
        for widget, name in ((self.run_button, "run"), (self.stop_button, "stop"),
                             (self.clear_button, "clear"), (self.progress, "progress"),
                             (self.progress_text, "progress-text"), (self.status, "status"),
                             (self.plot, "plot"), (self.table, "results")):
            widget.add_class(f"tk-lab-{name}")
        self.widget = w.VBox([self._controls_box(), self.plot, self.table],
                             layout=w.Layout(width="100%"))
        self.widget.add_class("tk-lab")

    def _controls_box(self):
        """Strategy and BatchNorm rows, then the other settings two per row (shots first)."""
        c = self.controls
        rest = [c.shots] + [control for name, control in c.by_name.items() if name != "bn_mode"]
        rows = [w.HBox(rest[i:i + 2]) for i in range(0, len(rest), 2)]
        return w.VBox([c.strategy, c["bn_mode"], *rows,
                       w.HBox([self.run_button, self.stop_button, self.clear_button,
                               self.sort]),
                       w.HBox([self.progress, self.progress_text]), self.status])

    def say(self, text, kind="info"):
        self.message = text
        self.status.value = (f'<span style="color:{COLOURS[kind]}">{html.escape(text)}'
                             '</span>')

    def show_progress(self, fraction, text, style=None):
        self.progress.value = min(1.0, max(0.0, fraction))
        if style:
            self.progress.bar_style = style
        self.progress_text.value = f'<span style="color:#555">{html.escape(text)}</span>'

    def show_frame(self, png):
        self.plot.value = png
        self.frames += 1

    def show_table(self, table):
        self.table.value = table.html(self.sort.value)

    def busy(self, running):
        self.run_button.disabled, self.stop_button.disabled = running, not running

    def not_added(self, how, epochs_done):
        """A run that ended early (``how``: "Stopped" or "Interrupted") was not added."""
        s = "s" if epochs_done != 1 else ""
        self.show_progress(self.progress.value, f"{how.lower()} after {epochs_done} epoch{s}",
                           "warning")
        self.say(f"{how} after {epochs_done} epoch{s}: this run was not added; earlier "
                 "results are kept (its model: lab.last_model).", "error")

    def failed(self, text):
        self.show_progress(0.0, "", "danger")
        self.say(text, "error")

    def done(self, title, epochs, seconds, accuracy, transfer):
        """A run finished and was added."""
        self.show_progress(1.0, f"done: {epochs} epochs in {seconds:.1f} s", "success")
        self.say(f"Done: {title}, test accuracy {accuracy:.1%}; {transfer}.", "ok")
