"""Start local server processes on loopback ports and stop them again, by process id.

Every process is started in a session of its own (its process-group id is its pid) with its
output in a log file. :func:`stop` ends a process and everything it started (Flower's
SuperLink and SuperNodes launch helper processes): it lists the descendants first (with
psutil, which Jupyter's kernel already depends on), sends SIGTERM to each by pid, waits, and
sends SIGKILL to whatever is still alive. It never signals a process it cannot trace back to a
pid it was given.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import psutil

__all__ = ["free_port", "start", "wait_for_port", "stop", "log_tail"]

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def start(command: Sequence[str], *, log: Path, env: Mapping[str, str],
          cwd: Path) -> subprocess.Popen:
    """Start ``command`` in its own session, stdout and stderr appended to ``log``."""
    with open(log, "ab") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(list(command), stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=dict(env), cwd=cwd,
                                start_new_session=True)


def wait_for_port(port: int, *, process: subprocess.Popen, timeout: float, log: Path) -> None:
    """Return once something accepts TCP connections on 127.0.0.1:``port``.

    Raises ``RuntimeError`` (with the end of ``log``) if ``process`` exits first, or
    ``TimeoutError`` after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{Path(process.args[0]).name} exited with status "
                               f"{process.returncode} before listening on port {port}:\n"
                               f"{log_tail(log)}")
        with contextlib.suppress(OSError), socket.create_connection((LOOPBACK, port), 0.5):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"nothing listens on {LOOPBACK}:{port} after {timeout:g} s:\n"
                               f"{log_tail(log)}")
        time.sleep(0.1)


def stop(processes: Sequence[subprocess.Popen], *, grace: float = 5.0) -> list[int]:
    """Stop ``processes`` and their descendants by pid: SIGTERM, wait ``grace`` s, SIGKILL.

    Descendants are listed before anything is signalled; psutil checks each process's start
    time before signalling it, so a pid reused by an unrelated process is never hit. Returns
    the pids that were signalled. Safe to call twice and on processes that already exited.
    """
    targets: list[psutil.Process] = []
    for process in processes:
        with contextlib.suppress(psutil.Error):
            parent = psutil.Process(process.pid)
            if process.poll() is None:
                targets.append(parent)
            targets += parent.children(recursive=True)
    for target in targets:
        with contextlib.suppress(psutil.Error):
            target.terminate()
    _, alive = psutil.wait_procs(targets, timeout=grace)
    for target in alive:
        with contextlib.suppress(psutil.Error):
            target.kill()
    psutil.wait_procs(alive, timeout=1.0)
    for process in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=1.0)  # reap our direct children
    return [target.pid for target in targets]


def log_tail(path: Path, *, lines: int = 25) -> str:
    """The last ``lines`` lines of a log file ('' if it does not exist)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
