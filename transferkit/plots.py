"""Loss curves (live while training in Jupyter, static otherwise) and image grids."""
from __future__ import annotations

import io
import time

import keras
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.lines import Line2D
from PIL import Image as PILImage

from .checks import check_integer
from .data import Dataset
from .datachecks import check_data
from .evaluation import Mistakes
from .figures import Figure, FigureCheckError, check_figure, overlapping_tick_labels
from .history import METRICS, RunHistory

__all__ = ["CLIP_FACTOR", "COLORS", "MIN_AXES_RIGHT", "FigureCheckError", "LiveCurves",
           "check_figure", "in_jupyter", "loss_limit", "plot_bars", "plot_confusion",
           "plot_history", "plot_mistakes", "plot_sweep", "run_color", "show_augmented",
           "show_images"]

# Twelve distinct run colours; run i keeps colour i for as long as it is on the plot.
COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown",
          "tab:pink", "tab:gray", "tab:olive", "tab:cyan", "navy", "darkgoldenrod")
MIN_AXES_RIGHT = 0.55  # the legend beside the axes may take at most the figure's right 45 %
CLIP_FACTOR = 3.0  # the loss axis ends at this multiple of the median run's highest loss


def run_color(i):
    """The colour of the ``i``-th run on a plot (the same in the lab's table)."""
    return COLORS[i % len(COLORS)]


def in_jupyter():
    """True inside a Jupyter kernel (where a figure can be updated in place)."""
    try:
        # optional: IPython is there only inside a kernel
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and shell.__class__.__name__ == "ZMQInteractiveShell"


def _finite_max(histories, keys=("loss", "val_loss")):
    values = [v for h in histories for k in keys for v in h.metrics[k] if np.isfinite(v)]
    return max(values) if values else None


def loss_limit(histories):
    """(top of the loss axis, indices of the runs that go above it).

    One diverging run (say, learning rate 0.3, loss 12) must not flatten every other
    curve: the axis stops at ``CLIP_FACTOR`` x the median of the runs' highest losses,
    and the runs cut off there are named.
    """
    peaks = {i: _finite_max([h]) for i, h in enumerate(histories)}
    peaks = {i: v for i, v in peaks.items() if v is not None}
    if not peaks:
        return None, []
    top = max(peaks.values())
    if len(peaks) >= 2:
        cap = CLIP_FACTOR * float(np.median(list(peaks.values())))
        if top > cap:
            return 1.05 * cap, [i for i, v in peaks.items() if v > cap]
    return 1.1 * top, []


