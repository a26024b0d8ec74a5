"""Exercises: exercises/ is exactly what scripts/make_exercises.py generates from solutions/.

Checks, in order: the transformation matches nbgrader's own known answers; the committed exercises
are up to date and a hand edit is caught; every solution notebook is well formed (learning goals, a
link to its chapter, 2-4 autograded tasks, a written answer, nbgrader metadata, committed outputs);
and every exercise, executed exactly as generated, fails each of its autograder cells and scores
zero. Adding a chapter's exercise is adding a file to solutions/: everything here is parametrised
over it.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS = sorted((ROOT / "solutions").glob("*.ipynb"))
NAMES = [path.name for path in SOLUTIONS]


SCRIPT = ROOT / "scripts" / "make_exercises.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("make_exercises", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


mx = _load_script()


def _meta(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def _run_check(solutions: Path, exercises: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), "--check",
                           "--solutions", str(solutions), "--exercises", str(exercises)],
                          capture_output=True, text=True, timeout=60)


# --- the transformation, against nbgrader's own test cases (nbgrader/tests/preprocessors) ---

CODE = 'print("something")\n### BEGIN SOLUTION\nprint("hello")\n### END SOLUTION'


def test_code_region_becomes_nbgraders_stub():
    assert mx.replace_solution_regions(CODE, mx.CODE_STUB) == (
        'print("something")\n# YOUR CODE HERE\nraise NotImplementedError()', True)


def test_text_region_and_indentation():
    text = "something something\n### BEGIN SOLUTION\nthis is the answer!\n### END SOLUTION"
    assert mx.replace_solution_regions(text, mx.TEXT_STUB) == (
        "something something\nYOUR ANSWER HERE", True)
    indented = ("something something\n    ### BEGIN SOLUTION\n    this is the answer!\n"
                "    ### END SOLUTION")
    assert mx.replace_solution_regions(indented, mx.TEXT_STUB)[0] == \
        "something something\n    YOUR ANSWER HERE"


def test_code_stub_keeps_the_indentation_of_the_begin_line():
    source = "def f(x):\n    ### BEGIN SOLUTION\n    return x\n    ### END SOLUTION\n"
    assert mx.replace_solution_regions(source, mx.CODE_STUB)[0] == \
        "def f(x):\n    # YOUR CODE HERE\n    raise NotImplementedError()\n"


def test_no_region_is_left_alone():
    assert mx.replace_solution_regions("this is the answer!\n", mx.TEXT_STUB) == \
        ("this is the answer!\n", False)


@pytest.mark.parametrize("source", [
    "a\n### BEGIN SOLUTION\nb",                                          # no end
    "a\n### BEGIN SOLUTION\n### BEGIN SOLUTION\nb\n### END SOLUTION",    # nested
])
def test_broken_solution_regions_are_refused(source):
    with pytest.raises(mx.ExerciseSourceError):
        mx.replace_solution_regions(source, mx.CODE_STUB)


def test_hidden_tests_are_removed():
    source = "assert True\n### BEGIN HIDDEN TESTS\nassert True\n### END HIDDEN TESTS"
    assert mx.remove_hidden_tests(source) == ("assert True", True)
    with pytest.raises(mx.ExerciseSourceError):
        mx.remove_hidden_tests("x\n### BEGIN HIDDEN TESTS\n### BEGIN HIDDEN TESTS\ny")
    with pytest.raises(mx.ExerciseSourceError):
        mx.remove_hidden_tests("x\n### BEGIN HIDDEN TESTS\ny")


def _cell(cell_type: str, source: str, **flags):
    new = nbformat.v4.new_code_cell if cell_type == "code" else nbformat.v4.new_markdown_cell
    cell = new(source)
    if flags:
        cell.metadata["nbgrader"] = {"grade": False, "solution": False, "locked": False,
                                     "schema_version": 3, **flags}
    return cell


def test_make_exercise_on_a_small_notebook():
    nb = nbformat.v4.new_notebook(cells=[
        _cell("code", "x = 1"),
        _cell("code", "print('answer')", solution=True, grade_id="whole"),
        _cell("code", CODE, solution=True, grade_id="part"),
        _cell("code", "assert x\n### BEGIN HIDDEN TESTS\nassert x == 1\n### END HIDDEN TESTS",
              grade=True, locked=True, grade_id="tests", points=2),
        _cell("markdown", "Why?\n### BEGIN SOLUTION\nBecause.\n### END SOLUTION",
              grade=True, solution=True, grade_id="why", points=1),
    ])
    nb.cells[0].outputs = [nbformat.v4.new_output("stream", text="out")]
    nb.cells[0].execution_count = 3
    nb.cells[0].metadata["scrolled"] = True
    exercise = mx.make_exercise(nb)
    assert [c.source for c in exercise.cells] == [
        "x = 1", mx.CODE_STUB, 'print("something")\n' + mx.CODE_STUB, "assert x",
        "Why?\nYOUR ANSWER HERE"]
    assert exercise.cells[0].outputs == [] and exercise.cells[0].execution_count is None
    assert "scrolled" not in exercise.cells[0].metadata
    assert exercise.cells[3].metadata["editable"] is False              # nbgrader's LockCells
    assert exercise.cells[1].metadata["deletable"] is False
    assert nb.cells[2].source == CODE, "the solution notebook is not modified"


@pytest.mark.parametrize("cells, message", [
    ([_cell("code", CODE)], "not marked solution"),
    ([_cell("code", "assert 1\n### BEGIN HIDDEN TESTS\n### END HIDDEN TESTS", solution=True,
            grade_id="a")], "not marked grade"),
    ([_cell("code", "assert 1", grade=True, grade_id="a")], "needs points"),
    ([_cell("code", "x", solution=True, grade_id="a"),
      _cell("code", "y", solution=True, grade_id="a")], "duplicate"),
    ([_cell("code", "x", solution=True, grade_id="bad id")], "grade_id"),
    ([_cell("markdown", "text", solution=True, grade_id="a")], "grade AND solution"),
])
def test_invalid_sources_are_refused_with_the_cell_named(cells, message):
    with pytest.raises(mx.ExerciseSourceError, match=message):
        mx.make_exercise(nbformat.v4.new_notebook(cells=cells))


def test_same_output_as_nbgrader_when_installed(tmp_path):
    """An independent oracle: nbgrader's own preprocessors (skipped without nbgrader)."""
    preprocessors = pytest.importorskip("nbgrader.preprocessors")
    for path in SOLUTIONS:
        nb = nbformat.read(path, as_version=4)
        resources = {}
        for step in (preprocessors.ClearSolutions(), preprocessors.ClearHiddenTests()):
            nb, resources = step.preprocess(nb, resources)
        ours = nbformat.read(ROOT / "exercises" / path.name, as_version=4)
        assert [c.source for c in ours.cells] == [c.source for c in nb.cells], path.name


