"""Grade an exercise notebook: run it in a fresh kernel and report each task passed or failed.

Usage::

    python -m course_lib.grade exercises/03_1_data_encryption_algorithms.ipynb
    python -m course_lib.grade exercises/03_1_data_encryption_algorithms.ipynb \\
        --against solutions/03_1_data_encryption_algorithms.ipynb

A *task* is a cell whose nbgrader metadata says ``grade: true`` (see TEACHING.md):

- an **autograder** code cell of plain ``assert`` statements earns its ``points`` when it runs
  to its end without an exception, and nothing otherwise; a failure names the line of the
  cell that failed and shows the assertion's message (up to ``MAX_DETAIL`` characters);
- a **written answer** (a markdown cell marked grade and solution) is counted as answered or
  not ("YOUR ANSWER HERE" still in it) and left to a human for its points.

The notebook runs top to bottom in a fresh kernel with its own folder as working directory
(as in JupyterLab), every cell even after errors, each cell stopped after ``timeout`` seconds
(a task that hangs fails; the rest still run). The kernel talks to the grader over local
sockets (ZeroMQ's IPC transport), not TCP. The file itself is never modified.

``--against SOLUTION`` grades with the instructor's source: the task list, ids and points come
from the solution, and every autograder cell is restored from it before the run, as nbgrader's
autograder does. That puts the hidden tests back in and undoes any edit to the visible asserts;
a task whose cell the learner deleted scores zero. A notebook that shares no task with the
solution is refused (exit status 4): it is the wrong notebook, or the wrong solution.

Cheap checks against a notebook that changes how its own tests run: before each autograder
cell a grader cell checks that IPython's input and AST transformers (and ``run_cell``) are
still those of the start, and each autograder cell must print a random token at its end. A
test cell that a transformer blanked or cut short fails. These checks stop the easy tricks,
not a determined learner: the notebook's code runs with the grader's rights (TEACHING.md).

Exit status: 0 whenever a report was printed, whatever the score; 2 if a notebook cannot be
read or defines no tasks; 3 if no kernel could be started; 4 if the notebook does not match
the solution. (This module is a face: nbformat and nbclient are imported only when grading.)
"""

from __future__ import annotations

import argparse
import copy
import re
import secrets
import sys
import tempfile
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["TaskResult", "GradeReport", "KernelStartError", "MismatchError", "grade",
           "restore_autograder_cells", "main", "MAX_DETAIL"]

TEXT_STUB = "YOUR ANSWER HERE"
DEFAULT_TIMEOUT = 120  # seconds per cell
MAX_DETAIL = 400  # characters of an error message kept in a report
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_CELL_LINE = re.compile(r"Cell In\[\d+\], line (\d+)")
# Prints the token and the ids of everything that turns a cell's text into code.
_KERNEL_CHECK = (
    "# course_lib.grade: does the kernel still read cells as it did at the start?\n"
    "print({token!r}, (lambda s: [[id(f) for f in group] for group in (\n"
    "    s.input_transformers_cleanup, s.input_transformers_post, s.ast_transformers,\n"
    "    s.input_transformer_manager.line_transforms,\n"
    "    s.input_transformer_manager.token_transformers,\n"
    "    [getattr(f, '__func__', f) for f in (s.run_cell, s.transform_cell,\n"
    "     s.input_transformer_manager.transform_cell)])])(\n"
    "        __import__('IPython').get_ipython()))")
TAMPERED = ("the notebook changed how the kernel reads cells (an IPython input or AST "
            "transformer, or a replaced run_cell) before this test, so it was not trusted")
CUT_SHORT = "the test cell did not run to its end (its code was changed before it ran)"


@dataclass(frozen=True)
class TaskResult:
    """One graded cell: ``status`` is passed, failed, missing, answered or unanswered."""

    grade_id: str
    kind: str  # "autograded" or "written"
    points: float
    score: float  # points earned automatically (always 0 for written answers)
    status: str
    detail: str = ""  # e.g. "NotImplementedError" or "AssertionError: wrong d"
    line: str = ""  # where the cell failed, e.g. "line 3: assert d == 2753"