def _draw(fig, histories, xmax=None, loss_top=None, tight=True, label_phases_of=-1,
          legend="right"):
    """Draw ``histories`` on ``fig`` (cleared first); returns the figure.

    Training curves solid, validation dashed, one colour per run; the legend (one entry
    per run) stands beside the axes (``legend="right"``) or under them in three columns
    (``"below"``: the axes keep the figure's width, for narrow displays), never on a curve.  Phase boundaries are
    dotted lines; only run ``label_phases_of`` (the latest) names its phases, so labels
    never print over each other.  ``xmax`` / ``loss_top`` fix the axes' limits (live
    curves keep them); ``tight=False`` uses fixed margins instead of the slower tight layout.
    """
    fig.clear()
    axes = fig.subplots(1, 2)
    auto_top, clipped = loss_limit(histories)
    loss_top = loss_top or auto_top
    handles = []
    labelled = range(len(histories))[label_phases_of] if histories else None
    for i, h in enumerate(histories):
        color = run_color(i)
        epochs = np.arange(1, h.epochs + 1)
        for ax, metric in zip(axes, ("loss", "accuracy")):
            ax.plot(epochs, h.metrics[metric], color=color, label=f"{h.label} (train)")
            if not np.all(np.isnan(h.metrics[f"val_{metric}"])):
                ax.plot(epochs, h.metrics[f"val_{metric}"], color=color, linestyle="--",
                        label=f"{h.label} (validation)")
        for n, (name, start) in enumerate(h.phases[1:]):
            _phase_marker(axes, name if i == labelled else None, start, color, row=n)
        mark = " ↑" if i in clipped else ""
        handles.append(Line2D([], [], color=color, linewidth=2, label=h.label + mark))
    for ax, metric, ylabel in zip(axes, ("loss", "accuracy"),
                                  ("cross-entropy loss", "accuracy")):
        ax.set_xlabel("epoch", fontsize=10)
        ax.set_ylabel(ylabel, fontsize=10)
        ax.set_title(metric, fontsize=11)
        ax.tick_params(labelsize=9)
        ax.grid(alpha=0.3)
        if xmax:
            ax.set_xlim(0.5, xmax + 0.5)
    axes[1].set_ylim(0, 1.02)
    if loss_top:
        axes[0].set_ylim(0, loss_top)
    if clipped:
        axes[0].set_title(f"loss (cut at {loss_top:.2g}; ↑ = run above it)", fontsize=10)
    if histories:
        handles += [Line2D([], [], color="0.3", label="training"),
                    Line2D([], [], color="0.3", linestyle="--", label="validation")]
        size = 9 if len(handles) <= 12 else 8
        if legend == "below":   # as many columns as fit the figure's width
            for ncol in (3, 2, 1):
                box = fig.legend(handles=handles, loc="lower center", ncol=ncol,
                                 bbox_to_anchor=(0.5, 0.005), fontsize=size, frameon=False,
                                 handlelength=1.6, columnspacing=1.2, labelspacing=0.3)
                if box.get_window_extent(_renderer(fig)).width <= 0.98 * fig.bbox.width:
                    break
                box.remove()
        else:
            box = fig.legend(handles=handles, loc="center right", bbox_to_anchor=(0.995, 0.5),
                             fontsize=size, frameon=False, handlelength=1.6, labelspacing=0.3)
        # the axes end where the legend begins: long labels take room from the axes, never
        # print over them or past the figure's edge
        extent = box.get_window_extent(_renderer(fig))
        right = max(MIN_AXES_RIGHT, 0.985 - extent.width / fig.bbox.width)
        bottom = extent.height / fig.bbox.height + 0.01
    else:
        right, bottom = 0.99, 0.0
    if legend == "below":
        right = 0.99
    else:
        bottom = 0.0
    if tight:
        fig.tight_layout(rect=(0, bottom, right, 1))
    else:
        inches = fig.get_size_inches()[1]
        fig.subplots_adjust(left=0.07, right=right - 0.01, bottom=bottom + 0.5 / inches,
                            top=1 - 0.3 / inches, wspace=0.25)
    return fig


def _renderer(fig):
    """A renderer to measure text with (figures made with ``Figure()`` have none yet)."""
    if not hasattr(fig.canvas, "get_renderer"):
        FigureCanvasAgg(fig)
    return fig.canvas.get_renderer()


def _phase_marker(axes, name, start, color, animated=False, row=0):
    """A dotted line where a phase starts, with its name (if given); returns the artists.

    ``row`` staggers the names of consecutive phases vertically."""
    out = []
    for ax in axes:
        out.append(ax.axvline(start + 0.5, color=color, linestyle=":", linewidth=1,
                              animated=animated))
        if name:
            out.append(ax.text(start + 0.6, 0.98 - 0.08 * (row % 3), name,
                               transform=ax.get_xaxis_transform(), va="top", fontsize=8,
                               color=color, animated=animated))
    return out


def plot_history(*histories, figsize=(10, 3.5)):
    """Loss and accuracy of one or more runs: training solid, validation dashed."""
    for h in histories:
        if not isinstance(h, RunHistory):
            raise TypeError(f"plot_history takes RunHistory objects (from tk.fit), got "
                            f"{type(h).__name__}")
    return check_figure(_draw(Figure(figsize=figsize), list(histories)), "plot_history")