# --- exercises/ is up to date, and a hand edit is caught ---

def test_check_passes_on_the_committed_exercises_quickly():
    start = time.perf_counter()
    result = subprocess.run([sys.executable, str(SCRIPT), "--check"], capture_output=True,
                            text=True, timeout=60)
    elapsed = time.perf_counter() - start
    assert result.returncode == 0, result.stderr
    assert elapsed < 15, f"--check took {elapsed:.1f} s; the pre-stop hook allows 30 s"


def test_the_generated_text_is_deterministic():
    assert mx.expected_exercises(ROOT / "solutions") == mx.expected_exercises(ROOT / "solutions")


@pytest.fixture()
def copies(tmp_path):
    solutions, exercises = tmp_path / "solutions", tmp_path / "exercises"
    shutil.copytree(ROOT / "solutions", solutions)
    shutil.copytree(ROOT / "exercises", exercises)
    return solutions, exercises


def test_a_hand_edit_fails_the_check_and_names_the_file(copies):
    solutions, exercises = copies
    target = exercises / NAMES[0]
    nb = nbformat.read(target, as_version=4)
    solution_cell = next(c for c in nb.cells if _meta(c).get("solution") and c.cell_type == "code")
    solution_cell.source = solution_cell.source.replace("raise NotImplementedError()", "pass")
    nbformat.write(nb, target)
    result = _run_check(solutions, exercises)
    assert result.returncode == 1
    assert str(target) in result.stderr.splitlines()[-1], "the last line names the stale file"
    assert "make exercises" in result.stderr


