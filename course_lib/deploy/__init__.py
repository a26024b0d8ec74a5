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

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from course_lib._validation import require_int
from course_lib.deploy._tls import TLSFiles, make_tls_files
from course_lib.deploy.federation import DeploymentError, DeploymentRun, LocalFederation
from course_lib.deploy.protocol import MAX_NODES

if TYPE_CHECKING:
    from course_lib.fl.config import FedAvgConfig

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
