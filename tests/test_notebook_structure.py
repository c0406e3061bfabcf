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
    solutions = [c for c in _cells(path) if "solution" in c.metadata.get("tags", [])]
    assert solutions and all("Solution" in c.source for c in solutions), (
        "a solution cell per exercise, tagged 'solution' (tools/student_version.py drops it)")
    code = "\n".join(c.source for c in _cells(path) if c.cell_type == "code")
    assert "Not answered yet" in code, "a self-check cell that reacts to the placeholder"


MACHINE_DEPENDENT = ("tk.source_model(", "tk.describe_device(", "tk.numerics_fingerprint(",
                     "tk.try_online(", "tk.StrategyLab(")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=NAMES)
def test_nbval_markers_are_cell_tags_not_comments(path):
    """Testing machinery stays out of learners' sight: nbval reads its markers from cell tags,
    and every cell whose output depends on the machine or the cache carries one."""
    from nbval.plugin import comment_markers, find_metadata_tags

    for cell in (c for c in _cells(path) if c.cell_type == "code"):
        comments = [line for line in cell.source.splitlines()
                    if line.strip().lstrip("#").strip() in comment_markers]
        assert not comments, f"{path.name}: an nbval comment in a cell, use a tag: {comments}"
        if any(call in cell.source for call in MACHINE_DEPENDENT):
            assert dict(find_metadata_tags(cell.metadata)) == {"check": False}, (
                f"{path.name}: tag this cell 'nbval-ignore-output':\n{cell.source}")


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


# --------------------------------------------------------------------------- claims as checks
# Every lesson's conclusion drawn from a run is computed and asserted by tk.claim (notebooks
# 01-09 and 11), and the prose quotes no number that the notebook does not print or cite.

CLAIMED = [p for p in NOTEBOOKS if p.name[:2] not in ("00", "10")]


def _claim_calls(source):
    """The tk.claim(...) / claim(...) calls of a code cell, as AST nodes."""
    import ast

    return [node for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", None)) == "claim"]


def _output_text(cell):
    parts = []
    for out in cell.get("outputs", []):
        if out.get("text"):
            parts.append(out.text)
        for key in ("text/plain", "text/html", "text/markdown"):
            if out.get("data", {}).get(key):
                parts.append(out.data[key])
    return "".join(parts)


@pytest.mark.parametrize("path", CLAIMED, ids=[p.name for p in CLAIMED])
def test_a_lesson_asserts_its_conclusions_with_claims(path):
    claim_cells = [c for c in _cells(path) if c.cell_type == "code" and _claim_calls(c.source)]
    assert claim_cells, f"{path.name}: no code cell calls tk.claim(...)"
    for cell in claim_cells:
        assert _output_text(cell).count("claim holds:") == len(_claim_calls(cell.source)), (
            f"{path.name}: a claim cell's committed output lacks its 'claim holds:' lines:\n"
            + cell.source)


QUOTED = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)\s?(%|points?\b|pp\b)")
RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def _committed_results():
    """{file name: text} of the committed files under benchmarks/results/."""
    import subprocess

    try:
        listed = subprocess.run(["git", "ls-files", "--", str(RESULTS)], capture_output=True,
                                text=True, cwd=RESULTS.parents[1], check=True).stdout.split()
        files = [RESULTS.parents[1] / f for f in listed]
    except (OSError, subprocess.CalledProcessError):  # not a git checkout: what is there
        files = [f for f in RESULTS.rglob("*") if f.is_file()] if RESULTS.is_dir() else []
    return {f.name: f.read_text(encoding="utf-8", errors="ignore") for f in files if f.is_file()}


def _quotes(number, text):
    return re.search(rf"(?<![\d.]){re.escape(number)}(?!\.?\d)", text) is not None


@pytest.mark.parametrize("path", NOTEBOOKS, ids=NAMES)
def test_prose_quotes_only_numbers_the_notebook_prints_or_cites(path):
    """A number before %, 'points' or 'pp' in markdown stands in one of the notebook's outputs,
    or in a committed benchmarks/results/ file that the same markdown cell names."""
    cells = _cells(path)
    printed = "\n".join(_output_text(c) for c in cells if c.cell_type == "code")
    results = _committed_results()
    missing = []
    for cell in cells:
        if cell.cell_type != "markdown":
            continue
        cited = [text for name, text in results.items() if name in cell.source]
        for m in QUOTED.finditer(cell.source):
            if not (_quotes(m.group(1), printed) or any(_quotes(m.group(1), t) for t in cited)):
                missing.append(m.group(0))
    assert not missing, (f"{path.name}: prose quotes {missing}, which no output of the notebook "
                         "prints and no committed benchmarks/results/ file named beside it holds")


# --------------------------------------------------------------------------- figures
# Every figure a notebook shows is drawn by the kit, whose plot functions end with
# tk.plots.check_figure (a title, labelled axes, a legend that hides nothing, no text cut off or
# printed over other text): nbval's execution of a notebook then checks its figures.  A figure
# drawn with matplotlib directly must be passed to tk.plots.check_figure(fig) in its cell.

KIT_FIGURE = re.compile(r"\btk\.(plot_\w+|show_\w+|LiveCurves|StrategyLab)\(|check_figure\(")
MATPLOTLIB = re.compile(r"\bplt\.|\bpyplot\b|\bmatplotlib\b|\bFigure\(|\.subplots\(|\.imshow\(")


def unchecked_drawing(source):
    """Why a code cell's drawing escapes the figure check (None: it does not)."""
    if MATPLOTLIB.search(source) and "check_figure(" not in source:
        return "draws with matplotlib directly: end the cell with tk.plots.check_figure(fig)"
    return None


def test_unchecked_drawing_is_found():
    assert unchecked_drawing("fig, ax = plt.subplots()\nax.plot(x, y)\nfig") is not None
    assert unchecked_drawing("import matplotlib.pyplot as plt") is not None
    assert unchecked_drawing("fig = Figure()\nfig.subplots().imshow(img)") is not None
    assert unchecked_drawing("fig, ax = plt.subplots()\nax.plot(x, y)\n"
                             "tk.plots.check_figure(fig)") is None
    assert unchecked_drawing("tk.plot_bars(results, title='t', ylabel='y', xlabel='x')") is None


@pytest.mark.parametrize("path", NOTEBOOKS, ids=NAMES)
def test_every_figure_comes_from_the_kit_or_is_checked(path):
    for n, cell in enumerate(_cells(path)):
        if cell.cell_type != "code":
            continue
        problem = unchecked_drawing(cell.source)
        assert problem is None, f"{path.name}, cell {n}: {problem}"
        pictures = [o for o in cell.outputs if "image/png" in o.get("data", {})]
        if pictures:
            assert KIT_FIGURE.search(cell.source), (
                f"{path.name}, cell {n} shows a picture that no tk plot function drew (so no "
                "figure check measured it): draw it with tk.plot_* / tk.show_images, or pass "
                "it to tk.plots.check_figure")
