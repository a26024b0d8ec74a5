"""Every module of course_lib imports, with the dependencies pyproject.toml declares.

`make test-min` runs this file (with the rest of the unit tests) in a venv that holds every
runtime dependency at its lower bound (constraints-min.txt), so a module that needs a newer
release than the one declared fails here. Modules that need an optional extra (Flower,
TenSEAL) are skipped when that extra is absent; any other missing module is a failure.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
import sys
from pathlib import Path

import pytest

import course_lib

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
# import name -> distribution name, where they differ
IMPORT_NAMES = {"sklearn": "scikit-learn", "jupyter_client": "jupyter-client"}


def _distribution(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].strip().lower().replace("_", "-")


RUNTIME = {_distribution(r) for r in PYPROJECT["project"]["dependencies"]}
OPTIONAL = {_distribution(r) for extra in PYPROJECT["project"]["optional-dependencies"].values()
            for r in extra} - RUNTIME

MODULES = sorted(info.name for info in pkgutil.walk_packages(course_lib.__path__, "course_lib."))


def test_the_walk_finds_the_whole_package():
    assert len(MODULES) > 50
    assert {"course_lib.crypto.model", "course_lib.crypto._parallel", "course_lib.grade",
            "course_lib.deploy.apps"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_module_imports(name):
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as exc:
        top = (exc.name or "").split(".")[0]
        dist = IMPORT_NAMES.get(top, top).lower().replace("_", "-")
        if dist in OPTIONAL:
            pytest.skip(f"{name} needs {dist}, an optional extra that is not installed")
        raise


def _imported_top_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


SOURCES = sorted((ROOT / "course_lib").rglob("*.py"))


def test_the_library_never_uses_ctypes():
    """No calls into the interpreter's C API or libc behind Python's back."""
    offenders = [str(path.relative_to(ROOT)) for path in SOURCES
                 if {"ctypes", "_ctypes"} & _imported_top_names(path)
                 or re.search(r"\b__import__\(\s*[\'\"]_?ctypes", path.read_text(encoding="utf-8"))]
    assert offenders == []


def test_runtime_imports_are_declared_dependencies():
    """Every third-party package a module imports is declared (runtime or an extra)."""
    found: dict[str, set[str]] = {}
    for path in SOURCES:
        for top in _imported_top_names(path) - set(sys.stdlib_module_names) - {"course_lib"}:
            dist = IMPORT_NAMES.get(top, top).lower().replace("_", "-")
            found.setdefault(dist, set()).add(str(path.relative_to(ROOT)))
    undeclared = {dist: sorted(files) for dist, files in found.items()
                  if dist not in RUNTIME | OPTIONAL}
    assert undeclared == {}


def test_core_modules_need_no_optional_extra():
    """Only deploy/ (Flower) and the CKKS module may import an optional extra's package."""
    allowed = ("deploy", "ckks.py")
    found = {str(path.relative_to(ROOT)): sorted(extras) for path in SOURCES
             if (extras := {IMPORT_NAMES.get(t, t).lower().replace("_", "-")
                            for t in _imported_top_names(path)} & OPTIONAL)
             and not any(part in allowed for part in path.parts)}
    assert found == {}


def _version(text: str) -> tuple[int, ...]:
    parts = [int(p) for p in re.match(r"\d+(?:\.\d+)*", text).group(0).split(".")]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def test_constraints_min_pins_every_runtime_dependency_at_its_lower_bound():
    lower = {}
    for requirement in PYPROJECT["project"]["dependencies"]:
        match = re.search(r">=\s*([\w.]+)", requirement)
        assert match, f"{requirement!r} has no lower bound"
        lower[_distribution(requirement)] = _version(match.group(1))
    pins = {}
    for line in (ROOT / "constraints-min.txt").read_text(encoding="utf-8").splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[_distribution(name)] = _version(version)
    assert pins == lower
