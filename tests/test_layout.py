"""The shape of the code: imports go one way through the layers, no cycles, no
long functions, and the root holds only what a user runs or reads."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from conftest import REPO_ROOT

# Lower layers never import higher ones; a module may import its own layer.
LAYERS = {
    "lstm_ae.errors": 0, "lstm_ae.files": 0, "lstm_ae.choices": 0,
    "models": 1, "lstm_ae.datasets": 1,
    "lstm_ae.engine": 2,
    "lstm_ae.evaluation": 3,
    "lstm_ae.reporting": 4,
    "lstm_ae.cli": 5,
}
SCRIPTS = ("lstm_ae_toy", "lstm_ae_mnist", "lstm_ae_snp500", "reproduce")
ROOT_CODE = {"lstm_ae_toy.py", "lstm_ae_mnist.py", "lstm_ae_snp500.py", "models.py", "reproduce.py"}
MAX_FUNCTION_LINES = 60


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    files = [REPO_ROOT / f"{name}.py" for name in (*SCRIPTS, "models")]
    files += sorted((REPO_ROOT / "lstm_ae").rglob("*.py"))
    return {module_name(path): path for path in files}


def layer(module: str) -> int:
    if module in SCRIPTS:
        return 6
    for prefix, number in LAYERS.items():
        if module == prefix or module.startswith(prefix + "."):
            return number
    raise AssertionError(f"{module} is in no layer of LAYERS")


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """The project modules ``path`` imports anywhere in its body (functions too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {name for name in names if name in known}
    return found


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    known = set(modules)
    return {name: imported_modules(path, known) - {name} for name, path in modules.items()}


def test_every_import_goes_down_or_across_a_layer():
    upward = [f"{module} (layer {layer(module)}) imports {target} (layer {layer(target)})"
              for module, targets in import_graph().items() for target in targets
              if layer(target) > layer(module) and not target.startswith(module + ".")]
    assert not upward, "\n".join(upward)


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules, or None. Importing a package's own
    submodule (lstm_ae.engine -> lstm_ae.engine.training) is not an edge back."""
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> list[str] | None:
        state[node] = 1
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return stack[stack.index(target):] + [target]
            if state.get(target) is None:
                cycle = visit(target, stack + [target])
                if cycle:
                    return cycle
        state[node] = 2
        return None

    for start in sorted(graph):
        if state.get(start) is None:
            cycle = visit(start, [start])
            if cycle:
                return cycle
    return None


def test_no_import_cycle():
    assert find_cycle(import_graph()) is None


def test_the_checks_can_fail():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert layer("lstm_ae.engine.training") > layer("models") > layer("lstm_ae.errors")
    with pytest.raises(AssertionError):
        layer("somewhere_else")


def test_no_function_is_long():
    files = list(project_modules().values()) + sorted((REPO_ROOT / "benchmarks").glob("*.py"))
    long = []
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(REPO_ROOT)}:{node.name} {lines} lines")
    assert not long, "\n".join(long)


def test_the_root_holds_only_what_a_user_runs_or_reads():
    code = {path.name for path in REPO_ROOT.glob("*.py")}
    assert code == ROOT_CODE
    for folder in ("lstm_ae", "tests", "benchmarks", "figures", "data"):
        assert (REPO_ROOT / folder).is_dir(), folder


def test_no_committed_file_holds_a_machine_path():
    import re
    import subprocess
    files = subprocess.run(["git", "ls-files"], cwd=REPO_ROOT, capture_output=True, text=True,
                           check=True).stdout.split()
    pattern = re.compile(r"(?<![\w.])/(?:work|root|home|Users)/\w")
    found = [name for name in files if not name.startswith("tests/")
             and name.endswith((".md", ".py", ".json", ".txt", ".toml", ".cfg", ".ini"))
             and pattern.search((REPO_ROOT / name).read_text(errors="replace"))]
    assert not found, found


def test_the_results_page_shows_no_machine_path():
    from lstm_ae.reporting.results_page import without_machine_paths
    shown = without_machine_paths("python lstm_ae_snp500.py --data /srv/x/prices.csv.gz --quick")
    assert shown == "python lstm_ae_snp500.py --data PATH/TO/prices.csv.gz --quick"