class LiveCurves(keras.callbacks.Callback):
    """Keras callback: redraws loss and accuracy curves while ``fit`` runs.

    Where the frames go:
    - ``on_frame=callable``: each frame's PNG bytes are passed to it, wherever the code
      runs (the strategy lab puts them into an ``ipywidgets.Image``; tests count them);
    - otherwise, in Jupyter, the figure is displayed once in the cell and updated in place;
    - elsewhere nothing is drawn while training, and ``.figure`` is drawn when read.

    Frames come after each epoch, at most every ``min_interval`` seconds (and at least
    10x the cost of a frame apart), and always at the end of a ``fit``.  One instance can
    follow several ``fit`` calls, e.g. both phases of fine-tuning; pass ``previous=[...]``
    histories to keep finished runs on the plot, and ``epochs=`` (all phases together) to
    fix the x axis from the start.

    Updates are cheap: the axes, finished runs and legend are rendered once into a
    background image; an update pastes it and draws only the current run's lines
    (blitting), then encodes a PNG.  A full redraw happens only when the curves leave
    the axes' limits.
    """

    def __init__(self, label="run", previous=(), min_interval=1.0, figsize=(10, 3.5),
                 epochs=None, dpi=80, on_frame=None, legend="right"):
        super().__init__()

        self.current = RunHistory(label)
        self.previous = list(previous)
        self.min_interval = min_interval
        self.planned_epochs = epochs
        self.on_frame = on_frame
        self.legend = legend
        self._figure = Figure(figsize=figsize, dpi=dpi)
        self._canvas = FigureCanvasAgg(self._figure)
        self._stale = True          # .figure needs a (static) redraw before it is read
        self._handle = None
        self._last_draw = 0.0
        self._interval = min_interval
        self._fits = 0
        self._live = on_frame is not None or in_jupyter()
        self._background = None     # rendered axes without the current run's artists
        self._lines = {}            # metric key -> (axes, line) of the current run
        self._markers = []          # the current run's phase markers (animated)
        self._limits = (None, None)  # (xmax, loss_top) of the background
        self._planned_here = 0      # epochs recorded + epochs of the fit in progress
        self._marked = 1
        self.updates = 0            # frames sent

    @property
    def figure(self):
        """The figure with everything recorded so far."""
        if self._stale:
            _draw(self._figure, self.previous + [self.current], legend=self.legend)
            check_figure(self._figure, "LiveCurves.figure")
            self._background = None
            self._stale = False
        return self._figure

    def on_train_begin(self, logs=None):
        if self._fits:
            self.current.phases = self.current.phases or [(self.current.label, 0)]
            self.current.phases.append((f"phase {self._fits + 1}", self.current.epochs))
        self._fits += 1
        self._planned_here = self.current.epochs + int((self.params or {}).get("epochs") or 0)

    def on_epoch_end(self, epoch, logs=None):
        self.current.add_epoch(logs or {})
        self._stale = True
        # Only where someone watches, and at most every 10x the cost of an update, so
        # live curves stay within a few percent of the training time.
        if self._live and time.monotonic() - self._last_draw >= self._interval:
            self._show()

    def on_train_end(self, logs=None):
        self._stale = True
        if self._live:
            self._show()

    def final_frame(self, histories=None):
        """Send one last frame drawn from scratch: ``histories`` (default: everything so far),
        e.g. without a run that was stopped.  Returns the PNG bytes."""
        everyone = self.previous + [self.current] if histories is None else list(histories)
        xmax = max([self.planned_epochs or 0] + [h.epochs for h in everyone]) or None
        _draw(self._figure, everyone, xmax=xmax, tight=False, legend=self.legend)
        self._canvas.draw()
        check_figure(self._figure, "LiveCurves", draw=False)
        self._background, self._stale = None, True
        png = self._png()
        if self._live:
            self._publish(png)
            self.updates += 1
        return png

    # -- drawing ---------------------------------------------------------------------
    def _wanted_limits(self):
        everyone = self.previous + [self.current]
        xmax = max([self.planned_epochs or 0, self._planned_here, self.current.epochs]
                   + [h.epochs for h in self.previous])
        top, _ = loss_limit(everyone)
        return xmax, top or 2.5

    def _full_redraw(self):
        xmax, top = self._wanted_limits()
        old_x, old_top = self._limits
        xmax = max(xmax, old_x or 0)
        loss_top = top if old_top is None or top > old_top else old_top
        _draw(self._figure, self.previous + [self.current], xmax=xmax, loss_top=loss_top,
              tight=False, legend=self.legend)
        self._limits = (xmax, loss_top)
        self._lines, self._markers = {}, []
        for ax, metric in zip(self._figure.axes, ("loss", "accuracy")):
            for line in ax.get_lines():
                for prefix, suffix in (("", " (train)"), ("val_", " (validation)")):
                    if line.get_label() == self.current.label + suffix:
                        line.set_animated(True)
                        self._lines[prefix + metric] = (ax, line)
        self._marked = max(1, len(self.current.phases))  # phases already in the background
        self._canvas.draw()  # everything but the animated (current) artists
        # once per full redraw (not per blitted frame): the current run's lines are measured
        # too, drawn or not
        check_figure(self._figure, "LiveCurves", draw=False)
        self._background = self._canvas.copy_from_bbox(self._figure.bbox)
        self._stale = True  # the live figure has animated artists; .figure redraws statically

    def _needs_full_redraw(self):
        if self._background is None:
            return True
        xmax, top = self._wanted_limits()
        old_x, old_top = self._limits
        missing_val = any(f"val_{m}" not in self._lines and
                          not np.all(np.isnan(self.current.metrics[f"val_{m}"]))
                          for m in ("loss", "accuracy"))
        return self.current.epochs > old_x or top > old_top or missing_val

    def _blit(self):
        """Paste the background, draw the current run's lines and phase markers on it."""
        self._canvas.restore_region(self._background)
        epochs = np.arange(1, self.current.epochs + 1)
        for key, (ax, line) in self._lines.items():
            line.set_data(epochs, self.current.metrics[key])
            ax.draw_artist(line)
        color = self._lines["loss"][1].get_color() if "loss" in self._lines else COLORS[0]
        for n, (name, start) in enumerate(self.current.phases[self._marked:], self._marked - 1):
            self._markers += _phase_marker(self._figure.axes, name, start, color,
                                           animated=True, row=n)
        self._marked = max(self._marked, len(self.current.phases))
        for artist in self._markers:
            artist.axes.draw_artist(artist)

    def _png(self):
        buffer = io.BytesIO()
        image = PILImage.frombuffer("RGBA", self._canvas.get_width_height(),
                                    self._canvas.buffer_rgba(), "raw", "RGBA", 0, 1)
        image.convert("RGB").save(buffer, format="png", compress_level=1)
        return buffer.getvalue()

    def _publish(self, png):
        if self.on_frame is not None:
            self.on_frame(png)
            return
        # optional: IPython is there only inside a kernel
        from IPython.display import Image, display
        image = Image(data=png)
        if self._handle is None:
            self._handle = display(image, display_id=True)
        else:
            self._handle.update(image)

    def _show(self):
        start = time.monotonic()
        if self._needs_full_redraw():
            self._full_redraw()
        self._blit()
        self._publish(self._png())
        self.updates += 1
        self._last_draw = time.monotonic()
        self._interval = max(self.min_interval, 10 * (self._last_draw - start))


