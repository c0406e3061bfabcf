"""Loss curves (live while training in Jupyter, static otherwise) and image grids."""
from __future__ import annotations

import time

import keras
import numpy as np
from matplotlib.figure import Figure

from .training import METRICS, RunHistory

COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown",
          "tab:pink", "tab:gray", "tab:olive", "tab:cyan")


def in_jupyter():
    """True inside a Jupyter kernel (where a figure can be updated in place)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and shell.__class__.__name__ == "ZMQInteractiveShell"


def _draw(fig, histories):
    fig.clear()
    axes = fig.subplots(1, 2)
    for i, h in enumerate(histories):
        color = COLORS[i % len(COLORS)]
        epochs = np.arange(1, h.epochs + 1)
        for ax, metric in zip(axes, ("loss", "accuracy")):
            ax.plot(epochs, h.metrics[metric], color=color, label=f"{h.label} (train)")
            if not np.all(np.isnan(h.metrics[f"val_{metric}"])):
                ax.plot(epochs, h.metrics[f"val_{metric}"], color=color, linestyle="--",
                        label=f"{h.label} (validation)")
        for name, start in h.phases[1:]:
            for ax in axes:
                ax.axvline(start + 0.5, color=color, linestyle=":", linewidth=1)
                ax.text(start + 0.6, 0.98, name, transform=ax.get_xaxis_transform(),
                        va="top", fontsize=8, color=color)
    for ax, metric in zip(axes, ("loss", "accuracy")):
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.grid(alpha=0.3)
    axes[1].set_ylim(0, 1.02)
    if histories:
        axes[1].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def plot_history(*histories, figsize=(10, 3.5)):
    """Loss and accuracy of one or more runs: training solid, validation dashed."""
    for h in histories:
        if not isinstance(h, RunHistory):
            raise TypeError(f"plot_history takes RunHistory objects (from tk.fit), got "
                            f"{type(h).__name__}")
    return _draw(Figure(figsize=figsize), list(histories))


class LiveCurves(keras.callbacks.Callback):
    """Keras callback: redraws loss and accuracy curves in place while ``fit`` runs.

    In Jupyter the figure is displayed once and updated after each epoch (at
    most every ``min_interval`` seconds, and always at the end); elsewhere the
    figure is only drawn when training ends (``.figure``).  One instance can
    follow several ``fit`` calls, e.g. both phases of fine-tuning; pass
    ``previous=[...]`` histories to keep finished runs on the plot.
    """

    def __init__(self, label="run", previous=(), min_interval=1.0, figsize=(10, 3.5)):
        super().__init__()
        self.current = RunHistory(label)
        self.previous = list(previous)
        self.min_interval = min_interval
        self.figure = Figure(figsize=figsize)
        self._handle = None
        self._last_draw = 0.0
        self._fits = 0
        self._live = in_jupyter()
        self._lines = {}
        self._phases_drawn = 0
        self._interval = min_interval

    def on_train_begin(self, logs=None):
        if self._fits:
            self.current.phases = self.current.phases or [(self.current.label, 0)]
            self.current.phases.append((f"phase {self._fits + 1}", self.current.epochs))
        self._fits += 1

    def on_epoch_end(self, epoch, logs=None):
        self.current.add_epoch(logs or {})
        # Only where someone watches, and at most every 10x the cost of an update, so
        # live curves stay within a few percent of the training time.
        if self._live and time.monotonic() - self._last_draw >= self._interval:
            self._show()

    def on_train_end(self, logs=None):
        self._show(final=True)

    def _show_figure_only(self, final=False):
        """Redraw the figure: a full redraw when the layout changes, else new line data."""
        lines = self._lines
        if final or not lines or len(self.current.phases) != self._phases_drawn:
            _draw(self.figure, self.previous + [self.current])
            self._phases_drawn = len(self.current.phases)
            self._lines = {}
            for ax, metric in zip(self.figure.axes, ("loss", "accuracy")):
                for line in ax.get_lines():
                    for prefix, suffix in (("", " (train)"), ("val_", " (validation)")):
                        if line.get_label() == self.current.label + suffix:
                            self._lines[prefix + metric] = (ax, line)
        else:
            epochs = np.arange(1, self.current.epochs + 1)
            for key, (ax, line) in lines.items():
                line.set_data(epochs, self.current.metrics[key])
                ax.relim()
                ax.autoscale_view()
            self.figure.axes[1].set_ylim(0, 1.02)

    def _show(self, final=False):
        start = time.monotonic()
        self._show_figure_only(final)
        if self._live:
            import io

            from IPython.display import Image, display
            buffer = io.BytesIO()
            self.figure.savefig(buffer, format="png", dpi=100 if final else 60)
            image = Image(data=buffer.getvalue())
            if self._handle is None:
                self._handle = display(image, display_id=True)
            else:
                self._handle.update(image)
        self._last_draw = time.monotonic()
        self._interval = max(self.min_interval, 10 * (self._last_draw - start))


def show_images(dataset, n=10, per_class=False, figsize=None, title=None):
    """A row (or a class-by-class grid) of images with their labels."""
    if per_class:
        rows = []
        for c in range(dataset.num_classes):
            idx = np.flatnonzero(dataset.y == c)[:n]
            rows.append(idx)
        n_rows, n_cols = len(rows), n
    else:
        rows = [np.arange(min(n, len(dataset)))]
        n_rows, n_cols = 1, len(rows[0])
    fig = Figure(figsize=figsize or (n_cols * 0.9, n_rows * 0.95 + 0.3))
    axes = np.atleast_2d(fig.subplots(n_rows, n_cols, squeeze=False))
    for r, idx in enumerate(rows):
        for c in range(n_cols):
            ax = axes[r, c]
            ax.axis("off")
            if c < len(idx):
                ax.imshow(dataset.x[idx[c], ..., 0], cmap="gray", vmin=0, vmax=1)
                if not per_class or c == 0:
                    ax.set_title(dataset.class_names[dataset.y[idx[c]]], fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_confusion(scores, figsize=(4.5, 4)):
    """The confusion matrix of a ``tk.evaluate`` result."""
    fig = Figure(figsize=figsize)
    ax = fig.subplots()
    cm = scores.confusion
    ax.imshow(cm, cmap="Blues")
    ticks = np.arange(len(cm))
    ax.set_xticks(ticks, labels=scores.class_names or ticks)
    ax.set_yticks(ticks, labels=scores.class_names or ticks)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(len(cm)):
        for j in range(len(cm)):
            if cm[i, j]:
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if cm[i, j] > cm.max() / 2 else "black")
    ax.set_title(f"accuracy {scores.accuracy:.1%}")
    fig.tight_layout()
    return fig


def plot_bars(values, title="", ylabel="", figsize=(6, 3)):
    """A bar chart of {name: value}, values printed on the bars."""
    fig = Figure(figsize=figsize)
    ax = fig.subplots()
    names = list(values)
    bars = ax.bar(names, [values[k] for k in names], color=COLORS[:len(names)])
    for bar, k in zip(bars, names):
        ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height(), f"{values[k]:.1%}"
                if 0 <= values[k] <= 1 else f"{values[k]:.3g}", ha="center", va="bottom")
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    fig.tight_layout()
    return fig


def plot_sweep(rows, figsize=(6, 3.5)):
    """Test accuracy against shots per class, one line per strategy (from ``tk.sweep``)."""
    fig = Figure(figsize=figsize)
    ax = fig.subplots()
    names = list(dict.fromkeys(r["strategy"] for r in rows))
    for i, name in enumerate(names):
        pts = sorted((r["shots"], r["accuracy"]) for r in rows if r["strategy"] == name)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", color=COLORS[i % len(COLORS)],
                label=name)
    ax.set_xscale("log")
    shots = sorted({r["shots"] for r in rows})
    ax.set_xticks(shots, labels=[str(s) for s in shots])
    ax.set_xlabel("labelled examples per class (log scale)")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
