"""Write the student version of the notebooks: the committed notebooks are the teacher's.

    python tools/student_version.py OUT_DIR                 # every notebooks/NN_*.ipynb
    python tools/student_version.py OUT_DIR notebooks/03_freezing.ipynb ...

In the committed (teacher's) notebooks each exercise has three kinds of tagged cells:
``exercise`` (where the learner writes the answer), ``self-check`` (recomputes the answer and
says whether it is right) and ``solution`` (the worked answer). The student version

- drops every cell tagged ``solution``,
- clears the outputs and execution counts of the ``exercise`` and ``self-check`` cells,
- keeps every other cell, its outputs (figures, tables) and the cell ids as they are,

and is written to OUT_DIR under the same file name (through a temporary file, then renamed).
A notebook whose solution is not tagged (a ``<details><summary>Solution`` cell left untagged)
is refused, so a solution never reaches learners by mistake. Only the standard library is
used: no Jupyter needed to run it.

Put OUT_DIR one folder below the repository root (e.g. ``student/``) if the student versions
are to be executed: the notebooks read ``../tests/reference_numerics.json`` relative to
themselves (notebook 00 says "unknown" without it; nothing fails).
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
SOLUTION, EXERCISE, SELF_CHECK = "solution", "exercise", "self-check"
UNTAGGED_SOLUTION = "<details><summary>Solution"


def tags(cell):
    return cell.get("metadata", {}).get("tags", [])


def _source(cell):
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def student_notebook(nb, name="notebook"):
    """The student version of a notebook (a dict as read by json); `nb` is left unchanged."""
    out = copy.deepcopy(nb)
    cells = []
    for cell in out["cells"]:
        if SOLUTION in tags(cell):
            continue
        if UNTAGGED_SOLUTION in _source(cell):
            raise ValueError(f"{name}: a solution cell is not tagged {SOLUTION!r} "
                             f"(cell id {cell.get('id')}); tag it so the student version drops it")
        if cell["cell_type"] == "code" and {EXERCISE, SELF_CHECK} & set(tags(cell)):
            cell["outputs"] = []
            cell["execution_count"] = None
        cells.append(cell)
    out["cells"] = cells
    out.setdefault("metadata", {})["transferkit"] = {"version": "student"}
    return out


def write_student_versions(out_dir, notebooks=None):
    """Write the student version of each notebook into out_dir; returns the written paths."""
    out_dir = Path(out_dir).resolve()
    if out_dir == NOTEBOOKS.resolve():
        raise ValueError("OUT_DIR is notebooks/ itself: that would overwrite the teacher's version")
    notebooks = [Path(p) for p in notebooks] if notebooks else sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for path in notebooks:
        nb = json.loads(path.read_text(encoding="utf-8"))
        text = json.dumps(student_notebook(nb, path.name), indent=1, ensure_ascii=False) + "\n"
        target = out_dir / path.name
        fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=f".{path.stem}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        written.append(target)
    return written


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", help="folder for the student versions (created if missing)")
    parser.add_argument("notebooks", nargs="*", help="notebooks to convert (default: notebooks/NN_*.ipynb)")
    args = parser.parse_args(argv)
    try:
        written = write_student_versions(args.out_dir, args.notebooks)
    except (ValueError, OSError) as error:
        print(f"student_version: error: {error}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
