"""Browser tests: Playwright drives Debian's Chromium against real JupyterLab and Voila servers.

Every test here is marked ``e2e`` and skipped, with the reason, when Playwright or the Chromium
binary is missing (the unit run stays fast). Run them with ``pytest -m e2e tests/e2e``.

- Chromium: ``/usr/bin/chromium`` (``apt-get install chromium``), or the path in the
  ``COURSE_E2E_CHROMIUM`` environment variable. Playwright's own browser download is not used.
- Servers listen on a free port of 127.0.0.1 with a random token, in a temporary folder holding
  a *copy* of the notebook (outputs and saved widget state cleared, so only live widgets can
  pass); they are stopped by process id, with their kernels, at the end of each test.
- ``COURSE_E2E_DISCONNECT_SLIDER=1`` runs every test against a variant of the notebook whose lab
  no longer listens to its controls: all slider tests must then FAIL (the test of the tests).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from course_lib.deploy import _procs

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
CHROMIUM = Path(os.environ.get("COURSE_E2E_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
DISCONNECT = os.environ.get("COURSE_E2E_DISCONNECT_SLIDER") == "1"
SCRIPTS = Path(sys.executable).parent
_HERE = Path(__file__).resolve().parent


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "e2e: browser tests (Playwright + Chromium against JupyterLab and Voila); "
                   "slow, skipped when Chromium or Playwright is missing")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.e2e)


def browser_missing() -> str | None:
    """Why the browser tests cannot run here, or ``None``."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright is not installed (pip install playwright; the `e2e` extra)"
    if not CHROMIUM.is_file():
        return (f"Chromium not found at {CHROMIUM} (apt-get install chromium, or set "
                f"COURSE_E2E_CHROMIUM)")
    return None


@pytest.fixture(autouse=True)
def _require_browser() -> None:
    reason = browser_missing()
    if reason:
        pytest.skip(reason)


# -- the notebook copy -------------------------------------------------------------------------
DISCONNECT_CELL = """\
# e2e test variant: the lab stops listening to its controls, so moving a slider redraws nothing
for _control in {lab}.controls.values():
    _control.unobserve({lab}._on_change, names="value")"""


def copy_notebook(source: Path, folder: Path, *, disconnect: bool = DISCONNECT) -> Path:
    """Copy ``source`` into ``folder`` without outputs or saved widget state.

    With ``disconnect`` a cell is added after the one that builds the lab that disconnects
    the lab's controls from it (the broken variant the tests must catch).
    """
    nb = json.loads(source.read_text(encoding="utf-8"))
    nb.get("metadata", {}).pop("widgets", None)
    cells = []
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
        cells.append(cell)
        found = re.search(r"^(\w+)\s*=\s*fedavg_lab\(", "".join(cell["source"]), re.M)
        if disconnect and cell["cell_type"] == "code" and found:
            cells.append({"cell_type": "code", "metadata": {}, "outputs": [],
                          "execution_count": None,
                          "source": DISCONNECT_CELL.format(lab=found.group(1))})
            disconnect = False
    if disconnect:
        raise ValueError(f"{source.name}: no `lab = fedavg_lab(...)` cell to disconnect")
    nb["cells"] = cells
    target = folder / source.name
    target.write_text(json.dumps(nb), encoding="utf-8")
    return target


# -- servers ------------------------------------------------------------------------------------
def _isolated_env(folder: Path) -> dict[str, str]:
    """Jupyter's per-user folders inside ``folder``: no user settings leak in or out."""
    env = dict(os.environ)
    for name, sub in (("JUPYTER_CONFIG_DIR", "config"), ("JUPYTER_RUNTIME_DIR", "runtime"),
                      ("JUPYTERLAB_SETTINGS_DIR", "lab-settings"),
                      ("JUPYTERLAB_WORKSPACES_DIR", "lab-workspaces"), ("IPYTHONDIR", "ipython")):
        env[name] = str(folder / sub)
    env["PATH"] = str(SCRIPTS) + os.pathsep + env.get("PATH", "")
    env.pop("COURSE_E2E_DISCONNECT_SLIDER", None)
    return env


class Server:
    """A Jupyter server process on 127.0.0.1 with a token; ``url`` opens the notebook."""

    def __init__(self, kind: str, notebook: Path, *, timeout: float = 90.0,
                 lab_settings: Path | None = None) -> None:
        self.port, self.token = _procs.free_port(), secrets.token_urlsafe(24)
        folder, self.log = notebook.parent, notebook.parent / f"{kind}.log"
        if kind == "lab":
            command = [str(SCRIPTS / "jupyter"), "lab", "--allow-root", "--no-browser",
                       "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={self.port}",
                       "--ServerApp.port_retries=0", f"--IdentityProvider.token={self.token}",
                       "--ServerApp.open_browser=False", f"--ServerApp.root_dir={folder}",
                       "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=None",
                       "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
            if lab_settings is not None:  # JupyterLab's overrides.json comes from here
                command.append(f"--LabApp.app_settings_dir={lab_settings}")
            self.url = f"http://127.0.0.1:{self.port}/lab/tree/{notebook.name}?token={self.token}"
        elif kind == "voila":
            command = [str(SCRIPTS / "voila"), str(notebook), "--no-browser",
                       "--Voila.ip=127.0.0.1", f"--Voila.port={self.port}",
                       "--Voila.port_retries=0", f"--Voila.token={self.token}",
                       "--strip_sources=True", "--show_tracebacks=True"]
            self.url = f"http://127.0.0.1:{self.port}/?token={self.token}"
        else:
            raise ValueError(f"`kind` must be 'lab' or 'voila', got {kind!r}")
        self.process = _procs.start(command, log=self.log, env=_isolated_env(folder), cwd=folder)
        try:
            _procs.wait_for_port(self.port, process=self.process, timeout=timeout, log=self.log)
            if kind == "lab":
                self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        probe = f"http://127.0.0.1:{self.port}/api/status?token={self.token}"
        while True:
            try:
                with urllib.request.urlopen(probe, timeout=5) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"server not ready after {timeout:g} s:\n"
                                   f"{_procs.log_tail(self.log)}")
            time.sleep(0.2)

    def stop(self) -> list[int]:
        """Stop the server and its kernels, by process id."""
        return _procs.stop([self.process])


@pytest.fixture
def workdir() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="course-e2e-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def start_server() -> Iterator:
    """``start_server(kind, notebook)`` -> :class:`Server`; every server is stopped at the end."""
    servers: list[Server] = []

    def start(kind: str, notebook: Path, **options: Any) -> Server:
        server = Server(kind, notebook, **options)
        servers.append(server)
        return server

    yield start
    for server in servers:
        pids = server.stop()
        assert not any(_procs.psutil.pid_exists(pid) and _procs.psutil.Process(pid).status()
                       != _procs.psutil.STATUS_ZOMBIE for pid in pids), "a server survived"


@pytest.fixture
def page(workdir: Path) -> Iterator:
    """A Chromium page in a fresh profile (``--user-data-dir`` in the temporary folder)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(workdir / "chromium-profile"), executable_path=str(CHROMIUM), headless=True,
            args=CHROMIUM_ARGS, viewport={"width": 1400, "height": 1000})
        try:
            yield context.new_page()
        finally:
            context.close()
