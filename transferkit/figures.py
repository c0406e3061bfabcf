"""The kit's figures: matplotlib figures that show themselves as pictures in Jupyter.

The kit never imports pyplot (slow to import, and it keeps global state), so nothing sets
up IPython's inline backend; a plain ``matplotlib.figure.Figure`` returned from a cell
would show as the text ``<Figure size ...>``.  ``Figure`` here carries its own
``_repr_png_``, which any IPython front end (Jupyter, nbclient, nbval, VS Code) asks for:
every plot of ``plots`` and ``features`` is one, so it displays as a PNG whatever was
imported, and in what order.  Its text form stays matplotlib's (the class keeps the name).
"""
from __future__ import annotations

import io

from matplotlib.figure import Figure as _MatplotlibFigure

__all__ = ["DPI", "Figure", "figure_png"]

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