@dataclass(frozen=True)
class GradeReport:
    """The result of :func:`grade`; ``str(report)`` is the printed table and the failures."""

    notebook: Path
    against: Path | None
    tasks: tuple[TaskResult, ...]
    warnings: tuple[str, ...] = ()

    @property
    def autograded(self) -> tuple[TaskResult, ...]:
        return tuple(t for t in self.tasks if t.kind == "autograded")

    @property
    def written(self) -> tuple[TaskResult, ...]:
        return tuple(t for t in self.tasks if t.kind == "written")

    @property
    def score(self) -> float:
        return sum(t.score for t in self.autograded)

    @property
    def max_score(self) -> float:
        return sum(t.points for t in self.autograded)

    def __str__(self) -> str:
        source = f" (tests from {self.against})" if self.against else " (its own tests)"
        width = max([len("task")] + [len(t.grade_id) for t in self.tasks])
        rule = f"{'-' * width}  ------  {'-' * 40}"
        lines = [f"Grading {self.notebook}{source}", "", f"{'task':<{width}}  points  result",
                 rule]
        for t in self.tasks:
            earned = f"{_num(t.score)}/{_num(t.points)}" if t.kind == "autograded" \
                else f"-/{_num(t.points)}"
            summary = _shorten(t.detail.splitlines()[0], 60) if t.detail else ""
            lines.append(f"{t.grade_id:<{width}}  {earned:>6}  {t.status}"
                         f"{': ' + summary if summary else ''}")
        passed = sum(t.status == "passed" for t in self.autograded)
        lines += [rule, f"Score: {_num(self.score)} / {_num(self.max_score)} points "
                        f"({passed} of {len(self.autograded)} autograded tasks passed)"]
        if self.written:
            answered = sum(t.status == "answered" for t in self.written)
            points = sum(t.points for t in self.written)
            lines.append(f"Written answers: {answered} of {len(self.written)} answered; "
                         f"{_num(points)} more points to grade by hand")
        failed = [t for t in self.autograded if t.status == "failed"]
        if failed:
            lines += ["", "Why tasks failed:"]
            for t in failed:
                lines.append(f"- {t.grade_id}" + (f", {t.line}" if t.line else ""))
                lines += textwrap.wrap(t.detail, 96, initial_indent="    ",
                                       subsequent_indent="    ")
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)


def _num(x: float) -> str:
    return f"{x:g}"