def show_images(dataset, n=10, per_class=False, figsize=None, title=None):
    """A row (or a class-by-class grid) of images with their labels; the title defaults to
    the dataset's name."""
    if not isinstance(dataset, Dataset):
        raise TypeError(f"show_images draws a tk.Dataset (its labels title the images), got "
                        f"{type(dataset).__name__}; pass e.g. task.train, or "
                        "tk.Dataset(x, y, class_names)")
    check_data(dataset, "dataset", head=False, allow_empty=True)
    if per_class:
        rows = []
        for c in range(dataset.num_classes):
            idx = np.flatnonzero(dataset.y == c)[:n]
            rows.append(idx)
        n_rows, n_cols = len(rows), n
    else:
        rows = [np.arange(min(n, len(dataset)))]
        n_rows, n_cols = 1, len(rows[0])
    fig = Figure(figsize=figsize or (max(n_cols * 0.9, 2.5), n_rows * 0.95 + 0.45))
    axes = np.atleast_2d(fig.subplots(n_rows, n_cols, squeeze=False))
    for r, idx in enumerate(rows):
        for c in range(n_cols):
            ax = axes[r, c]
            ax.axis("off")
            if c < len(idx):
                ax.imshow(dataset.x[idx[c], ..., 0], cmap="gray", vmin=0, vmax=1)
                if not per_class or c == 0:
                    ax.set_title(dataset.class_names[dataset.y[idx[c]]], fontsize=9)
    fig.suptitle(title or getattr(dataset, "name", "") or "images", fontsize=10)
    fig.tight_layout()
    return check_figure(fig, "show_images")


