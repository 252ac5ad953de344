"""The quick tier (`bash scripts/test.sh --quick`, every test not marked `slow`) keeps touching every
module: each module of augment/, submission/ and arc_trm/ is imported by at least one quick test.
A new module without a quick test, or a file's last quick test marked slow, fails here."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("augment", "submission", "arc_trm")
SLOW = "pytest.mark.slow"


@dataclass
class FileImports:
    """What one test file imports, split by where: imports inside a test count for that test only."""
    shared: set[str] = field(default_factory=set)  # module level, helpers, fixtures
    quick_tests: dict[str, set[str]] = field(default_factory=dict)  # quick test name -> its own imports
    slow_marks: int = 0  # `pytest.mark.slow` uses this parser understood


def project_modules() -> set[str]:
    return {".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            for pkg in PACKAGES for p in (ROOT / pkg).glob("*.py")}


def imported(node: ast.AST) -> set[str]:
    """Project modules named by the imports under node (`from arc_trm import infer` names arc_trm.infer)."""
    names: set[str] = set()
    for n in ast.walk(node):
        if isinstance(n, ast.Import):
            names.update(a.name for a in n.names)
        elif isinstance(n, ast.ImportFrom) and n.module and n.level == 0:
            names.add(n.module)
            names.update(f"{n.module}.{a.name}" for a in n.names)
    return {m for m in names if m.split(".")[0] in PACKAGES}


def is_slow_mark(node: ast.AST) -> bool:
    return ast.unparse(node) == SLOW


def marks_slow(decorators: list[ast.expr]) -> int:
    return sum(map(is_slow_mark, decorators))


def module_mark_slow(tree: ast.Module) -> int:
    """`pytestmark = pytest.mark.slow` or a list that holds it."""
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "pytestmark" for t in stmt.targets):
            values = stmt.value.elts if isinstance(stmt.value, (ast.List, ast.Tuple)) else [stmt.value]
            return sum(map(is_slow_mark, values))
    return 0


def read_test_file(path: Path) -> FileImports:
    tree = ast.parse(path.read_text(), filename=str(path))
    module_slow = module_mark_slow(tree)
    found = FileImports(slow_marks=module_slow)
    for stmt in tree.body:
        if isinstance(stmt, ast.FunctionDef) and stmt.name.startswith("test"):
            add_test(found, stmt, slow=bool(module_slow))
        elif isinstance(stmt, ast.ClassDef) and stmt.name.startswith("Test"):
            class_slow = marks_slow(stmt.decorator_list)
            found.slow_marks += class_slow
            for f in stmt.body:
                if isinstance(f, ast.FunctionDef) and f.name.startswith("test"):
                    add_test(found, f, slow=bool(module_slow or class_slow))
                else:
                    found.shared |= imported(f)
        else:
            found.shared |= imported(stmt)
    return found


def add_test(found: FileImports, test: ast.FunctionDef, slow: bool) -> None:
    own = marks_slow(test.decorator_list)
    found.slow_marks += own
    if not (own or slow):
        found.quick_tests[test.name] = imported(test)


def quick_imports(found: FileImports) -> set[str]:
    if not found.quick_tests:
        return set()
    return found.shared.union(*found.quick_tests.values())


def test_every_project_module_is_imported_by_a_quick_test() -> None:
    covered: set[str] = set()
    for path in sorted((ROOT / "tests").glob("test_*.py")):
        covered |= quick_imports(read_test_file(path))
    missing = sorted(project_modules() - covered)
    assert not missing, f"no quick test (one not marked slow) imports {missing}: add one, or unmark one"


def test_slow_is_only_marked_in_forms_this_check_reads() -> None:
    """`slow = pytest.mark.slow; @slow` would hide a slow test from the coverage check above."""
    for path in sorted((ROOT / "tests").glob("*.py")):
        text = path.read_text()
        written = len(re.findall(r"mark\s*\.\s*slow\b", text))
        if path.name.startswith("test_") and path != Path(__file__):
            assert written == read_test_file(path).slow_marks, (
                f"{path.name}: write `@pytest.mark.slow` on a test or class, or `pytestmark = pytest.mark.slow`")


def test_the_check_reads_marks_and_imports_where_they_are(tmp_path: Path) -> None:
    src = tmp_path / "test_x.py"
    src.write_text(
        "import pytest\nfrom augment import grids\n\n"
        "def helper():\n    import submission.vote\n\n"
        "@pytest.mark.slow\ndef test_slow():\n    from arc_trm.infer import load_model\n\n"
        "def test_quick():\n    import arc_trm.export as e\n\n"
        "@pytest.mark.slow\nclass TestHeavy:\n    def test_a(self):\n        from arc_trm import ttt\n")
    found = read_test_file(src)
    assert found.slow_marks == 2
    assert set(found.quick_tests) == {"test_quick"}
    assert quick_imports(found) == {"augment", "augment.grids", "submission.vote", "arc_trm.export"}
    src.write_text("import pytest\nfrom augment import grids\npytestmark = [pytest.mark.slow]\n\n"
                   "def test_a():\n    pass\n")
    found = read_test_file(src)
    assert found.slow_marks == 1 and quick_imports(found) == set()


@pytest.mark.parametrize("module", sorted(project_modules()))
def test_every_project_module_imports(module: str) -> None:
    """Importing is the floor of 'touched': a module that fails to import fails the quick tier."""
    __import__(module)