def test_missing_orphan_and_changed_solution_are_all_stale(copies):
    solutions, exercises = copies
    (exercises / NAMES[0]).unlink()
    shutil.copy(exercises / NAMES[1], exercises / "99_orphan.ipynb")
    nb = nbformat.read(solutions / NAMES[2], as_version=4)
    nb.cells[0].source += "\n\nOne more sentence."
    nbformat.write(nb, solutions / NAMES[2])
    result = _run_check(solutions, exercises)
    assert result.returncode == 1
    for name in (NAMES[0], "99_orphan.ipynb", NAMES[2]):
        assert name in result.stderr
    assert mx.main(["--solutions", str(solutions), "--exercises", str(exercises)]) == 0
    assert not (exercises / "99_orphan.ipynb").exists()
    assert _run_check(solutions, exercises).returncode == 0


def test_an_invalid_solution_stops_the_script_with_exit_2(copies, capsys):
    solutions, exercises = copies
    nb = nbformat.read(solutions / NAMES[0], as_version=4)
    tests_cell = next(c for c in nb.cells if _meta(c).get("grade") and c.cell_type == "code")
    del tests_cell.metadata["nbgrader"]["points"]
    nbformat.write(nb, solutions / NAMES[0])
    assert mx.main(["--solutions", str(solutions), "--exercises", str(exercises)]) == 2
    assert NAMES[0] in capsys.readouterr().err


# --- every solution notebook is a well-formed exercise source ---

def test_there_is_a_solution_per_chapter_exercise():
    """Every chapter notebook (the dashboard is not a chapter) has its exercise source."""
    chapters = {p.name for p in (ROOT / "notebooks").glob("[0-9]*.ipynb")}
    assert len(chapters) == 13
    assert chapters == set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_solution_notebook_is_well_formed(name):
    nb = nbformat.read(ROOT / "solutions" / name, as_version=4)
    mx.validate(nb)
    intro = nb.cells[0].source
    assert "Learning goals" in intro
    assert f"(../notebooks/{name})" in intro and (ROOT / "notebooks" / name).exists()
    autograded = [c for c in nb.cells if _meta(c).get("grade") and c.cell_type == "code"]
    written = [c for c in nb.cells if _meta(c).get("grade") and c.cell_type == "markdown"]
    assert 2 <= len(autograded) <= 4 and written, "2-4 autograded tasks and a written answer"
    for cell in autograded:
        assert _meta(cell)["locked"] and _meta(cell)["points"] > 0
        assert "BEGIN HIDDEN TESTS" in cell.source, f"{_meta(cell)['grade_id']} has no hidden tests"
    for cell in written:
        assert "BEGIN SOLUTION" in cell.source
    claimed = re.search(r"(\d+) points checked automatically and (\d+) points", intro)
    assert claimed, "the intro states the points"
    assert int(claimed[1]) == sum(_meta(c)["points"] for c in autograded)
    assert int(claimed[2]) == sum(_meta(c)["points"] for c in written)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code), "commit solutions executed"


@pytest.mark.parametrize("name", NAMES)
def test_exercise_has_no_answers_and_no_outputs(name):
    exercise = nbformat.read(ROOT / "exercises" / name, as_version=4)
    for cell in exercise.cells:
        assert "BEGIN SOLUTION" not in cell.source and "HIDDEN TESTS" not in cell.source
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None


# --- executed as generated, every exercise fails each of its autograder cells ---

@cache
def _graded_exercises() -> dict:
    from course_lib.grade import grade

    with ThreadPoolExecutor(max_workers=2) as pool:  # one kernel per notebook, two at a time
        reports = pool.map(lambda name: grade(ROOT / "exercises" / name), NAMES)
        return dict(zip(NAMES, reports))


@pytest.mark.parametrize("name", NAMES)
def test_untouched_exercise_fails_every_autograder_cell_and_scores_zero(name):
    report = _graded_exercises()[name]
    assert report.autograded, "no autograder cells found"
    for task in report.autograded:
        assert task.status == "failed", f"{task.grade_id} passes without an answer"
    assert report.score == 0 and report.max_score > 0
    assert all(task.status == "unanswered" for task in report.written)
