"""The grading helper `python -m course_lib.grade`: a small notebook made here, then the real ones.

Every solution notebook, graded against itself, gets full marks (the untouched exercises scoring
zero is checked in test_exercises.py, which runs each exercise once).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path

import nbformat
import pytest

from course_lib.grade import (
    CUT_SHORT,
    MAX_DETAIL,
    TAMPERED,
    GradeReport,
    MismatchError,
    TaskResult,
    grade,
    main,
    restore_autograder_cells,
)

ROOT = Path(__file__).resolve().parent.parent
NAMES = sorted(path.name for path in (ROOT / "solutions").glob("*.ipynb"))


def _nbgrader(cell, **flags):
    cell.metadata["nbgrader"] = {"grade": False, "solution": False, "locked": False,
                                 "schema_version": 3, **flags}
    return cell


def _solution_notebook() -> nbformat.NotebookNode:
    """Three tasks: a slow one, `double` (visible + hidden tests) and a written answer."""
    code, markdown = nbformat.v4.new_code_cell, nbformat.v4.new_markdown_cell
    return nbformat.v4.new_notebook(cells=[
        markdown("# A tiny exercise"),
        _nbgrader(code("### BEGIN SOLUTION\nwait = 0\n### END SOLUTION"), solution=True,
                  grade_id="slow"),
        _nbgrader(code("import time\ntime.sleep(wait)\nassert wait == 0"), grade=True,
                  locked=True, grade_id="test_slow", points=1),
        _nbgrader(code("def double(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n"
                       "    ### END SOLUTION"), solution=True, grade_id="double"),
        _nbgrader(code("assert double(2) == 4\n### BEGIN HIDDEN TESTS\nassert double(-3) == -6\n"
                       "### END HIDDEN TESTS"), grade=True, locked=True, grade_id="test_double",
                  points=2),
        _nbgrader(markdown("Why?\n\n### BEGIN SOLUTION\nBecause.\n### END SOLUTION"),
                  grade=True, solution=True, grade_id="why", points=3),
    ], metadata={"kernelspec": {"name": "python3", "language": "python",
                                "display_name": "Python 3"}})


def _learner(solution: nbformat.NotebookNode, *, double: str, wait: str = "0",
             why: str = "Because it doubles.") -> nbformat.NotebookNode:
    """A learner's copy of the exercise with the given answers filled in (visible tests only)."""
    nb = nbformat.from_dict(solution)
    nb.cells[1].source = f"wait = {wait}"
    nb.cells[3].source = f"def double(x):\n    {double}"
    nb.cells[4].source = "assert double(2) == 4"
    nb.cells[5].source = f"Why?\n\n{why}"
    return nb


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("grade")
    solution = _solution_notebook()
    nbformat.write(solution, folder / "solution.ipynb")
    return folder, solution


def _by_id(report: GradeReport) -> dict[str, TaskResult]:
    return {task.grade_id: task for task in report.tasks}


def test_hidden_tests_count_only_against_the_solution(tiny):
    folder, solution = tiny
    nbformat.write(_learner(solution, double="return 4 if x == 2 else 0"), folder / "hard.ipynb")
    alone = grade(folder / "hard.ipynb")
    assert _by_id(alone)["test_double"].status == "passed"       # the visible test passes ...
    against = grade(folder / "hard.ipynb", against=folder / "solution.ipynb")
    assert _by_id(against)["test_double"].status == "failed"     # ... the hidden one does not
    assert "AssertionError" in _by_id(against)["test_double"].detail
    assert (against.score, against.max_score) == (1, 3)
    assert _by_id(against)["why"].status == "answered" and _by_id(against)["why"].score == 0


def test_edited_or_deleted_tests_are_undone(tiny):
    folder, solution = tiny
    learner = _learner(solution, double="return x + x")
    learner.cells[4].source = "assert True  # the learner 'fixed' the test"
    del learner.cells[2]                                              # and deleted another
    nbformat.write(learner, folder / "cheat.ipynb")
    report = grade(folder / "cheat.ipynb", against=folder / "solution.ipynb")
    tasks = _by_id(report)
    assert tasks["test_double"].status == "passed"                   # restored, and it is right
    assert tasks["test_slow"].status == "missing" and tasks["test_slow"].score == 0
    assert (report.score, report.max_score) == (2, 3)


def test_a_hanging_task_fails_and_the_rest_still_runs(tiny):
    folder, solution = tiny
    nbformat.write(_learner(solution, double="return x + x", wait="60"), folder / "slow.ipynb")
    tasks = _by_id(grade(folder / "slow.ipynb", against=folder / "solution.ipynb", timeout=3))
    assert tasks["test_slow"].status == "failed" and "Timeout" in tasks["test_slow"].detail
    assert tasks["test_double"].status == "passed"                   # the next cells still ran