def plot_confusion(scores, figsize=(4.5, 4)):
    """The confusion matrix of a ``tk.evaluate`` result."""
    fig = Figure(figsize=figsize)
    ax = fig.subplots()
    cm = scores.confusion
    ax.imshow(cm, cmap="Blues")
    ticks = np.arange(len(cm))
    ax.set_xticks(ticks, labels=scores.class_names or ticks)
    ax.set_yticks(ticks, labels=scores.class_names or ticks)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    for i in range(len(cm)):
        for j in range(len(cm)):
            if cm[i, j]:
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if cm[i, j] > cm.max() / 2 else "black")
    ax.set_title(f"accuracy {scores.accuracy:.1%}")
    fig.tight_layout()
    return check_figure(fig, "plot_confusion")


def _value_text(value):
    return f"{value:.1%}" if 0 <= value <= 1 else f"{value:.3g}"


def plot_bars(values, *, title, ylabel, xlabel, figsize=(6, 3)):
    """A bar chart of {name: value}, values printed on the bars.

    ``ylabel`` says what the values are (e.g. "test accuracy"), ``xlabel`` what the names
    are (e.g. "model").  When the names are too long to stand side by side under their bars,
    the bars lie down: names down the left, values along the bottom (the labels go with
    their axes), so no name prints over another.
    """
    names = list(values)
    if not names:
        raise ValueError("plot_bars got no values: pass a dict {name: value} with at least "
                         "one entry")
    heights = [float(values[k]) for k in names]
    fig = Figure(figsize=figsize)
    ax = fig.subplots()
    bars = ax.bar(names, heights, color=[COLORS[i % len(COLORS)] for i in range(len(names))])
    for bar, v in zip(bars, heights):
        ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height(), _value_text(v),
                ha="center", va="bottom", fontsize=9)
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.set_xlabel(xlabel)
    ax.margins(y=0.15)
    fig.tight_layout()
    _renderer(fig)
    fig.canvas.draw()
    if overlapping_tick_labels(ax):
        fig = _lying_bars(names, heights, title, ylabel, xlabel, figsize)
    return check_figure(fig, "plot_bars")


def _lying_bars(names, values, title, value_label, name_label, figsize):
    """Horizontal bars, the first name on top, for names too long to stand under bars."""
    fig = Figure(figsize=(figsize[0], max(figsize[1], 0.45 * len(names) + 1.2)))
    ax = fig.subplots()
    bars = ax.barh(names, values, color=[COLORS[i % len(COLORS)] for i in range(len(names))])
    for bar, v in zip(bars, values):
        ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, " " + _value_text(v),
                ha="left", va="center", fontsize=9)
    ax.invert_yaxis()
    ax.margins(x=0.18)
    ax.set_title(title)
    ax.set_xlabel(value_label)
    ax.set_ylabel(name_label)
    fig.tight_layout()
    return fig


