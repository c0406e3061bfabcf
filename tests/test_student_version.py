"""tools/student_version.py: the student version of every notebook holds no solution, keeps each
exercise and its self-check, runs the very same code as the teacher's version (which nbval
executes), and a solution that is not tagged never slips through."""
from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
NAMES = [p.name for p in NOTEBOOKS]

_spec = importlib.util.spec_from_file_location("student_version", ROOT / "tools" / "student_version.py")
student_version = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(student_version)


def _read(path):
    return json.loads(Path(path).read_text(encoding="utf-8"))


def _tagged(nb, tag):
    return [c for c in nb["cells"] if tag in c.get("metadata", {}).get("tags", [])]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """{name: (teacher nb, student nb)}, the student versions written by the tool's CLI."""
    out = tmp_path_factory.mktemp("student")
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in NOTEBOOKS}
    assert student_version.main([str(out)]) == 0
    after = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in NOTEBOOKS}
    assert before == after, "building the student versions changed a committed notebook"
    assert sorted(p.name for p in out.iterdir()) == NAMES, "one student notebook per notebook, no leftovers"
    return {p.name: (_read(p), _read(out / p.name)) for p in NOTEBOOKS}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=NAMES)
def test_teacher_notebook_tags_each_exercise_self_check_and_solution_in_order(path):
    nb = _read(path)
    index = {tag: [i for i, c in enumerate(nb["cells"]) if tag in c.get("metadata", {}).get("tags", [])]
             for tag in ("exercise", "self-check", "solution")}
    assert index["exercise"] and len({len(v) for v in index.values()}) == 1, f"{path.name}: {index}"
    order = [i for triple in zip(index["exercise"], index["self-check"], index["solution"]) for i in triple]
    assert order == sorted(order), f"{path.name}: exercise, self-check, solution, in turn: {index}"
    for i in index["self-check"]:
        assert "Not answered yet" in "".join(nb["cells"][i]["source"])


@pytest.mark.parametrize("name", NAMES)
def test_student_version_has_no_solution(built, name):
    teacher, student = built[name]
    solutions = ["".join(c["source"]) for c in _tagged(teacher, "solution")]
    assert solutions and all("```python" in s for s in solutions), "the teacher's version holds the worked solutions"
    assert not _tagged(student, "solution")
    text = json.dumps(student, ensure_ascii=False)
    assert "<details>" not in text and "summary>Solution" not in text
    for solution in solutions:
        code = solution.split("```python", 1)[1].split("```", 1)[0].strip()
        assert code and code not in text, f"{name}: a solution's code is still in the student version"
    assert len(student["cells"]) == len(teacher["cells"]) - len(solutions)
    assert student["metadata"]["transferkit"] == {"version": "student"}


@pytest.mark.parametrize("name", NAMES)
def test_student_version_keeps_exercise_and_self_check_with_cleared_outputs(built, name):
    teacher, student = built[name]
    for tag in ("exercise", "self-check"):
        assert len(_tagged(student, tag)) == len(_tagged(teacher, tag))
        for t, s in zip(_tagged(teacher, tag), _tagged(student, tag)):
            assert (s["id"], s["source"]) == (t["id"], t["source"])
            assert s["outputs"] == [] and s["execution_count"] is None
    # every other output (figures, tables) stays, so learners can read before running
    kept = [(c["id"], c.get("outputs")) for c in teacher["cells"]
            if not {"exercise", "self-check", "solution"} & set(c.get("metadata", {}).get("tags", []))]
    assert [(c["id"], c.get("outputs")) for c in student["cells"]
            if not {"exercise", "self-check"} & set(c.get("metadata", {}).get("tags", []))] == kept
    nbformat.validate(nbformat.from_dict(student))


@pytest.mark.parametrize("name", NAMES)
def test_student_version_runs_the_same_code_as_the_teacher_version(built, name):
    """The solutions are markdown: the code cells are identical, so nbval's run of the committed
    notebooks executes every line a student notebook holds."""
    teacher, student = built[name]
    code = lambda nb: [(c["id"], c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
    assert code(student) == code(teacher)


def test_an_untagged_solution_is_refused(tmp_path):
    nb = _read(NOTEBOOKS[0])
    for cell in _tagged(nb, "solution"):
        cell["metadata"]["tags"].remove("solution")
    bad = tmp_path / "00_untagged.ipynb"
    bad.write_text(json.dumps(nb), encoding="utf-8")
    with pytest.raises(ValueError, match="not tagged 'solution'"):
        student_version.write_student_versions(tmp_path / "out", [bad])
    assert student_version.main([str(tmp_path / "out"), str(bad)]) == 2
    assert not (tmp_path / "out" / bad.name).exists()


def test_refuses_to_overwrite_the_teacher_notebooks():
    with pytest.raises(ValueError, match="teacher"):
        student_version.write_student_versions(ROOT / "notebooks", NOTEBOOKS[:1])
