"""nbgrader with this course: build the grading venv, check it, and prove the round trip.

Run with the course's Python (``.venv/bin/python``), from the repository's top folder::

    python scripts/nbgrader_check.py --setup              # build .venv-nbgrader (once)
    python scripts/nbgrader_check.py --preflight          # can nbgrader's kernel import course_lib?
    python scripts/nbgrader_check.py                      # generate_assignment -> autograde check
    python scripts/nbgrader_check.py --autograde privacy --course ~/grading   # grade for real

``make nbgrader-env``, ``make nbgrader-check`` and ``make autograde`` call these.

The grading venv (``--venv``, default ``.venv-nbgrader``) is a venv of the same Python whose
``.pth`` file adds the course venv's packages (the course and all its dependencies, nothing
downloaded twice); only nbgrader and what it adds (notebook, rapidfuzz) and a copy of
``alembic``'s command are installed in it. It keeps nbgrader's JupyterLab extensions out of the
learners' JupyterLab. Every nbgrader command runs with that venv's ``bin`` first on ``PATH``:
nbgrader starts ``alembic`` from ``PATH`` to set up its gradebook, and fails with
``FileNotFoundError: 'alembic'`` otherwise.

The check (no option): in a temporary course folder, ``nbgrader generate_assignment`` on one
solution (``--notebook``, default the chapter 3.3 exercise), the released cells compared with
``exercises/``, then ``nbgrader autograde`` on two submissions, the solution itself and the
untouched released exercise. It exits 1 unless they score full marks (of the autograded
points; written answers are graded by hand) and zero.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_NOTEBOOK = "03_3_federated_learning_algorithm.ipynb"
ASSIGNMENT = "privacy"
CHECKSUM_WARNING = "Attribute 'checksum' for cell"

_SCORES = """
import json, sys
from nbgrader.api import Gradebook
with Gradebook("sqlite:///" + sys.argv[1]) as gb:
    print(json.dumps({s: gb.find_submission(sys.argv[2], s).score for s in sys.argv[3:]}))
"""
_KERNEL_PYTHON = """
from jupyter_client.kernelspec import KernelSpecManager
print(KernelSpecManager().get_kernel_spec("python3").argv[0])
"""


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(1)


def venv_env(venv: Path) -> dict[str, str]:
    """The environment every nbgrader command needs: the venv's bin first on PATH."""
    env = dict(os.environ)
    env["PATH"] = str(venv.resolve() / "bin") + os.pathsep + env.get("PATH", "")
    return env


def setup(venv: Path, spec: str) -> None:
    """Create ``venv`` on top of the running Python's venv and install nbgrader in it."""
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()"
                           "['purelib'])"], check=True, capture_output=True, text=True)
    course_site = sysconfig.get_paths()["purelib"]  # where course_lib and torch are installed
    Path(site.stdout.strip(), "_course_venv.pth").write_text(
        f"import site; site.addsitedir({course_site!r})\n", encoding="utf-8")
    pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    constraints = ["-c", str(ROOT / "constraints.txt")] if (ROOT / "constraints.txt").exists() \
        else []
    subprocess.run([*pip, *constraints, spec], check=True)
    if not (venv / "bin" / "alembic").exists():  # its command, not its package: that is shared
        from importlib.metadata import version

        subprocess.run([*pip, "--no-deps", "--ignore-installed",
                        f"alembic=={version('alembic')}"], check=True)
    print(f"{venv}: nbgrader ready; run nbgrader as {venv}/bin/nbgrader, with "
          f"PATH={venv}/bin:$PATH")


def preflight(venv: Path) -> None:
    """Fail loudly unless nbgrader, alembic and a kernel that imports course_lib are there."""
    for tool in ("nbgrader", "alembic"):
        if not (venv / "bin" / tool).exists():
            fail(f"{venv}/bin/{tool} is missing: run `make nbgrader-env` (or "
                 f"`python scripts/nbgrader_check.py --setup --venv {venv}`) first")
    env = venv_env(venv)
    kernel = subprocess.run([str(venv / "bin" / "python"), "-c", _KERNEL_PYTHON], env=env,
                            capture_output=True, text=True)
    if kernel.returncode:
        fail(f"nbgrader's environment has no python3 kernel:\n{kernel.stderr[-800:]}")
    python = kernel.stdout.strip()
    found = subprocess.run([python, "-c", "import course_lib; print(course_lib.__file__)"],
                           env=env, capture_output=True, text=True,
                           cwd=tempfile.gettempdir())  # not here: this folder has course_lib/
    if found.returncode:
        fail(f"the python3 kernel nbgrader starts ({python}) cannot import course_lib, so "
             f"every submission would score 0 (the ModuleNotFoundError shows only inside the "
             f"graded notebooks). Install the course there: `{python} -m pip install -e {ROOT}`"
             f", or run `make nbgrader-env`")
    print(f"preflight: nbgrader's kernel {python} imports {found.stdout.strip()}")


