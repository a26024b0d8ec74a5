"""Grade an exercise notebook: run it in a fresh kernel and report each task passed or failed.

Usage::

    python -m course_lib.grade exercises/03_1_data_encryption_algorithms.ipynb
    python -m course_lib.grade exercises/03_1_data_encryption_algorithms.ipynb \\
        --against solutions/03_1_data_encryption_algorithms.ipynb

A *task* is a cell whose nbgrader metadata says ``grade: true`` (see TEACHING.md):

- an **autograder** code cell of plain ``assert`` statements earns its ``points`` when it runs
  without an exception, and nothing otherwise;
- a **written answer** (a markdown cell marked grade and solution) is counted as answered or
  not ("YOUR ANSWER HERE" still in it) and left to a human for its points.

The notebook runs top to bottom in a fresh kernel with its own folder as working directory
(as in JupyterLab), every cell even after errors, each cell stopped after ``timeout`` seconds
(a task that hangs fails; the rest still run). The file itself is never modified.

``--against SOLUTION`` grades with the instructor's source: the task list, ids and points come
from the solution, and every autograder cell is restored from it before the run, as nbgrader's
autograder does. That puts the hidden tests back in and undoes any edit to the visible asserts;
a task whose cell the learner deleted scores zero.

Exit status: 0 whenever a report was printed, whatever the score; 2 if a notebook cannot be
read or defines no tasks; 3 if no kernel could be started. (This module is a face: nbformat and
nbclient are imported only when grading.)
"""

from __future__ import annotations

import argparse
import copy
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["TaskResult", "GradeReport", "KernelStartError", "grade", "restore_autograder_cells",
           "main"]

TEXT_STUB = "YOUR ANSWER HERE"
DEFAULT_TIMEOUT = 120  # seconds per cell


@dataclass(frozen=True)
class TaskResult:
    """One graded cell: ``status`` is passed, failed, missing, answered or unanswered."""

    grade_id: str
    kind: str  # "autograded" or "written"
    points: float
    score: float  # points earned automatically (always 0 for written answers)
    status: str
    detail: str = ""  # e.g. "NotImplementedError" or "AssertionError: wrong d"


@dataclass(frozen=True)
class GradeReport:
    """The result of :func:`grade`; ``str(report)`` is the printed table."""

    notebook: Path
    against: Path | None
    tasks: tuple[TaskResult, ...]

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
            result = t.status + (f": {t.detail}" if t.detail else "")
            lines.append(f"{t.grade_id:<{width}}  {earned:>6}  {result}")
        passed = sum(t.status == "passed" for t in self.autograded)
        lines += [rule, f"Score: {_num(self.score)} / {_num(self.max_score)} points "
                        f"({passed} of {len(self.autograded)} autograded tasks passed)"]
        if self.written:
            answered = sum(t.status == "answered" for t in self.written)
            points = sum(t.points for t in self.written)
            lines.append(f"Written answers: {answered} of {len(self.written)} answered; "
                         f"{_num(points)} more points to grade by hand")
        return "\n".join(lines)


def _num(x: float) -> str:
    return f"{x:g}"


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


def _run(nb: Any, folder: Path, timeout: int) -> tuple[dict[int, str | None], str]:
    """Execute ``nb`` in place; return {cell index: None if it ran cleanly, else the error}
    for every code cell that ran, and why the run stopped early ("" if it did not)."""
    from jupyter_client.kernelspec import NoSuchKernel
    from nbclient import NotebookClient
    from nbclient.exceptions import DeadKernelError

    outcome: dict[int, str | None] = {}

    def on_cell_executed(cell: Any, cell_index: int, execute_reply: Any) -> None:
        content = (execute_reply or {}).get("content", {"status": "error", "ename": "no reply"})
        if content.get("status") == "error":
            value = str(content.get("evalue", "")).strip().splitlines()
            outcome[cell_index] = content.get("ename", "error") + (f": {value[0]}" if value
                                                                  else "")
        else:
            outcome[cell_index] = None

    client = NotebookClient(
        nb, timeout=timeout, kernel_name="python3", allow_errors=True, record_timing=False,
        interrupt_on_timeout=True, on_cell_executed=on_cell_executed,
        error_on_timeout={"ename": "Timeout", "evalue": f"the cell ran longer than {timeout} s"},
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


def _result(grade_id: str, ref_cell: Any, cell: Any | None, index: int | None,
            outcome: dict[int, str | None], stopped: str) -> TaskResult:
    """Score one task: ``ref_cell`` defines it, ``cell`` (at ``index``) is the learner's."""
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
    if outcome[index] is None:
        return TaskResult(grade_id, kind, points, points, "passed")
    return TaskResult(grade_id, kind, points, 0.0, "failed", outcome[index][:80])


def grade(notebook: str | Path, *, against: str | Path | None = None,
          timeout: int = DEFAULT_TIMEOUT) -> GradeReport:
    """Run ``notebook`` and grade its tasks (with the hidden tests of ``against``, if given).

    Raises ``ValueError`` if the task-defining notebook has no graded cells or cannot be
    parsed, ``OSError`` if a file cannot be read and :class:`KernelStartError` if no kernel
    starts. An error *inside* the notebook only fails the task it breaks.
    """
    import nbformat

    notebook = Path(notebook)
    nb = nbformat.read(notebook, as_version=4)
    reference = nb
    if against is not None:
        against = Path(against)
        reference = nbformat.read(against, as_version=4)
        nb = restore_autograder_cells(nb, reference)
    expected = _tasks(reference)
    if not expected:
        raise ValueError(f"{against or notebook} has no graded cells (nbgrader metadata "
                         "'grade': true); is it an exercise notebook?")
    position = {_grade_id(c, i): i for i, c in enumerate(nb.cells) if _is_task(c)}
    outcome, stopped = _run(nb, notebook.resolve().parent, timeout)
    tasks = []
    for grade_id, ref_cell in expected.items():
        index = position.get(grade_id)
        cell = None if index is None else nb.cells[index]
        tasks.append(_result(grade_id, ref_cell, cell, index, outcome, stopped))
    return GradeReport(notebook, against, tuple(tasks))


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