def test_restore_keeps_the_learners_own_cells(tiny):
    _, solution = tiny
    learner = _learner(solution, double="return 0")
    restored = restore_autograder_cells(learner, solution)
    assert restored.cells[4].source == solution.cells[4].source      # hidden tests back in
    assert restored.cells[3].source == learner.cells[3].source       # the answer untouched
    assert learner.cells[4].source == "assert double(2) == 4"        # the input untouched


def test_report_table_and_score_line():
    report = GradeReport(Path("ex.ipynb"), Path("sol.ipynb"), (
        TaskResult("test_a", "autograded", 2, 2, "passed"),
        TaskResult("test_b", "autograded", 1.5, 0, "failed", "NotImplementedError"),
        TaskResult("why", "written", 3, 0, "unanswered"),
    ))
    text = str(report)
    assert "test_b   0/1.5  failed: NotImplementedError" in text
    assert "why        -/3  unanswered" in text
    assert "Score: 2 / 3.5 points (1 of 2 autograded tasks passed)" in text
    assert "Written answers: 0 of 1 answered; 3 more points to grade by hand" in text


def test_cli_prints_the_table_and_exits_0(tiny):
    folder, solution = tiny
    nbformat.write(_learner(solution, double="raise NotImplementedError()"),
                   folder / "empty.ipynb")
    result = subprocess.run([sys.executable, "-m", "course_lib.grade", str(folder / "empty.ipynb"),
                             "--against", str(folder / "solution.ipynb"), "--timeout", "30"],
                            capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert "test_double" in result.stdout and "failed: NotImplementedError" in result.stdout
    assert "Score: 1 / 3 points" in result.stdout                   # test_slow still passes
    assert "TCP" not in result.stderr                               # the kernel talks over IPC


def test_a_failure_names_its_line_and_shows_the_whole_message(tiny):
    folder, solution = tiny
    learner = _learner(solution, double="return 2 * x")
    learner.cells[1].source = "wait = 0\nreason = ' '.join(['the', 'value', 'was', 'wrong'] * 30)"
    nbformat.write(learner, folder / "message.ipynb")
    ref = nbformat.from_dict(solution)
    ref.cells[2].source = "x = 1\n\nassert x == 2, reason"
    nbformat.write(ref, folder / "message_solution.ipynb")
    report = grade(folder / "message.ipynb", against=folder / "message_solution.ipynb")
    task = _by_id(report)["test_slow"]
    assert task.line == "line 3: assert x == 2, reason"
    assert task.detail.startswith("AssertionError: the value was wrong the value")
    assert len(task.detail) <= MAX_DETAIL and task.detail.endswith("…")
    assert task.detail[:-1].split()[-1] in {"the", "value", "was", "wrong"}  # not cut mid-word
    text = str(report)
    assert "Why tasks failed:\n- test_slow, line 3: assert x == 2, reason" in text
    wrapped = [line for line in text.splitlines() if line.startswith("    ")]
    assert max(map(len, wrapped)) <= 100 and " ".join(map(str.strip, wrapped)) == task.detail


def test_the_wrong_solution_is_refused_with_a_hint(tiny, capsys):
    folder, solution = tiny
    other = nbformat.from_dict(solution)
    for cell in other.cells:
        if "nbgrader" in cell.metadata:
            cell.metadata["nbgrader"]["grade_id"] = "other_" + cell.metadata["nbgrader"]["grade_id"]
    nbformat.write(other, folder / "other_solution.ipynb")
    nbformat.write(_learner(solution, double="return 2 * x"), folder / "mine.ipynb")
    with pytest.raises(MismatchError, match="has none of the 3 tasks of other_solution.ipynb"):
        grade(folder / "mine.ipynb", against=folder / "other_solution.ipynb")
    assert main([str(folder / "mine.ipynb"), "--against",
                 str(folder / "other_solution.ipynb")]) == 4
    assert "is it the right solution?" in capsys.readouterr().err
    report = grade(folder / "mine.ipynb", against=folder / "solution.ipynb")  # same tasks
    assert report.score == report.max_score == 3
    assert report.warnings == ("mine.ipynb is graded against a solution of another name, "
                               "solution.ipynb: check that it is the right one",)
    assert str(report).endswith(f"warning: {report.warnings[0]}")


CHEATS = {
    "blanks every later cell":
        "get_ipython().input_transformers_cleanup.append(lambda lines: [])",
    "drops the asserts":
        "import ast\nclass NoAsserts(ast.NodeTransformer):\n"
        "    def visit_Assert(self, node):\n        return None\n"
        "get_ipython().ast_transformers.append(NoAsserts())",
    "parses every test cell as empty":  # unseen by the kernel check: the end token sees it
        "import ast\nget_ipython().compile.ast_parse = "
        "lambda source, *a, **k: ast.parse('pass' if 'assert' in source else source)",
}


@pytest.mark.parametrize("trick", sorted(CHEATS))
def test_an_answer_that_rewrites_the_tests_scores_nothing(tiny, trick):
    folder, solution = tiny
    learner = _learner(solution, double="return 0")                  # a wrong answer ...
    learner.cells[1].source = "wait = 0\n" + CHEATS[trick]           # ... hidden by a trick
    nbformat.write(learner, folder / "trick.ipynb")
    report = grade(folder / "trick.ipynb", against=folder / "solution.ipynb")
    tasks = _by_id(report)
    assert tasks["test_double"].status == "failed" and report.score == 0, str(report)
    assert tasks["test_double"].detail == (CUT_SHORT if "parses" in trick else TAMPERED)


def test_cli_exit_2_when_the_notebook_cannot_be_graded(tmp_path, capsys):
    assert main([str(tmp_path / "nowhere.ipynb")]) == 2
    assert "cannot grade" in capsys.readouterr().err
    plain = tmp_path / "plain.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1")]), plain)
    assert main([str(plain)]) == 2
    assert "no graded cells" in capsys.readouterr().err
    (tmp_path / "junk.ipynb").write_text("not json")
    assert main([str(tmp_path / "junk.ipynb")]) == 2


