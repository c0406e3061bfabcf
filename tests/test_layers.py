"""The package's layering: every module imports only from lower tiers.

The tier table is the one written in ``transferkit/__init__.py``'s docstring; this test
parses every module's imports (at any depth, function bodies included) with ``ast``.
"""
import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "transferkit"
# the modules whose private helpers others may import: the checks and the I/O helpers
PRIVATE_OK = {"checks", "datachecks", "_numerics"}


def tiers():
    doc = ast.get_docstring(ast.parse((PACKAGE / "__init__.py").read_text()))
    table = {}
    for level, names in re.findall(r"^\s+(\d+): (.+)$", doc, re.M):
        for name in names.split(","):
            table[name.strip()] = int(level)
    return table


def kit_module(path):
    """The tier table's name for a file: its stem, or its subpackage's name."""
    relative = path.relative_to(PACKAGE)
    return relative.parts[0] if len(relative.parts) > 1 else path.stem


def imports(path):
    """(module imported from the package, names taken from it) for every relative import
    that leaves the file's own subpackage (a subpackage's files import each other freely)."""
    depth = len(path.relative_to(PACKAGE).parts)  # 1: a top-level module, 2: in a subpackage
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == depth:
            if node.module:
                yield node.module.split(".")[0], [a.name for a in node.names]
            else:  # from . import x, y
                for alias in node.names:
                    yield alias.name, []


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts
                 and p.relative_to(PACKAGE).parts != ("__init__.py",))


def test_every_module_has_a_tier():
    assert {kit_module(p) for p in MODULES} == set(tiers())


def test_the_readme_describes_every_module():
    """README's package table has a row for each module a maintainer will open."""
    readme = (PACKAGE.parent / "README.md").read_text()
    rows = set(re.findall(r"^\| `([a-z_]+)` \|", readme, re.M))
    public = {m for m in tiers() if m not in ("_api", "__main__")}
    assert public <= rows, f"modules without a README row: {sorted(public - rows)}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.stem)
def test_imports_only_from_lower_tiers(path):
    table = tiers()
    for module, _ in imports(path):
        if module == "__version__" or module not in table:  # the package's own attributes
            continue
        own = kit_module(path)
        assert table[module] < table[own], (
            f"{own} (tier {table[own]}) imports {module} (tier {table[module]})")


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.stem)
def test_no_private_names_across_modules(path):
    for module, names in imports(path):
        private = [n for n in names if n.startswith("_") and module not in PRIVATE_OK]
        assert not private, f"{path.stem} imports private {private} from {module}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.stem)
def test_every_module_declares_all(path):
    if path.stem in ("__main__", "_api"):
        return
    assert "__all__" in path.read_text(), f"{path.stem} has no __all__"