def _shorten(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters at a word boundary, with "…" if cut."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[:limit - 1].rsplit(" ", 1)[0] if " " in text[:limit - 1] else text[:limit - 1]
    return cut.rstrip(" ,;:") + "…"


def _meta(cell: Any) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def _is_task(cell: Any) -> bool:
    return bool(_meta(cell).get("grade", False)) and cell.cell_type in ("code", "markdown")


def _grade_id(cell: Any, index: int) -> str:
    return str(_meta(cell).get("grade_id") or f"cell-{index}")


def _tasks(nb: Any) -> dict[str, Any]:
    """grade_id -> cell for every graded cell, in notebook order."""
    return {_grade_id(cell, i): cell for i, cell in enumerate(nb.cells) if _is_task(cell)}


def restore_autograder_cells(learner: Any, solution: Any) -> Any:
    """Return a copy of ``learner`` whose autograder cells have the solution's source.

    Cells are matched by ``grade_id``; the solution's source carries the hidden tests. Only test
    cells are restored, never a cell that holds an answer (nbgrader's OverwriteCells does the
    same).
    """
    restored = copy.deepcopy(learner)
    reference = {grade_id: cell for grade_id, cell in _tasks(solution).items()
                 if cell.cell_type == "code" and not _meta(cell).get("solution", False)}
    for index, cell in enumerate(restored.cells):
        grade_id = _grade_id(cell, index)
        if _is_task(cell) and cell.cell_type == "code" and grade_id in reference:
            cell.source = reference[grade_id].source
    return restored


class KernelStartError(RuntimeError):
    """No kernel could be started, so nothing was graded."""


class MismatchError(ValueError):
    """The notebook shares no task with the solution it is graded against."""


def _check_match(notebook: Path, nb: Any, against: Path, reference: Any) -> list[str]:
    """Refuse a notebook with no task of the solution; warn when the files look unrelated."""
    mine, theirs = set(_tasks(nb)), list(_tasks(reference))
    if not mine & set(theirs):
        raise MismatchError(
            f"{notebook.name} has none of the {len(theirs)} tasks of {against.name} "
            f"({', '.join(theirs[:4])}{', ...' if len(theirs) > 4 else ''}); is it the right "
            f"solution? The exercise and its solution have the same file name, e.g. "
            f"exercises/{notebook.name} with solutions/{notebook.name}")
    if notebook.name != against.name:
        return [f"{notebook.name} is graded against a solution of another name, "
                f"{against.name}: check that it is the right one"]
    return []


def _error(content: dict, source: str) -> tuple[str, str]:
    """(``ename: evalue`` bounded to MAX_DETAIL, ``line N: <source line>``) of an error."""
    value = " ".join(str(content.get("evalue", "")).split())
    detail = _shorten(content.get("ename", "error") + (f": {value}" if value else ""), MAX_DETAIL)
    frames = _ANSI.sub("", "\n".join(content.get("traceback") or []))
    found = _CELL_LINE.search(frames)  # the first frame is the graded cell itself
    if not found:
        return detail, ""
    number, lines = int(found.group(1)), source.splitlines()
    code = lines[number - 1].strip() if 0 < number <= len(lines) else ""
    return detail, f"line {number}" + (f": {_shorten(code, 100)}" if code else "")


def _run(nb: Any, folder: Path, timeout: int) -> tuple[dict[int, tuple[str, str] | None], str]:
    """Execute ``nb`` in place; return {cell index: None if it ran cleanly, else (error,
    where)} for every code cell that ran, and why the run stopped early ("" if it did not)."""
    from jupyter_client.kernelspec import NoSuchKernel
    from jupyter_client.manager import AsyncKernelManager
    from nbclient import NotebookClient
    from nbclient.exceptions import DeadKernelError

    outcome: dict[int, tuple[str, str] | None] = {}

    def on_cell_executed(cell: Any, cell_index: int, execute_reply: Any) -> None:
        content = (execute_reply or {}).get("content", {"status": "error", "ename": "no reply"})
        ok = content.get("status") != "error"
        outcome[cell_index] = None if ok else _error(content, cell.source)

    with tempfile.TemporaryDirectory(prefix="grade-") as sockets:
        # IPC: the kernel's sockets are files only this user can open, not TCP ports
        km = AsyncKernelManager(kernel_name="python3", transport="ipc",
                                connection_file=str(Path(sockets) / "kernel.json"))
        client = NotebookClient(
            nb, km=km, timeout=timeout, allow_errors=True, record_timing=False,
            interrupt_on_timeout=True, on_cell_executed=on_cell_executed,
            error_on_timeout={"ename": "Timeout",
                              "evalue": f"the cell ran longer than {timeout} s"},
            resources={"metadata": {"path": str(folder)}})
        try:
            client.execute()
        except DeadKernelError:
            if not outcome:
                raise KernelStartError("the kernel died before running any cell") from None
            return outcome, "the kernel died"
        except (NoSuchKernel, RuntimeError, TimeoutError) as exc:
            raise KernelStartError(str(exc)) from exc
    return outcome, ""


def _printed(cell: Any) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", [])
                   if o.get("output_type") == "stream" and o.get("name") == "stdout")


def _guarded(nb: Any, token: str) -> tuple[Any, dict[int, int], dict[int, int]]:
    """A copy of ``nb`` with the kernel checks added; maps original -> run index for every
    cell, and autograder cell -> the index of the check run just before it."""
    import nbformat

    guarded = copy.deepcopy(nb)
    check = nbformat.v4.new_code_cell(_KERNEL_CHECK.format(token=token + ":kernel"))
    cells, where, checks = [copy.deepcopy(check)], {}, {}
    for index, cell in enumerate(nb.cells):
        cell = copy.deepcopy(cell)
        if _is_task(cell) and cell.cell_type == "code":
            checks[index] = len(cells)
            cells.append(copy.deepcopy(check))
            cell.source = cell.source.rstrip() + f"\nprint({token + ':end'!r})"
        where[index] = len(cells)
        cells.append(cell)
    guarded.cells = cells
    return guarded, where, checks


