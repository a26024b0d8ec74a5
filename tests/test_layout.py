"""The library's layout, read from the code: imports point down the layers, no import cycle,
and no private name crosses a package boundary (shared/DESIGN.md, "Layers")."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "course_lib"

# Each package may import only from the packages listed for it (and from itself). The
# top-level modules errors.py, _validation.py and _threads.py are imported by all.
BASE = {"errors", "_validation", "_threads"}
ALLOWED = {
    "crypto": set(),
    "fl": {"crypto", "dp", "secagg"},
    "secagg": {"crypto"},
    "dp": set(),
    "llm": {"crypto", "fl", "dp"},
    "attacks": {"crypto", "fl", "dp", "llm", "secagg"},
    "deploy": {"crypto", "fl", "dp", "secagg"},
    "costs": {"crypto", "fl", "dp", "secagg", "plots"},
    "plots": {"fl"},
    "diagrams": set(),
    "widgets": {"fl", "dp", "secagg", "plots"},
    "cli": {"fl", "dp", "secagg", "plots"},
    "grade": set(),
    "glossary": set(),
    "__main__": {"cli"},
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[str, list[str], int]]:
    """(imported module, names taken from it, line) for every import in the file, at any depth."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = _module_name(path) if path.name == "__init__.py" else \
        _module_name(path).rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, [], node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([module] if module else []))
            found.append((module, [alias.name for alias in node.names], node.lineno))
    return [item for item in found if item[0].split(".")[0] == "course_lib"]


MODULES = {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _resolve(module: str, names: list[str]) -> list[str]:
    """The course_lib modules an import statement loads (``from pkg import submodule`` too)."""
    targets = [module] if module in MODULES else []
    targets += [f"{module}.{n}" for n in names if f"{module}.{n}" in MODULES]
    return targets or [module]


def test_imports_point_down_the_layers():
    wrong = []
    for module, path in MODULES.items():
        package = _package(module)
        if package in BASE or not package:
            continue
        allowed = ALLOWED[package] | BASE | {package, ""}
        for target, names, line in _imports(path):
            for loaded in _resolve(target, names):
                if _package(loaded) not in allowed:
                    wrong.append(f"{path.relative_to(ROOT.parent)}:{line} imports {loaded}")
    assert not wrong, "\n".join(wrong)


def test_no_private_name_crosses_a_package():
    wrong = []
    for module, path in MODULES.items():
        package = _package(module)
        for target, names, line in _imports(path):
            if _package(target) in BASE or _package(target) == package:
                continue
            private_module = any(part.startswith("_") and part != "__init__"
                                 for part in target.split(".")[2:])
            private_names = [n for n in names if n.startswith("_")]
            if private_module or private_names:
                wrong.append(f"{path.relative_to(ROOT.parent)}:{line} imports "
                             f"{target} {private_names or ''}")
    assert not wrong, "\n".join(wrong)


def test_no_import_cycle():
    graph = {m: set() for m in MODULES}
    for module, path in MODULES.items():
        for target, names, _ in _imports(path):
            for loaded in _resolve(target, names):
                # A package's __init__ re-exporting its own modules is not a cycle of concepts.
                if loaded in MODULES and loaded != module and not module.startswith(loaded + "."):
                    graph[module].add(loaded)
    cycles, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, "\n".join(cycles)


@pytest.mark.parametrize("package", sorted({_package(m) for m in MODULES} - BASE - {""}))
def test_every_package_has_a_rule(package):
    assert package in ALLOWED
