"""The layers of docs/architecture.md, checked on the source: what may import what, no import
circle, and the size limits (300 lines a module, 50 a function)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("steering", "quora_kids", "webapp")
# steering's layers, lowest first: a module may import its own layer and those before it.
LAYERS = [("steering.paths", "steering.llm", "steering.errors"), ("steering.runtime",), ("steering.metrics",), ("steering.sae",),
          ("steering.artefacts",), ("steering.autosteer",), ("steering.cli", "steering.__main__")]
MAX_MODULE_LINES, MAX_FUNCTION_LINES = 300, 50


def modules() -> dict[str, Path]:
    found = {"app": ROOT / "app.py"}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(name: str, path: Path) -> set[str]:
    """Every module `name` imports, anywhere in the file (relative imports resolved)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            out.add(base)
            out |= {f"{base}.{a.name}" for a in node.names}
    return out


GRAPH = {name: imports(name, path) for name, path in modules().items()}


def project_edges(name: str) -> set[str]:
    return {m for m in GRAPH[name] if m in GRAPH and m != name}


def layer(name: str) -> int:
    return next(i for i, prefixes in enumerate(LAYERS) if any(name == p or name.startswith(p + ".") for p in prefixes))


def test_steering_never_imports_the_site_the_app_or_gradio():
    for name, deps in GRAPH.items():
        if name.startswith("steering"):
            bad = {d for d in deps if d.split(".")[0] in ("quora_kids", "webapp", "app", "gradio")}
            assert not bad, f"{name} imports {bad}"


def test_quora_kids_never_imports_the_app_or_gradio():
    for name, deps in GRAPH.items():
        if name.startswith("quora_kids"):
            assert not {d for d in deps if d.split(".")[0] in ("webapp", "app", "gradio")}, name


@pytest.mark.parametrize("name", sorted(n for n in GRAPH if n.startswith("steering.") and n.count(".") >= 1))
def test_steering_modules_import_only_their_layer_and_those_below(name):
    for dep in project_edges(name):
        if dep.startswith("steering."):
            assert layer(dep) <= layer(name), f"{name} (layer {layer(name)}) imports {dep} (layer {layer(dep)})"


def test_no_import_circle():
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for dep in sorted(project_edges(node)):
            if state.get(dep) == 1:
                pytest.fail("import circle: " + " -> ".join(trail[trail.index(dep):] + [dep]) if dep in trail else dep)
            if dep not in state:
                visit(dep, trail + [dep])
        state[node] = 2

    for name in sorted(GRAPH):
        if name not in state:
            visit(name, [name])


def test_modules_and_functions_stay_short():
    long_modules, long_functions = [], []
    benchmarks = {f"benchmarks.{p.stem}": p for p in (ROOT / "benchmarks").glob("*.py")}
    for name, path in {**modules(), **benchmarks}.items():
        text = path.read_text()
        if len(text.splitlines()) > MAX_MODULE_LINES:
            long_modules.append((name, len(text.splitlines())))
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES:
                long_functions.append((name, node.name, node.end_lineno - node.lineno + 1))
    assert not long_modules and not long_functions, (long_modules, long_functions)


@pytest.mark.parametrize("cli", ["steering.cli.main", "quora_kids.cli"])
def test_building_a_command_line_imports_no_engine(cli):
    """--help and a bad option answer at once: the commands import torch and transformers only
    when they run."""
    import subprocess
    import sys

    code = (f"import sys; from {cli} import build_parser; build_parser(); "
            "print(sorted(m for m in ('torch', 'transformers', 'openai', 'datasets', 'gradio') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout.strip()
    assert out == "[]"
