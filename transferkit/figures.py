"""The kit's figures: shown as pictures in Jupyter, and measured before they are shown.

``Figure``: the kit never imports pyplot (slow to import, and it keeps global state), so
nothing sets up IPython's inline backend; a plain ``matplotlib.figure.Figure`` returned from a cell
would show as the text ``<Figure size ...>``.  ``Figure`` here carries its own
``_repr_png_``, which any IPython front end (Jupyter, nbclient, nbval, VS Code) asks for:
every plot of ``plots`` and ``features`` is one, so it displays as a PNG whatever was
imported, and in what order.  Its text form stays matplotlib's (the class keeps the name).

``check_figure``: the check every figure of the kit passes before it is shown.  The figure
is drawn with the Agg renderer and measured (bounding boxes in display
coordinates, no pixels compared).  It fails, with one line naming the figure and what to
fix, when

- an axes that shows data has no title (and the figure no suptitle);
- an axes with visible axes lacks an x or y label (image grids, axes turned off, need
  only the title);
- an axes has two or more labelled artists and neither it nor the figure has a legend;
- a legend box covers plotted data: a line (its vertices and the segments between them),
  a scatter point or a bar inside the axes;
- two tick labels of one axis overlap;
- a piece of text (title, label, tick label, legend entry, annotation) reaches outside
  the figure.

Every ``plot_*`` / ``show_*`` function ends by calling it, so executing a notebook checks
its figures; a figure drawn with plain matplotlib in a notebook is checked the same way with
``tk.plots.check_figure(fig)``.  Needs matplotlib only (no Keras): every tier can use it.
"""
from __future__ import annotations

import io

import numpy as np
from matplotlib.figure import Figure as _MatplotlibFigure

__all__ = ["DPI", "Figure", "FigureCheckError", "check_figure", "figure_png", "figure_problems",
           "overlapping_tick_labels", "text_renderer"]

DPI = 100  # the resolution a figure is shown at (and the PNG bytes figure_png returns)


def figure_png(fig, dpi=DPI):
    """A figure as PNG bytes (what Jupyter shows for it)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()


class Figure(_MatplotlibFigure):
    """A ``matplotlib.figure.Figure`` that Jupyter shows as a PNG."""

    def _repr_png_(self):
        return figure_png(self)


PAD = 1.0  # pixels of tolerance for edges that touch


class FigureCheckError(ValueError):
    """A figure without a title, axis labels or legend, or with text hidden or cut off."""


def text_renderer(fig):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    if not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    return fig.canvas.get_renderer()


def _drawn_tick_labels(axis):
    """The tick labels of ``axis`` that a draw shows (ticks inside the view, text not empty)."""
    lo, hi = sorted(axis.get_view_interval())
    eps = 1e-9 * max(abs(hi - lo), 1e-300)
    out = []
    for locs, ticks in ((axis.get_majorticklocs(), None), (axis.get_minorticklocs(), True)):
        ticks = axis.get_minor_ticks(len(locs)) if ticks else axis.get_major_ticks(len(locs))
        for loc, tick in zip(locs, ticks):
            if not lo - eps <= loc <= hi + eps:
                continue
            for label in (tick.label1, tick.label2):
                if label.get_visible() and label.get_text().strip():
                    out.append(label)
    return out


def overlapping_tick_labels(ax, renderer=None):
    """Pairs of tick-label texts of one axis of ``ax`` whose boxes overlap (after a draw)."""
    renderer = renderer or text_renderer(ax.figure)
    pairs = []
    if not ax.axison:
        return pairs
    for axis in (ax.xaxis, ax.yaxis):
        if not axis.get_visible():
            continue
        labels = _drawn_tick_labels(axis)
        boxes = [t.get_window_extent(renderer).expanded(1, 1).padded(-PAD / 2) for t in labels]
        for i in range(len(labels)):
            for j in range(i + 1, len(labels)):
                if boxes[i].overlaps(boxes[j]):
                    pairs.append((labels[i].get_text(), labels[j].get_text()))
    return pairs


def _texts(fig):
    """Every visible, non-empty text a draw of ``fig`` shows."""
    texts = list(fig.texts)
    for get in ("get_suptitle", "get_supxlabel", "get_supylabel"):
        if hasattr(fig, get):
            texts.append(getattr(fig, "_" + get[4:], None))
    legends = list(fig.legends)
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        texts += [ax.title, getattr(ax, "_left_title", None), getattr(ax, "_right_title", None)]
        texts += list(ax.texts)
        if ax.axison:
            for axis in (ax.xaxis, ax.yaxis):
                if axis.get_visible():
                    texts += [axis.label, axis.get_offset_text()] + _drawn_tick_labels(axis)
        if ax.get_legend() is not None:
            legends.append(ax.get_legend())
    for legend in legends:
        if legend.get_visible():
            texts += list(legend.get_texts()) + [legend.get_title()]
    return [t for t in texts if t is not None and t.get_visible() and t.get_text().strip()]


def _has_data(ax):
    return ax.get_visible() and bool(ax.lines or ax.collections or ax.patches or ax.images)


def _segments_hit(points, box):
    """True if the polyline ``points`` (display coordinates, NaN = gap) touches ``box``."""
    from matplotlib.path import Path

    finite = np.all(np.isfinite(points), axis=1)
    runs = np.split(points, np.flatnonzero(~finite))
    for run in runs:
        run = run[np.all(np.isfinite(run), axis=1)]
        if len(run) == 1 and box.contains(*run[0]):
            return True
        if len(run) >= 2 and Path(run).intersects_bbox(box, filled=False):
            return True
    return False


def _covered(ax, box, renderer):
    """What of ``ax``'s data lies under ``box`` (display coordinates), e.g. 'line "x"'."""
    from matplotlib.transforms import Bbox

    region = Bbox.intersection(box, ax.bbox)
    if region is None or region.width <= 0 or region.height <= 0:
        return None
    for line in ax.lines:
        if not line.get_visible() or len(line.get_xdata()) == 0:
            continue
        xy = line.get_transform().transform(np.asarray(line.get_xydata(), dtype=float))
        solid = line.get_linestyle() not in ("None", "none", "", " ")
        hit = (_segments_hit(xy, region) if solid else
               any(region.contains(x, y) for x, y in xy if np.isfinite(x) and np.isfinite(y)))
        if hit:
            return f"line {line.get_label()!r}"
    for coll in ax.collections:
        if not coll.get_visible() or len(coll.get_offsets()) == 0:
            continue
        xy = coll.get_offset_transform().transform(np.asarray(coll.get_offsets(), dtype=float))
        padded = region.padded(2 * PAD)
        if any(padded.contains(x, y) for x, y in xy if np.isfinite(x) and np.isfinite(y)):
            return f"points {coll.get_label()!r}"
    for patch in ax.patches:
        if patch.get_visible():
            extent = patch.get_window_extent(renderer)
            if extent.width > 0 and extent.overlaps(region):
                return "a bar"
    return None


