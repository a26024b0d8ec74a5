"""Generate the student notebooks in exercises/ from their sources in solutions/.

Usage::

    python scripts/make_exercises.py            # (re)write exercises/*.ipynb from solutions/
    python scripts/make_exercises.py --check    # exit 1, naming the file, if exercises/ is stale

One source notebook per chapter lives in ``solutions/``; its student version in ``exercises/`` is
generated, never edited by hand. Each exercise cell's source is exactly what nbgrader's
``generate_assignment`` releases with its default settings (ClearSolutions, then
ClearHiddenTests, see ``nbgrader/preprocessors/clearsolutions.py``), so an instructor can also
feed ``solutions/`` to nbgrader as its ``source/`` folder and get the same student notebooks:

- **solution regions**: in a cell marked ``solution`` in its nbgrader metadata, every line from
  one containing ``BEGIN SOLUTION`` to the next containing ``END SOLUTION`` is replaced by the
  stub, each stub line indented like the ``BEGIN`` line: ``# YOUR CODE HERE`` and
  ``raise NotImplementedError()`` in code cells, ``YOUR ANSWER HERE`` in markdown cells. A
  solution cell without a region is replaced whole by the stub.
- **hidden tests**: in a cell marked ``grade``, the lines from ``BEGIN HIDDEN TESTS`` to
  ``END HIDDEN TESTS`` are removed (the grading helper puts them back; see TEACHING.md).
- **outputs**: removed with the execution counts, and the ``collapsed``/``scrolled`` cell
  metadata that goes with them (ClearOutput).
- **locks**: solution and grade cells become non-deletable, grade cells also read-only
  (LockCells), so a learner cannot delete a test by accident.

The nbgrader metadata itself (``grade_id``, ``points``, ...) stays, for the grading helper and
for nbgrader. The output is deterministic (``nbformat.write``: sorted keys, fixed indentation),
which is what ``--check`` compares byte for byte. Sources are validated first, the way
nbgrader's ``CheckCellMetadata`` would: a region outside a solution cell, a missing end marker,
a duplicate ``grade_id`` or a grade cell without points stops the script with the cell named.
"""

from __future__ import annotations

import argparse
import copy
import io
import re
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
CODE_STUB = "# YOUR CODE HERE\nraise NotImplementedError()"  # nbgrader's default for python
TEXT_STUB = "YOUR ANSWER HERE"
BEGIN_SOLUTION, END_SOLUTION = "BEGIN SOLUTION", "END SOLUTION"
BEGIN_HIDDEN, END_HIDDEN = "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"
GRADE_ID = re.compile(r"^[a-zA-Z0-9_\-]+$")  # nbgrader's schema (v3), non-empty


class ExerciseSourceError(ValueError):
    """A solution notebook that nbgrader would refuse; the message names the cell."""


def _replace_regions(source: str, begin: str, end: str, stub: str | None) -> tuple[str, bool]:
    """Replace each ``begin``...``end`` region by ``stub`` indented like its BEGIN line, or drop
    it (``stub=None``). Returns the new source and whether a region was found; an END line
    outside a region is dropped, as nbgrader does."""
    new_lines: list[str] = []
    inside = found = False
    for line in source.split("\n"):
        if begin in line:
            if inside:
                raise ExerciseSourceError(f"nested {begin.lstrip('# ')}")
            inside = found = True
            if stub is not None:
                indent = re.match(r"\s*", line).group(0)
                new_lines.extend(indent + stub_line for stub_line in stub.split("\n"))
        elif end in line:
            inside = False
        elif not inside:
            new_lines.append(line)
    if inside:
        raise ExerciseSourceError(f"{begin.lstrip('# ')} without {end.lstrip('# ')}")
    return "\n".join(new_lines), found


def replace_solution_regions(source: str, stub: str) -> tuple[str, bool]:
    """Replace each solution region of ``source`` by ``stub``, indented like its BEGIN line
    (nbgrader's ``ClearSolutions._replace_solution_region``)."""
    return _replace_regions(source, BEGIN_SOLUTION, END_SOLUTION, stub)


def remove_hidden_tests(source: str) -> tuple[str, bool]:
    """Remove each hidden-test region of ``source`` (nbgrader's ``ClearHiddenTests``)."""
    return _replace_regions(source, BEGIN_HIDDEN, END_HIDDEN, None)


def _flags(cell: nbformat.NotebookNode) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def validate(nb: nbformat.NotebookNode) -> None:
    """Raise :class:`ExerciseSourceError` where nbgrader's metadata checks would fail."""
    seen: set[str] = set()
    for index, cell in enumerate(nb.cells):
        meta = _flags(cell)
        where = f"cell {index} ({meta.get('grade_id', 'no grade_id')})"
        if meta:
            missing = {"schema_version", "grade", "solution", "locked"} - set(meta)
            if missing or meta["schema_version"] != 3:
                raise ExerciseSourceError(f"{where}: nbgrader metadata needs schema_version 3 "
                                          f"and grade/solution/locked, missing {sorted(missing)}")
        grade, solution = meta.get("grade", False), meta.get("solution", False)
        if grade or solution or meta.get("locked", False):
            grade_id = meta.get("grade_id", "")
            if not GRADE_ID.match(grade_id):
                raise ExerciseSourceError(f"{where}: grade_id must match [a-zA-Z0-9_-]+")
            if grade_id in seen:
                raise ExerciseSourceError(f"{where}: duplicate grade_id {grade_id!r}")
            seen.add(grade_id)
        if grade and not isinstance(meta.get("points"), (int, float)):
            raise ExerciseSourceError(f"{where}: a grade cell needs points")
        if cell.cell_type == "markdown" and grade != solution:
            raise ExerciseSourceError(f"{where}: a markdown answer must be grade AND solution")
        try:
            _, has_solution = replace_solution_regions(cell.source, "")
            _, has_hidden = remove_hidden_tests(cell.source)
        except ExerciseSourceError as exc:
            raise ExerciseSourceError(f"{where}: {exc}") from None
        if has_solution and not solution:
            raise ExerciseSourceError(f"{where}: solution region in a cell not marked solution")
        if has_hidden and not grade:
            raise ExerciseSourceError(f"{where}: hidden tests in a cell not marked grade")