def _result(grade_id: str, ref_cell: Any, cell: Any | None, index: int | None,
            outcome: dict, stopped: str, trusted: bool, finished: bool) -> TaskResult:
    """Score one task: ``ref_cell`` defines it, ``cell`` (at run ``index``) is the learner's."""
    points = float(_meta(ref_cell).get("points", 0))
    kind = "written" if ref_cell.cell_type == "markdown" else "autograded"
    if cell is None or cell.cell_type != ref_cell.cell_type:
        return TaskResult(grade_id, kind, points, 0.0, "missing", "the cell is not in the notebook")
    if kind == "written":
        lines = [line.strip() for line in cell.source.splitlines()]
        answered = any(lines) and TEXT_STUB not in lines
        return TaskResult(grade_id, kind, points, 0.0, "answered" if answered else "unanswered")
    if index not in outcome:
        return TaskResult(grade_id, kind, points, 0.0, "failed",
                          f"not run: {stopped or 'execution stopped'}")
    if outcome[index] is not None:
        detail, line = outcome[index]
        return TaskResult(grade_id, kind, points, 0.0, "failed", detail, line)
    if not trusted:
        return TaskResult(grade_id, kind, points, 0.0, "failed", TAMPERED)
    if not finished:
        return TaskResult(grade_id, kind, points, 0.0, "failed", CUT_SHORT)
    return TaskResult(grade_id, kind, points, points, "passed")


def grade(notebook: str | Path, *, against: str | Path | None = None,
          timeout: int = DEFAULT_TIMEOUT) -> GradeReport:
    """Run ``notebook`` and grade its tasks (with the hidden tests of ``against``, if given).

    Raises ``ValueError`` if the task-defining notebook has no graded cells or cannot be
    parsed, :class:`MismatchError` (a ``ValueError``) if the notebook shares no task with
    ``against``, ``OSError`` if a file cannot be read and :class:`KernelStartError` if no
    kernel starts. An error *inside* the notebook only fails the task it breaks.
    """
    import nbformat

    notebook = Path(notebook)
    nb = nbformat.read(notebook, as_version=4)
    reference, warnings = nb, []
    if against is not None:
        against = Path(against)
        reference = nbformat.read(against, as_version=4)
        if not _tasks(reference):
            raise ValueError(f"{against} has no graded cells (nbgrader metadata 'grade': true);"
                             " is it a solution notebook?")
        warnings = _check_match(notebook, nb, against, reference)
        nb = restore_autograder_cells(nb, reference)
    expected = _tasks(reference)
    if not expected:
        raise ValueError(f"{notebook} has no graded cells (nbgrader metadata 'grade': true); "
                         "is it an exercise notebook?")
    position = {_grade_id(c, i): i for i, c in enumerate(nb.cells) if _is_task(c)}
    token = secrets.token_hex(8)
    run_nb, where, checks = _guarded(nb, token)
    outcome, stopped = _run(run_nb, notebook.resolve().parent, timeout)
    start = _printed(run_nb.cells[0])
    baseline = start if start.startswith(token) else None
    tasks = []
    for grade_id, ref_cell in expected.items():
        index = position.get(grade_id)
        cell = None if index is None else nb.cells[index]
        run_index = None if index is None else where[index]
        trusted = finished = True
        if index in checks:
            trusted = baseline is not None and _printed(run_nb.cells[checks[index]]) == baseline
            finished = f"{token}:end" in _printed(run_nb.cells[run_index])
        tasks.append(_result(grade_id, ref_cell, cell, run_index, outcome, stopped, trusted,
                             finished))
    return GradeReport(notebook, against, tuple(tasks), tuple(warnings))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m course_lib.grade",
        description="Run an exercise notebook and print which tasks pass.")
    parser.add_argument("notebook", type=Path, help="the learner's notebook (.ipynb)")
    parser.add_argument("--against", type=Path, metavar="SOLUTION",
                        help="the solution notebook: use its tests, hidden ones included")
    parser.add_argument("--timeout", type=int, default=DEFAULT_TIMEOUT,
                        help=f"seconds per cell (default {DEFAULT_TIMEOUT})")
    args = parser.parse_args(argv)
    if args.timeout < 1:
        parser.error(f"--timeout must be at least 1 second, got {args.timeout}")
    try:
        report = grade(args.notebook, against=args.against, timeout=args.timeout)
    except MismatchError as exc:
        print(f"error: cannot grade: {exc}", file=sys.stderr)
        return 4
    except (OSError, ValueError) as exc:  # nbformat's read errors are ValueErrors too
        print(f"error: cannot grade: {exc}", file=sys.stderr)
        return 2
    except KernelStartError as exc:
        print(f"error: could not start a kernel: {exc}", file=sys.stderr)
        return 3
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