def plot_sweep(rows, figsize=(7, 3.5)):
    """Test accuracy against shots per class, one line per strategy (from ``tk.sweep``).

    Rows that carry ``accuracy_std`` (a mean over seeds, e.g. ``benchmarks/arc.py``'s
    summary) get error bars of one standard deviation."""
    if not rows:
        raise ValueError("plot_sweep got no rows: there is nothing to plot; pass the list "
                         "that tk.sweep(...) returned, with at least one strategy and size")
    fig = Figure(figsize=figsize)
    ax = fig.subplots()
    names = list(dict.fromkeys(r["strategy"] for r in rows))
    for i, name in enumerate(names):
        pts = sorted((r["shots"], r["accuracy"], r.get("accuracy_std") or 0.0)
                     for r in rows if r["strategy"] == name)
        ax.errorbar([p[0] for p in pts], [p[1] for p in pts],
                    yerr=[p[2] for p in pts] if any(p[2] for p in pts) else None,
                    fmt="o-", capsize=3, color=COLORS[i % len(COLORS)], label=name)
    ax.set_xscale("log")
    shots = sorted({r["shots"] for r in rows})
    ax.set_xticks(shots, labels=[str(s) for s in shots])
    ax.set_xticks([], minor=True)
    ax.set_xlabel("labelled examples per class (log scale)")
    ax.set_ylabel("test accuracy")
    ax.set_title("Test accuracy by target size")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    # beside the axes, never on a curve
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1), frameon=False,
              title="strategy", title_fontsize=8)
    fig.tight_layout()
    return check_figure(fig, "plot_sweep")


def _wrapped(text, fig, fontsize=10):
    """A suptitle broken into lines that fit the figure's width (about 0.6 em per character)."""
    import textwrap

    per_line = max(12, int(fig.get_figwidth() * 72 / (0.6 * fontsize)))
    return "\n".join(textwrap.wrap(text, per_line))


def plot_mistakes(mistakes, *, columns=6, title=None):
    """A grid of a model's worst mistakes (``tk.worst_mistakes``): each image titled with its
    true class, the predicted class and the model's confidence in it."""
    if not isinstance(mistakes, Mistakes):
        raise TypeError(f"plot_mistakes draws what tk.worst_mistakes(model, data) returns, got "
                        f"{type(mistakes).__name__}; pass tk.worst_mistakes(model, test_data, n=12)")
    check_integer(columns, "columns", 1)
    columns = min(int(columns), len(mistakes))
    rows = -(-len(mistakes) // columns)
    fig = Figure(figsize=(1.45 * columns, 1.75 * rows + 0.45))
    axes = fig.subplots(rows, columns, squeeze=False)
    names = mistakes.class_names
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k >= len(mistakes):
            continue
        ax.imshow(mistakes.images[k, ..., 0], cmap="gray", vmin=0, vmax=1)
        true, predicted = mistakes.true[k], mistakes.predicted[k]
        ax.set_title(f"true {names[true]}\npredicted {names[predicted]} "
                     f"({mistakes.confidence[k]:.0%})", fontsize=8,
                     color="black" if true == predicted else "firebrick")
    fig.suptitle(_wrapped(title or f"The {len(mistakes)} test images with the highest loss: true "
                          "class, predicted class (its probability)", fig), fontsize=10)
    fig.tight_layout()
    return check_figure(fig, "plot_mistakes")


def show_augmented(augmentation, images, *, copies=5, title=None):
    """Each of ``images`` (a row each) next to ``copies`` random versions of it, drawn by the
    augmentation layers as in training (``training=True``)."""
    if not isinstance(augmentation, keras.layers.Layer):
        raise TypeError(f"augmentation={augmentation!r} is not a Keras layer; pass "
                        "tk.augmentation_layers(...) or the model's layer "
                        "model.get_layer('augment')")
    check_integer(copies, "copies", 1, 20)
    x = np.asarray(getattr(images, "x", images))
    x = check_data(x[None] if x.ndim == 3 else x, "images", labels=False).astype("float32")
    columns = int(copies) + 1
    fig = Figure(figsize=(1.0 * columns, 1.05 * len(x) + 0.4))
    axes = fig.subplots(len(x), columns, squeeze=False)
    for r, image in enumerate(x):
        batch = np.repeat(image[None], int(copies), axis=0)
        drawn = keras.ops.convert_to_numpy(augmentation(batch, training=True))
        for c, ax in enumerate(axes[r]):
            ax.axis("off")
            ax.imshow(image[..., 0] if c == 0 else drawn[c - 1, ..., 0], cmap="gray", vmin=0,
                      vmax=1)
            ax.set_title("original" if c == 0 else f"random {c}", fontsize=8)
    fig.suptitle(_wrapped(title or "What the network sees in training: random rotation, shift "
                          "and zoom", fig), fontsize=10)
    fig.tight_layout()
    return check_figure(fig, "show_augmented")