def make_exercise(solution: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Return the student version of a solution notebook (the input is not modified)."""
    validate(solution)
    language = solution.metadata.get("kernelspec", {}).get("language", "python")
    if language != "python":
        raise ExerciseSourceError(f"only python notebooks are supported, got {language!r}")
    nb = copy.deepcopy(solution)
    nb.metadata.pop("celltoolbar", None)
    for cell in nb.cells:
        meta = _flags(cell)
        stub = CODE_STUB if cell.cell_type == "code" else TEXT_STUB
        cell.source, replaced = replace_solution_regions(cell.source, stub)  # ClearSolutions
        if meta.get("solution", False) and not replaced:
            cell.source = stub
        if cell.cell_type == "code":                                        # ClearOutput
            cell.outputs, cell.execution_count = [], None
            cell.metadata.pop("collapsed", None)
            cell.metadata.pop("scrolled", None)
        if meta.get("solution", False) or meta.get("grade", False):         # LockCells
            cell.metadata["deletable"] = False
            if meta.get("grade", False) and not meta.get("solution", False):
                cell.metadata["editable"] = False
        cell.source, _ = remove_hidden_tests(cell.source)                   # ClearHiddenTests
    return nb


def render(nb: nbformat.NotebookNode) -> str:
    """The exact text ``nbformat.write`` puts in a file."""
    buffer = io.StringIO()
    nbformat.write(nb, buffer)
    return buffer.getvalue()


def expected_exercises(solutions: Path) -> dict[str, str]:
    """File name -> text of every exercise that ``solutions`` generates."""
    out = {}
    for path in sorted(solutions.glob("*.ipynb")):
        try:
            out[path.name] = render(make_exercise(nbformat.read(path, as_version=4)))
        except ExerciseSourceError as exc:
            raise ExerciseSourceError(f"{path}: {exc}") from None
    return out


def stale_files(solutions: Path, exercises: Path) -> dict[Path, str]:
    """Every exercise file that differs from what would be generated, with the reason."""
    expected = expected_exercises(solutions)
    problems = {}
    for name, text in expected.items():
        target = exercises / name
        if not target.exists():
            problems[target] = "is missing"
        elif target.read_text(encoding="utf-8") != text:
            problems[target] = (f"differs from what {solutions / name} generates "
                                "(edited by hand, or the solution changed)")
    for target in sorted(exercises.glob("*.ipynb")):
        if target.name not in expected:
            problems[target] = f"has no source {solutions / target.name}"
    return problems


def write_exercises(solutions: Path, exercises: Path) -> list[str]:
    """Write every exercise, delete exercise notebooks without a source; return what changed."""
    expected = expected_exercises(solutions)  # all validated before anything is written
    exercises.mkdir(parents=True, exist_ok=True)
    changed = []
    for name, text in expected.items():
        target = exercises / name
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            target.write_text(text, encoding="utf-8")
            changed.append(f"wrote {target}")
    for target in sorted(exercises.glob("*.ipynb")):
        if target.name not in expected:
            target.unlink()
            changed.append(f"deleted {target} (no source in {solutions})")
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if exercises/ is not what would be generated")
    parser.add_argument("--solutions", type=Path, default=None,
                        help="one source folder (default: solutions/ and solutions/zh/)")
    parser.add_argument("--exercises", type=Path, default=None,
                        help="its exercise folder (default: exercises/ and exercises/zh/)")
    args = parser.parse_args(argv)
    if (args.solutions is None) != (args.exercises is None):
        parser.error("give both --solutions and --exercises, or neither")
    if args.solutions is not None:
        folders = [(args.solutions, args.exercises)]
    else:  # both editions: the Chinese exercises come from the Chinese solutions
        folders = [(ROOT / "solutions", ROOT / "exercises")]
        if (ROOT / "solutions" / "zh").is_dir():
            folders.append((ROOT / "solutions" / "zh", ROOT / "exercises" / "zh"))
    try:
        if args.check:
            problems = {}
            for solutions, exercises in folders:
                problems |= stale_files(solutions, exercises)
            for target, reason in problems.items():
                print(f"{target} {reason}", file=sys.stderr)
            if problems:  # the last line names the files: hooks show only that one
                names = ", ".join(str(target) for target in problems)
                print(f"stale: {names}; run `make exercises` and commit", file=sys.stderr)
                return 1
            print("exercises are up to date with " + " and ".join(str(s) for s, _ in folders))
            return 0
        changed = [line for solutions, exercises in folders
                   for line in write_exercises(solutions, exercises)]
    except ExerciseSourceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("\n".join(changed) if changed else "exercises already up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