# --- the real solution notebooks: full marks against themselves ---

@cache
def _graded_solutions() -> dict[str, GradeReport]:
    with ThreadPoolExecutor(max_workers=2) as pool:  # one kernel per notebook, two at a time
        paths = [ROOT / "solutions" / name for name in NAMES]
        return dict(zip(NAMES, pool.map(lambda path: grade(path, against=path), paths)))


# Solutions whose hidden tests need an optional extra (skipped without it, as in `make test-min`).
NEEDS_EXTRA = {"04_4_from_simulation_to_deployment.ipynb": "flwr"}


@pytest.mark.parametrize("name", NAMES)
def test_solution_gets_full_marks(name):
    if name in NEEDS_EXTRA and importlib.util.find_spec(NEEDS_EXTRA[name]) is None:
        pytest.skip(f"{name} needs {NEEDS_EXTRA[name]}, an optional extra that is not installed")
    report = _graded_solutions()[name]
    failed = [f"{t.grade_id}: {t.detail}" for t in report.autograded if t.status != "passed"]
    assert not failed
    assert report.score == report.max_score > 0
    assert all(task.status == "answered" for task in report.written)


# --- nbgrader itself: the round trip TEACHING.md documents -------------------------------------

NBGRADER_VENV = Path(os.environ.get("COURSE_NBGRADER_VENV", ROOT / ".venv-nbgrader"))
CHECK = ROOT / "scripts" / "nbgrader_check.py"


@pytest.mark.skipif(not (NBGRADER_VENV / "bin" / "nbgrader").exists(),
                    reason=f"nbgrader is not installed in {NBGRADER_VENV}: `make nbgrader-check` "
                           f"builds that venv and runs this round trip")
def test_nbgrader_generate_and_autograde_full_marks_and_zero():
    result = subprocess.run([sys.executable, str(CHECK), "--venv", str(NBGRADER_VENV)], cwd=ROOT,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    found = re.search(r"solution (\S+) / (\S+), untouched exercise (\S+) / ", result.stdout)
    assert found, result.stdout
    full, points, untouched = map(float, found.groups())
    assert full == points > 0 and untouched == 0
    assert "released cells identical to exercises/" in result.stdout


def test_nbgrader_preflight_fails_loudly_when_its_kernel_lacks_the_course(tmp_path):
    """A python3 kernel that cannot import course_lib would score every submission 0."""
    venv = tmp_path / "grading-venv"
    (venv / "bin").mkdir(parents=True)
    for tool, script in (("python", f'exec "{sys.executable}" "$@"'), ("nbgrader", "exit 0"),
                         ("alembic", "exit 0")):
        (venv / "bin" / tool).write_text(f"#!/bin/sh\n{script}\n")
        (venv / "bin" / tool).chmod(0o755)
    bare = tmp_path / "bare-python"  # a Python without site-packages: no course there
    bare.write_text(f'#!/bin/sh\nexec "{sys.executable}" -I -S "$@"\n')
    bare.chmod(0o755)
    spec = tmp_path / "jupyter" / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [str(bare), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3", "language": "python"}))
    env = {**os.environ, "JUPYTER_PATH": str(tmp_path / "jupyter")}
    result = subprocess.run([sys.executable, str(CHECK), "--preflight", "--venv", str(venv)],
                            cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 1
    assert f"the python3 kernel nbgrader starts ({bare}) cannot import course_lib" in result.stderr
    assert "every submission would score 0" in result.stderr
    (spec / "kernel.json").unlink()                       # the venv's own kernel: it has the course
    ok = subprocess.run([sys.executable, str(CHECK), "--preflight", "--venv", str(venv)],
                        cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)
    assert ok.returncode == 0 and "imports" in ok.stdout, ok.stderr