def figure_problems(fig, *, draw=True):
    """The list of what ``check_figure`` objects to (empty: the figure passes)."""
    renderer = text_renderer(fig)
    if draw:
        fig.canvas.draw()
    suptitle = fig.get_suptitle() if hasattr(fig, "get_suptitle") else ""
    problems = []
    # axes that show data, and framed axes still empty (a live plot before its first epoch)
    data_axes = [ax for ax in fig.axes if _has_data(ax) or (ax.get_visible() and ax.axison)]
    def titled(ax):
        return any(ax.get_title(loc) for loc in ("center", "left", "right"))

    untitled = [n for n, ax in enumerate(data_axes, 1) if not (suptitle or titled(ax))]
    if untitled:
        if len(untitled) == len(data_axes) > 1:
            which = "no axes has a title"
        elif len(untitled) == 1:
            which = f"axes {untitled[0]} has no title"
        else:
            which = f"{len(untitled)} axes have no title"
        problems.append(f"{which} and the figure no suptitle")
    for n, ax in enumerate(data_axes, 1):
        title = ax.get_title() or ax.get_title("left") or ax.get_title("right")
        where = f"axes {title!r}" if title else f"axes {n}"
        if ax.axison:
            for axis, name in ((ax.xaxis, "x"), (ax.yaxis, "y")):
                if axis.get_visible() and not axis.get_label_text().strip():
                    problems.append(f"{where} has no {name} label")
        labelled = ax.get_legend_handles_labels()[1]
        if len(labelled) >= 2 and ax.get_legend() is None and not fig.legends:
            problems.append(f"{where} has {len(labelled)} labelled curves or point sets but no "
                            "legend")
    legends = [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None] + fig.legends
    for legend in legends:
        if not legend.get_visible():
            continue
        box = legend.get_window_extent(renderer).padded(-PAD)
        for n, ax in enumerate(data_axes, 1):
            hidden = _covered(ax, box, renderer)
            if hidden:
                title = ax.get_title()
                problems.append(f"the legend covers {hidden} of axes {title or n!r}")
    for ax in data_axes:
        for a, b in overlapping_tick_labels(ax, renderer)[:1]:
            problems.append(f"tick labels {a!r} and {b!r} of axes {ax.get_title() or '?'!r} "
                            "overlap")
    frame = fig.bbox.padded(PAD)
    for text in _texts(fig):
        extent = text.get_window_extent(renderer)
        if not (frame.x0 <= extent.x0 and extent.x1 <= frame.x1 and frame.y0 <= extent.y0
                and extent.y1 <= frame.y1):
            problems.append(f"text {text.get_text()!r} reaches outside the figure")
    return problems


def _figure_name(fig, name):
    if name:
        return name
    suptitle = fig.get_suptitle() if hasattr(fig, "get_suptitle") else ""
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    return repr(suptitle or (titles[0] if titles else "untitled"))


def check_figure(fig, name=None, *, draw=True):
    """Draw ``fig`` with Agg, measure it, and return it if it passes; else raise
    ``FigureCheckError`` naming the figure and every problem found (see the module's doc).

    ``name``: how to call the figure in the error (e.g. the function that drew it);
    ``draw=False`` when the caller has just drawn the figure's canvas itself.
    """
    from matplotlib.figure import Figure

    if not isinstance(fig, Figure):
        raise TypeError(f"check_figure takes a matplotlib Figure, got {type(fig).__name__}; "
                        "pass e.g. fig from fig, ax = plt.subplots()")
    problems = figure_problems(fig, draw=draw)
    if problems:
        raise FigureCheckError(
            f"figure {_figure_name(fig, name)} fails the figure check: " + "; ".join(problems)
            + " - give every axes a title and x/y labels, a legend outside the data, and "
              "room for its text")
    return fig
