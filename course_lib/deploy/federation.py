"""The federation itself: a SuperLink and N SuperNodes on 127.0.0.1, TLS, stopped by pid.

:class:`LocalFederation` starts the processes (and makes the throwaway CA), runs one
:class:`~course_lib.fl.config.FedAvgConfig` after another on them (:meth:`LocalFederation.run`)
and stops them; :func:`course_lib.deploy.deploy_fedavg` does all three for one run.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from course_lib._validation import require_int
from course_lib.deploy import _procs
from course_lib.deploy._tls import TLSFiles, make_tls_files
from course_lib.deploy.protocol import MAX_NODES
from course_lib.errors import CourseLibError

if TYPE_CHECKING:
    from course_lib.fl.config import FedAvgConfig
    from course_lib.fl.history import History

__all__ = ["LocalFederation", "DeploymentRun", "DeploymentError"]


class DeploymentError(CourseLibError):
    """A Flower process failed, timed out, or the run produced no result (log attached)."""


@dataclass
class DeploymentRun:
    """The outcome of one deployed run.

    Attributes
    ----------
    history : History
        Same fields as ``run_fedavg``'s; ``config["engine"]`` is ``"flower"``.
    seconds : dict of str to float
        ``"certificates"``, ``"startup"`` (until every process listens), ``"run"`` (``flwr
        run`` until the ServerApp finished), ``"stop"`` and ``"total"``.
    log : str
        What ``flwr run --stream`` printed: Flower's messages and the ServerApp's round table.
    pids : dict of str to int
        The process ids started (``"superlink"``, ``"supernode-0"``, ...); all stopped now.
    """

    history: History
    seconds: dict[str, float] = field(default_factory=dict)
    log: str = ""
    pids: dict[str, int] = field(default_factory=dict)


def _executable(name: str) -> str:
    beside = Path(sys.executable).parent / name  # the active virtualenv's scripts first
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        from course_lib.deploy.protocol import FLOWER_HINT

        raise DeploymentError(f"`{name}` not found next to {sys.executable} or on PATH; "
                              f"{FLOWER_HINT}")
    return found


class LocalFederation:
    """A SuperLink and ``num_nodes`` SuperNodes on 127.0.0.1 with TLS; use it in ``with``.

    Or call :meth:`start` and :meth:`stop` yourself (a notebook that runs several jobs on one
    federation): a federation still running when Python exits is stopped then.

    Parameters
    ----------
    num_nodes : int
        SuperNodes (clients), 1 to :data:`MAX_NODES`.
    workdir : path or None
        Where certificates, logs, results and Flower's folders go; default: a new temporary
        folder, deleted by :meth:`stop`. A folder you give keeps its logs and results, but
        :meth:`stop` deletes its ``tls/`` subfolder (the server's private key) all the same,
        and the next :meth:`start` in it makes new certificates.
    startup_timeout : float
        Seconds to wait for each process to listen on its port.
    """

    def __init__(self, *, num_nodes: int, workdir: str | Path | None = None,
                 startup_timeout: float = 60.0) -> None:
        self.num_nodes = require_int("num_nodes", num_nodes, minimum=1, maximum=MAX_NODES)
        self.startup_timeout = float(startup_timeout)
        self._own_workdir = workdir is None
        self.workdir = Path(tempfile.mkdtemp(prefix="course-flower-") if workdir is None
                            else workdir).resolve()
        self.processes: dict[str, subprocess.Popen] = {}
        self.seconds: dict[str, float] = {}
        self.tls: TLSFiles | None = None
        self.port: int | None = None
        self._runs = 0

    def __repr__(self) -> str:
        state = f"listening on {self.superlink_address}" if self.port else "stopped"
        return f"LocalFederation({self.num_nodes} SuperNodes, {state}, workdir={self.workdir})"

    # -- lifecycle --------------------------------------------------------------------------
    def __enter__(self) -> LocalFederation:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    @property
    def superlink_address(self) -> str:
        """``127.0.0.1:<port>`` of the SuperLink (Fleet, Control and Runtime APIs)."""
        return f"{_procs.LOOPBACK}:{self.port}"

    def _env(self, home: Path) -> dict[str, str]:
        home.mkdir(parents=True, exist_ok=True)
        scripts = str(Path(sys.executable).parent)  # Flower starts its helpers by name
        return {**os.environ, "PATH": scripts + os.pathsep + os.environ.get("PATH", ""),
                "FLWR_HOME": str(home), "FLWR_TELEMETRY_ENABLED": "0",
                "FLWR_DISABLE_UPDATE_CHECK": "1", "FLWR_SUPEREXEC_TASK_POLL_INTERVAL": "0.1",
                "PYTHONUNBUFFERED": "1", "NO_COLOR": "1"}

    def _data_file(self, k: int) -> Path:
        return self.workdir / f"supernode-{k}" / "data.safetensors"

    def _launch(self, name: str, command: list[str], home: Path) -> subprocess.Popen:
        process = _procs.start(command, log=self.workdir / f"{name}.log", env=self._env(home),
                               cwd=self.workdir)
        self.processes[name] = process
        return process

    def start(self) -> LocalFederation:
        """Create the certificates, start the processes and wait until all listen."""
        from course_lib.deploy.protocol import require_flwr

        require_flwr()
        self.workdir.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        atexit.register(self.stop)  # a notebook that dies between cells leaves nothing running
        try:
            shutil.rmtree(self._tls_folder, ignore_errors=True)  # a killed run's old key
            self.tls = make_tls_files(self._tls_folder)
            t1 = time.perf_counter()
            ca, cert, key = (str(p) for p in (self.tls.ca_certificate,
                                              self.tls.server_certificate,
                                              self.tls.server_key))
            server_tls = ["--ssl-ca-certfile", ca, "--ssl-certfile", cert, "--ssl-keyfile", key]
            self.port = _procs.free_port()
            link = self._launch("superlink", [
                _executable("flower-superlink"), *server_tls, "--host", _procs.LOOPBACK,
                "--port", str(self.port), "--disable-runtime-dependency-installation"],
                self.workdir / "superlink")
            node_ports = []
            for k in range(self.num_nodes):
                node_ports.append(_procs.free_port())
                self._launch(f"supernode-{k}", [
                    _executable("flower-supernode"), "--root-certificates", ca,
                    "--superlink", self.superlink_address, *server_tls,
                    "--host", _procs.LOOPBACK, "--port", str(node_ports[-1]),
                    "--node-config", f"partition-id={k} num-partitions={self.num_nodes} "
                                     f"data-file={json.dumps(str(self._data_file(k)))}"],
                    self.workdir / f"supernode-{k}")
            _procs.wait_for_port(self.port, process=link, timeout=self.startup_timeout,
                                 log=self.workdir / "superlink.log")
            for k, port in enumerate(node_ports):
                _procs.wait_for_port(port, process=self.processes[f"supernode-{k}"],
                                     timeout=self.startup_timeout,
                                     log=self.workdir / f"supernode-{k}.log")
        except BaseException as err:
            self.stop()
            if isinstance(err, (RuntimeError, TimeoutError)):
                raise DeploymentError(str(err)) from err
            raise
        self.seconds.update(certificates=t1 - t0, startup=time.perf_counter() - t1)
        return self

    @property
    def _tls_folder(self) -> Path:
        return self.workdir / "tls"

    def stop(self) -> list[int]:
        """Stop every process started (and its children) by pid; delete the TLS files (the
        server's private key) and, if the workdir was temporary, the whole workdir."""
        t0 = time.perf_counter()
        atexit.unregister(self.stop)
        signalled = _procs.stop(list(self.processes.values()))
        self.processes.clear()
        shutil.rmtree(self._tls_folder, ignore_errors=True)  # also from a workdir you gave
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        self.tls, self.port = None, None
        self.seconds["stop"] = time.perf_counter() - t0
        return signalled

    # -- running ----------------------------------------------------------------------------
    def run(self, config: FedAvgConfig, *, timeout: float = 300.0,
            on_line: Callable[[str], None] | None = None) -> DeploymentRun:
        """Run ``config`` (a :class:`~course_lib.fl.config.FedAvgConfig` with ``num_clients``
        equal to this federation's ``num_nodes``) and wait for its result.

        ``secure_aggregation=True`` runs it under Flower's SecAgg+ (:mod:`.secagg_apps`),
        otherwise Flower's FedAvg strategy (:mod:`.apps`). ``on_line`` receives each line of
        the run's log as it arrives (e.g. ``print``). Raises :class:`DeploymentError` if the
        run fails or takes more than ``timeout`` s.
        """
        if self.tls is None or self.port is None:
            raise DeploymentError("the federation is not started: use `with LocalFederation(...)`")
        import torch

        from course_lib.deploy import _app
        from course_lib.deploy import protocol as flower
        from course_lib.fl import partition as partitions
        from course_lib.fl.data import load_digits

        flower.check_deployable(config)
        if config.num_clients != self.num_nodes:
            raise ValueError(f"`config.num_clients` must equal the federation's num_nodes "
                             f"({self.num_nodes}), got {config.num_clients}")
        result_dir = self.workdir / f"result-{time.monotonic_ns()}"
        run_config = flower.run_config(config, result_dir=str(result_dir),
                                       round_timeout=timeout, connect_timeout=timeout)
        data = load_digits(seed=0)
        parts = flower.client_indices(config, data)
        for k, indices in enumerate(parts):  # each node's own samples, on its own "disk"
            ix = torch.from_numpy(indices)
            flower.save_node_data(self._data_file(k), data.X_train[ix], data.y_train[ix])
        app = _app.write_app(self.workdir / "app", run_config,
                             secure_aggregation=config.secure_aggregation)
        cli_home = self.workdir / "cli"
        cli_home.mkdir(exist_ok=True)
        (cli_home / "config.toml").write_text(
            f'[superlink]\ndefault = "course"\n\n[superlink.course]\n'
            f'address = "{self.superlink_address}"\n'
            f'root-certificates = {json.dumps(str(self.tls.ca_certificate))}\n', encoding="utf-8")
        t0 = time.perf_counter()
        name = f"flwr-run-{self._runs}"
        self._runs += 1
        log = self.workdir / f"{name}.log"
        log.unlink(missing_ok=True)  # a workdir used before holds an older run's log
        process = self._launch(name, [_executable("flwr"), "run", str(app), "course", "--stream"],
                               cli_home)
        try:
            text = _app.follow_log(process, log, timeout=timeout, on_line=on_line)
        except TimeoutError as err:
            raise DeploymentError(str(err)) from err
        seconds = time.perf_counter() - t0
        if not (result_dir / flower.RESULT_FILE).exists():
            raise DeploymentError(f"the run ended (status {process.returncode}) without a "
                                  f"result; its log ends with:\n{_app.tail(text)}")
        counts = partitions.label_counts(data.y_train, parts, num_classes=data.num_classes)
        history = _app.load_history(result_dir, config, counts, num_features=data.num_features)
        pids = {name: p.pid for name, p in self.processes.items()}
        return DeploymentRun(history, {**self.seconds, "run": seconds}, text, pids)
