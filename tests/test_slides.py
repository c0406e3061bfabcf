"""Slides: every notebook carries slideshow metadata (RISE and `jupyter nbconvert --to slides`
read it), and the slides of one notebook build offline with the installed nbconvert."""
from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9][0-9]_*.ipynb"))
NAMES = [p.name for p in NOTEBOOKS]
SLIDE_TYPES = {"slide", "subslide", "fragment", "-", "skip", "notes"}


def _slide_type(cell):
    return cell.metadata.get("slideshow", {}).get("slide_type")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=NAMES)
def test_every_cell_has_a_slide_type_headings_start_slides(path):
    cells = nbformat.read(path, as_version=4).cells
    assert [c for c in cells if _slide_type(c) not in SLIDE_TYPES] == []
    assert _slide_type(cells[1]) == "slide" and cells[1].source.startswith("# "), "the title opens"
    for cell in cells:
        if cell.cell_type == "markdown" and cell.source.startswith(("# ", "## ")):
            assert _slide_type(cell) == "slide", cell.source.splitlines()[0]
        if cell.cell_type == "markdown" and cell.source.startswith("**transferkit**"):
            assert _slide_type(cell) == "skip", "navigation links are not slides"
        if "solution" in cell.metadata.get("tags", []):
            assert _slide_type(cell) == "notes", "a solution goes to the speaker notes, not the screen"


def test_the_slides_of_a_notebook_build_offline():
    from nbconvert import SlidesExporter

    path = NOTEBOOKS[0]
    nb = nbformat.read(path, as_version=4)
    html, _ = SlidesExporter(reveal_scroll=True).from_notebook_node(nb)
    types = [_slide_type(c) for c in nb.cells]
    slides, subslides = types.count("slide"), types.count("subslide")
    # nbconvert opens each slide with <section><section> and each subslide with </section><section>
    assert html.count("<section") == 2 * slides + subslides
    for cell in nb.cells:
        shown = f'id="cell-id={cell.id}"' in html
        assert shown == (_slide_type(cell) != "skip"), (cell.id, _slide_type(cell))
    notes = re.findall(r'<aside class="notes">(.*?)</aside>', html, re.S)
    solution = next(c for c in nb.cells if "solution" in c.metadata.get("tags", []))
    assert len(notes) == 1 and f'id="cell-id={solution.id}"' in notes[0]
