"""The committed notebooks as a product: navigation, the parts every notebook has, and
outputs a learner can read (pictures, not '<Figure ...>' text; no errors).

nbval (run on notebooks/ by the same pytest command) re-executes them and compares outputs;
these checks read the committed files only, so they are instant.
"""
from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9][0-9]_*.ipynb"))
NAMES = [p.name for p in NOTEBOOKS]


def _cells(path):
    return nbformat.read(path, as_version=4).cells


def test_notebooks_are_numbered_without_gaps():
    assert [n[:2] for n in NAMES] == [f"{i:02d}" for i in range(len(NAMES))]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=NAMES)
def test_navigation_at_top_and_bottom_links_index_previous_and_next(path):
    cells = _cells(path)
    i = NAMES.index(path.name)
    for cell in (cells[0], cells[-1]):
        assert cell.cell_type == "markdown" and cell.source.startswith("**transferkit**")
        links = re.findall(r"\]\(([^)]+\.ipynb)\)", cell.source)
        expected = ["00_index.ipynb"] + NAMES[max(0, i - 1):i] + NAMES[i + 1:i + 2]
        assert links == expected, f"{path.name}: nav links {links}, expected {expected}"


@pytest.mark.parametrize("path", [p for p in NOTEBOOKS if not p.name.startswith("00")],
                         ids=[n for n in NAMES if not n.startswith("00")])
def test_objectives_recap_and_a_self_checking_exercise(path):
    text = "\n".join(c.source for c in _cells(path) if c.cell_type == "markdown")
    assert "In this notebook you will" in text
    assert re.search(r"^#+ .*Recap", text, re.M), "a Recap section"
    assert re.search(r"^#+ .*Exercise", text, re.M), "an Exercise section"
    assert "<details>" in text and "Solution" in text, "a hidden solution"
    code = "\n".join(c.source for c in _cells(path) if c.cell_type == "code")
    assert "Not answered yet" in code, "a self-check cell that reacts to the placeholder"


def test_the_index_lists_every_notebook():
    index = "\n".join(c.source for c in _cells(NOTEBOOKS[0]))
    for name in NAMES[1:]:
        assert f"({name})" in index, f"00_index does not link {name}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=NAMES)
def test_outputs_are_executed_readable_and_error_free(path):
    code = [c for c in _cells(path) if c.cell_type == "code"]
    assert all(c.execution_count for c in code), "execute the notebook before committing it"
    for cell in code:
        for out in cell.outputs:
            assert out.output_type != "error", f"{path.name}: an error output is committed"
            if out.output_type == "stream" and out.name == "stderr":
                assert "Warning" not in out.text, f"{path.name}: a warning is committed: {out.text}"
            data = out.get("data", {})
            if data.get("text/plain", "").startswith("<Figure size"):
                assert "image/png" in data, (f"{path.name}: a figure shows as text only: "
                                             "execute it with the kit imported")
