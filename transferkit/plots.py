"""Image grids and result plots: samples, a confusion matrix, bars, a sweep, mistakes, augmented
copies; every figure measured by ``figures.check_figure``.  (Training curves: ``curves``.)"""
from __future__ import annotations

import keras
import numpy as np

from .checks import check_integer
from .curves import run_color
from .data import Dataset
from .datachecks import check_data
from .evaluation import Mistakes
from .figures import (Figure, FigureCheckError, check_figure, overlapping_tick_labels,
                      text_renderer)

__all__ = ["FigureCheckError", "check_figure", "plot_bars", "plot_confusion", "plot_mistakes",
           "plot_sweep", "show_augmented", "show_images"]


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
    bars = ax.bar(names, heights, color=[run_color(i) for i in range(len(names))])
    for bar, v in zip(bars, heights):
        ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height(), _value_text(v),
                ha="center", va="bottom", fontsize=9)
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.set_xlabel(xlabel)
    ax.margins(y=0.15)
    fig.tight_layout()
    text_renderer(fig)
    fig.canvas.draw()
    if overlapping_tick_labels(ax):
        fig = _lying_bars(names, heights, title, ylabel, xlabel, figsize)
    return check_figure(fig, "plot_bars")


def _lying_bars(names, values, title, value_label, name_label, figsize):
    """Horizontal bars, the first name on top, for names too long to stand under bars."""
    fig = Figure(figsize=(figsize[0], max(figsize[1], 0.45 * len(names) + 1.2)))
    ax = fig.subplots()
    bars = ax.barh(names, values, color=[run_color(i) for i in range(len(names))])
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
                    fmt="o-", capsize=3, color=run_color(i), label=name)
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

