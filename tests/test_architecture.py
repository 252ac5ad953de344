"""The package layout: imports (lazy ones included) form a DAG that flows augment <- submission <-
arc_trm; augment and submission never import torch; each package exports a small API."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("augment", "submission", "arc_trm")  # each may import only itself and those before it


def module_name(path: Path) -> str:
    return path.parent.name if path.stem == "__init__" else f"{path.parent.name}.{path.stem}"


def imports_of(path: Path) -> set[str]:
    """Every project module `path` imports, at the top or inside a function."""
    pkg = path.parent.name
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom):
            base = f"{pkg}.{node.module}" if node.level and node.module else pkg if node.level else node.module or ""
            names = [base] if base not in PACKAGES else [f"{base}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        found |= {n for n in names if n.split(".")[0] in PACKAGES or n.split(".")[0] == "torch"}
    return found


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports_of(p) for pkg in PACKAGES for p in sorted((ROOT / pkg).glob("*.py"))}


def test_dependencies_flow_one_way_and_torch_stays_out_of_augment_and_submission():
    for mod, deps in graph().items():
        layer = PACKAGES.index(mod.split(".")[0])
        for dep in deps:
            top = dep.split(".")[0]
            if top == "torch":
                assert layer == 2, f"{mod} imports torch"
            else:
                assert PACKAGES.index(top) <= layer, f"{mod} imports {dep}: against the direction augment <- submission <- arc_trm"


def find_cycle(g: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(mod: str, path: list[str]) -> list[str] | None:
        state[mod] = 1
        for dep in sorted(d for d in g.get(mod, ()) if d in g and d != mod):
            if state.get(dep) == 1:
                return path + [dep]
            if dep not in state and (cycle := visit(dep, path + [dep])):
                return cycle
        state[mod] = 2
        return None

    for mod in g:
        if mod not in state and (cycle := visit(mod, [mod])):
            return cycle
    return None


def test_imports_form_a_dag():
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_checks_see_lazy_imports_and_cycles(tmp_path):
    pkg = tmp_path / "arc_trm"
    pkg.mkdir()
    (pkg / "a.py").write_text("def f():\n    from arc_trm import b\n")  # a lazy import still counts
    assert imports_of(pkg / "a.py") == {"arc_trm.b"}
    assert find_cycle({"x": {"y"}, "y": {"z"}, "z": {"x"}}) == ["x", "y", "z", "x"]
    assert find_cycle({"x": {"y"}, "y": set()}) is None


def test_importing_augment_and_submission_does_not_import_torch():
    code = "import sys, augment, submission, arc_trm, arc_trm.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "False"


def test_curated_apis():
    import arc_trm
    import augment
    import submission

    assert arc_trm.__version__.count(".") == 2
    for pkg in (augment, submission, arc_trm):
        for name in pkg.__all__:
            assert getattr(pkg, name) is not None, f"{pkg.__name__}.{name}"
    assert arc_trm.TRM.__name__ == "TRM" and augment.load_tasks and submission.rank_candidates


def test_stderr_lines_go_through_eprint():
    """print(..., file=sys.stderr) writes a line and its newline apart; under torchrun another rank's
    line landed between them (a CI run's stop line began mid-line). Package code uses eprint."""
    offenders = []
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).glob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print"
                        and any(k.arg == "file" and "stderr" in ast.unparse(k.value) for k in node.keywords)):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders, offenders
