"""The README's library table names only things that exist.

Each row of the table under "## The library" names modules in its first column and, in
backticks in its second, what a reader can import from them: ``from MODULE import NAME`` must
work for one of the row's modules. A name written as a call (``run_fedavg(..., dp=DPConfig(...))``)
must also accept the keywords shown. A ``python -m MODULE ...`` row must name a runnable module.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import re
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
EXTRAS = set(tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
             ["project"]["optional-dependencies"])
OPTIONAL = {"flwr": "flower", "tenseal": "he"}  # import name -> extra


def library_table() -> list[tuple[str, str]]:
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## The library", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")]
    header, *body = rows
    assert header.startswith("| module |"), header
    cells = [[c.strip() for c in row.strip().strip("|").split("|")] for row in body]
    return [(first, second) for first, second in cells if not set(first) <= {"-"}]


ROWS = library_table()


def _code(cell: str) -> list[str]:
    """Backticked snippets, except the name of an optional extra ("extra `he`")."""
    return [m.group(2) for m in re.finditer(r"(extra )?`([^`]+)`", cell) if not m.group(1)]


def test_extras_named_in_the_table_exist():
    named = {m for _, second in ROWS for m in re.findall(r"extra `([^`]+)`", second)}
    assert named and named <= EXTRAS


def _resolve(name: str, imported: list) -> list:
    """``name`` from one of the row's modules, or a dotted ``course_lib.x.y.name``."""
    if name.startswith("course_lib."):
        module, _, attribute = name.rpartition(".")
        return [getattr(_import(module), attribute)]
    found = [getattr(m, name) for m in imported if hasattr(m, name)]
    if not found:  # a submodule attribute only appears once imported
        found = [importlib.import_module(f"{m.__name__}.{name}") for m in imported
                 if hasattr(m, "__path__")
                 and importlib.util.find_spec(f"{m.__name__}.{name}") is not None]
    return found


def _import(module: str):
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        top = (exc.name or "").split(".")[0]
        if top in OPTIONAL:
            pytest.skip(f"{module} needs the optional extra {OPTIONAL[top]!r}")
        raise


def test_the_table_is_found_and_has_rows():
    assert len(ROWS) >= 10
    assert all(_code(first) for first, _ in ROWS)


@pytest.mark.parametrize("first, second", ROWS, ids=[r[0][:60] for r in ROWS])
def test_every_module_and_name_in_the_table_imports(first, second):
    commands = [c for c in _code(first) if c.startswith("python -m ")]
    modules = [c for c in _code(first) if c.startswith("course_lib")]
    for command in commands:
        target = command.split()[2]
        spec = importlib.util.find_spec(target)
        assert spec is not None, command
        if spec.submodule_search_locations:  # a package runs its __main__
            assert importlib.util.find_spec(target + ".__main__") is not None, command
    imported = [_import(m) for m in modules]
    for snippet in _code(second):
        if snippet.startswith("--"):  # an option of the row's command
            option = snippet.split()[0]
            sources = [path.read_text(encoding="utf-8") for c in commands
                       for path in _sources_of(c.split()[2])]
            assert any(f'"{option}"' in source for source in sources), (
                f"{option} is not an option of {', '.join(commands)}")
            continue
        expression = ast.parse(snippet.replace("...", "None"), mode="eval").body
        call = expression if isinstance(expression, ast.Call) else None
        name = ast.unparse(call.func if call else expression)
        if not all(part.isidentifier() for part in name.split(".")):
            pytest.fail(f"{snippet!r} in the row for {first} is neither a name nor a call")
        found = _resolve(name, imported)
        assert found, f"`{name}` cannot be imported from {', '.join(modules)}"
        if call:
            parameters = inspect.signature(found[0]).parameters
            takes_any = any(p.kind is p.VAR_KEYWORD for p in parameters.values())
            unknown = [k.arg for k in call.keywords if k.arg not in parameters and not takes_any]
            assert not unknown, f"{name} takes no keyword(s) {unknown}"
            for keyword in call.keywords:  # DPConfig(...) inside the call
                if isinstance(keyword.value, ast.Call):
                    inner = ast.unparse(keyword.value.func)
                    assert _resolve(inner, imported), (
                        f"`{inner}` cannot be imported from {', '.join(modules)}")


def _sources_of(module: str) -> list[Path]:
    spec = importlib.util.find_spec(module)
    if spec.submodule_search_locations:
        return sorted(Path(next(iter(spec.submodule_search_locations))).rglob("*.py"))
    return [Path(spec.origin)]
