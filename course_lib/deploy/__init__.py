"""A real Flower deployment on this machine: one SuperLink and N SuperNodes, TLS everywhere.

:func:`deploy_fedavg` is :func:`~course_lib.fl.simulation.run_fedavg` on real processes, and
takes the same :class:`~course_lib.fl.config.FedAvgConfig`. It

1. makes a throwaway certificate authority and a certificate for 127.0.0.1 (:mod:`._tls`);
2. starts ``flower-superlink`` and ``num_clients`` x ``flower-supernode`` as separate
   processes, each listening on a free port of 127.0.0.1 only, each with its own Flower home
   folder (as if on its own machine); SuperNode ``k`` is told ``partition-id=k`` and the file
   holding its own part of the digits (written before each run, split as the simulation splits);
3. writes a tiny Flower App (a ``pyproject.toml`` whose components are our ServerApp and
   ClientApp, :mod:`.apps` for FedAvg by Flower's own strategy, :mod:`.secagg_apps` with
   ``secure_aggregation=True`` for Flower's SecAgg+, and whose run config holds the settings)
   and submits it with ``flwr run``;
4. waits for the ServerApp to finish and reads the history and final model it wrote;
5. stops every process it started, and their children, by process id, also on errors, and
   deletes the TLS files (the server's private key) even from a ``workdir`` you gave.

Every connection is TLS-protected (no ``--insecure`` anywhere): SuperNodes, the ``flwr`` CLI
and Flower's helper processes trust only the run's own CA, whose key never touches the disk.
Flower's processes start with telemetry and update checks off, and never install packages.

Why a deployed round takes seconds where a simulated one takes milliseconds: every message
starts a fresh ClientApp process that imports Flower and PyTorch, every connection is a TLS
session, and nodes and server *poll* for work instead of being called. :func:`estimate_seconds`
says how long a run will take before it starts.

Examples
--------
>>> from course_lib.deploy import deploy_fedavg
>>> from course_lib.fl.config import FedAvgConfig
>>> run = deploy_fedavg(FedAvgConfig(num_clients=3, rounds=5))     # doctest: +SKIP
>>> run.history.final_accuracy                                      # doctest: +SKIP
0.9466...

From a shell: ``python -m course_lib.deploy --nodes 3 --rounds 5 --compare``.
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
    from course_lib.fl.simulation import History

# torch, Flower and the data are imported inside the functions that need them, so that
# `python -m course_lib.deploy --help` (and a CLI that registers this command) answers at once.

__all__ = ["LocalFederation", "DeploymentRun", "DeploymentError", "deploy_fedavg",
           "estimate_seconds", "is_flower_line", "print_ours", "make_tls_files", "TLSFiles",
           "MAX_NODES"]

# Lines Flower writes itself (log records, and `flwr run`'s own messages such as "Successfully
# installed course-fedavg to ..."), as opposed to the ServerApp's round table.
FLOWER_PREFIXES = ("INFO", "WARNING", "DEBUG", "Using SuperLink", "Successfully ",
                   "Loading project", "\N{CONFETTI BALL}", "\N{SPEECH BALLOON}")


def is_flower_line(line: str) -> bool:
    """``True`` for a line Flower prints itself (hidden unless asked for), ``False`` for ours
    and for errors."""
    return line.lstrip().startswith(FLOWER_PREFIXES) and "ERROR" not in line


def print_ours(line: str) -> None:
    """Print ``line`` unless it is one of Flower's own (an ``on_line`` for notebooks)."""
    if line.strip() and not is_flower_line(line):
        print(line, flush=True)


# estimate_seconds, from runs of 2-3 nodes on two cores with little else running (2 nodes x 1
# round: 28 s in all, the round 7 s); with 6 jobs per core everything took 3-5 times as long.
SECONDS_FIXED = 20.0  # start-up, the ServerApp's process (torch + data), `flwr run`, stop
SECONDS_PER_ROUND = 8.0  # one ClientApp process per node: Flower + torch imports, TLS, polling
SECONDS_PER_SECAGG_ROUND = 20.0  # four messages per node (three without torch), each polled


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


def estimate_seconds(config: FedAvgConfig) -> float:
    """About how long :func:`deploy_fedavg` will take for ``config``, in seconds.

    Calibrated on two cores with little else running; a machine busy with other jobs takes
    several times as long. The parts: start-up and stop, a ServerApp process that imports
    PyTorch and the data, and per round one ClientApp process per node that imports Flower and
    PyTorch before training for a few milliseconds, found by a SuperNode that looks for work
    every 3 s; Flower's SecAgg+ needs four such messages per round, three of them light.
    """
    per_round = SECONDS_PER_SECAGG_ROUND if config.secure_aggregation else SECONDS_PER_ROUND
    crowd = max(1.0, config.num_clients / 2)  # two cores: nodes beyond two wait for a core
    return SECONDS_FIXED + config.rounds * per_round * crowd


def deploy_fedavg(config: FedAvgConfig | None = None, /, *, timeout: float = 300.0,
                  workdir: str | Path | None = None,
                  on_line: Callable[[str], None] | None = None,
                  **options: Any) -> DeploymentRun:
    """Start a local TLS federation, run ``config`` on it, stop it; return the
    :class:`DeploymentRun`.

    Parameters
    ----------
    config : FedAvgConfig or None
        The run, exactly as for :func:`~course_lib.fl.simulation.run_fedavg`;
        ``num_clients`` SuperNodes (1 to :data:`MAX_NODES`) are started. Keyword ``options``
        build one or change the given one, as for ``run_fedavg``.
    timeout : float
        Bounds the start-up of each process and the run itself, in seconds.
    workdir : path or None
        Keep logs and results there (the TLS files are deleted all the same); default: a
        temporary folder, deleted afterwards.
    on_line : callable or None
        Receives each line of the run's log as it arrives.

    Plain FedAvg runs Flower's own FedAvg strategy; the final model matches
    ``run_fedavg(config, engine="sequential")`` to within 1e-6 per weight (Flower averages in
    float32, see :mod:`course_lib.deploy.strategy`). ``secure_aggregation=True`` runs
    Flower's SecAgg+ instead (:mod:`course_lib.deploy.secagg_apps`): the same mean up to its
    quantisation (about 1e-5).
    """
    from course_lib.fl.config import FedAvgConfig

    t0 = time.perf_counter()
    if config is None:
        if "num_clients" in options:  # one message for the one range a deployment allows
            require_int("num_clients", options["num_clients"], minimum=1, maximum=MAX_NODES)
        config = FedAvgConfig(**options)
    elif not isinstance(config, FedAvgConfig):
        raise TypeError(f"`config` must be a FedAvgConfig or None, got {type(config).__name__}")
    elif options:
        config = config.replace(**options)
    from course_lib.deploy.protocol import run_config

    run_config(config, round_timeout=timeout, connect_timeout=timeout)  # fail before starting
    federation = LocalFederation(num_nodes=config.num_clients, workdir=workdir,
                                 startup_timeout=timeout)
    with federation:
        result = federation.run(config, timeout=timeout, on_line=on_line)
    result.seconds.update(stop=federation.seconds["stop"], total=time.perf_counter() - t0)
    return result