def nbgrader(venv: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    result = subprocess.run([str(venv / "bin" / "nbgrader"), *args], cwd=cwd,
                            env=venv_env(venv), capture_output=True, text=True)
    if result.returncode:
        fail(f"nbgrader {' '.join(args)} failed:\n{(result.stdout + result.stderr)[-3000:]}")
    return result


def check(venv: Path, name: str) -> None:
    """generate_assignment -> autograde on the solution and the untouched exercise."""
    import nbformat

    preflight(venv)
    solution = ROOT / "solutions" / name
    graded = [c for c in nbformat.read(solution, as_version=4).cells
              if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("grade")]
    points = sum(c.metadata["nbgrader"]["points"] for c in graded)
    with tempfile.TemporaryDirectory(prefix="nbgrader-check-") as folder:
        course = Path(folder)
        (course / "source" / ASSIGNMENT).mkdir(parents=True)
        shutil.copy(solution, course / "source" / ASSIGNMENT / name)
        nbgrader(venv, "generate_assignment", ASSIGNMENT, cwd=course)
        released = course / "release" / ASSIGNMENT / name
        ours = nbformat.read(ROOT / "exercises" / name, as_version=4)
        theirs = nbformat.read(released, as_version=4)
        if [c.source for c in ours.cells] != [c.source for c in theirs.cells]:
            fail(f"nbgrader's release of {name} differs from exercises/{name}")
        for student, source in (("full", solution), ("untouched", released)):
            (course / "submitted" / student / ASSIGNMENT).mkdir(parents=True)
            shutil.copy(source, course / "submitted" / student / ASSIGNMENT / name)
        result = nbgrader(venv, "autograde", ASSIGNMENT, "--create", cwd=course)
        warnings = (result.stdout + result.stderr).count(CHECKSUM_WARNING)
        read = subprocess.run([str(venv / "bin" / "python"), "-c", _SCORES,
                               str(course / "gradebook.db"), ASSIGNMENT, "full", "untouched"],
                              env=venv_env(venv), capture_output=True, text=True, check=True)
        scores = json.loads(read.stdout)
    print(f"nbgrader round trip on {name}: released cells identical to exercises/{name}; "
          f"autograded points: solution {scores['full']:g} / {points:g}, untouched exercise "
          f"{scores['untouched']:g} / {points:g}; {warnings} \"{CHECKSUM_WARNING} ... has "
          f"changed!\" warnings (expected with hidden tests: see TEACHING.md)")
    if (scores["full"], scores["untouched"]) != (points, 0):
        fail(f"expected {points:g} and 0 points, got {scores['full']:g} and "
             f"{scores['untouched']:g}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--venv", type=Path, default=ROOT / ".venv-nbgrader",
                        help="the grading venv (default: .venv-nbgrader)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--setup", action="store_true", help="build the grading venv")
    mode.add_argument("--preflight", action="store_true",
                      help="only check that nbgrader's kernel imports course_lib")
    mode.add_argument("--autograde", metavar="ASSIGNMENT",
                      help="preflight, then `nbgrader autograde ASSIGNMENT` in --course")
    parser.add_argument("--nbgrader", default="nbgrader==0.9.6",
                        help="what --setup installs (default: %(default)s)")
    parser.add_argument("--notebook", default=DEFAULT_NOTEBOOK,
                        help="the solution the check uses (default: %(default)s)")
    parser.add_argument("--course", type=Path, default=Path.cwd(),
                        help="the nbgrader course folder, for --autograde (default: here)")
    args = parser.parse_args(argv)
    if args.setup:
        setup(args.venv, args.nbgrader)
    elif args.preflight:
        preflight(args.venv)
    elif args.autograde:
        preflight(args.venv)
        command = [str(args.venv.resolve() / "bin" / "nbgrader"), "autograde", args.autograde]
        return subprocess.run(command, cwd=args.course, env=venv_env(args.venv)).returncode
    else:
        check(args.venv, args.notebook)
    return 0


if __name__ == "__main__":
    sys.exit(main())
