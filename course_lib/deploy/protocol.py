"""The contract between the deployed apps and whoever starts them: one FedAvgConfig, flattened.

Flower hands both apps a flat *run config* (TOML scalars) and each SuperNode a *node config*.
:func:`run_config` takes the run's :class:`~course_lib.fl.config.FedAvgConfig` (the same object
``run_fedavg`` takes), checks that a deployment can run it, and flattens it (``None`` becomes 0,
since TOML has no null); :func:`config_from_run_config` rebuilds the FedAvgConfig on the other
side. A node's training data is a safetensors file (:func:`save_node_data` /
:func:`load_node_data`), split by :func:`client_indices` exactly as the simulation splits it.

Importing this module needs neither Flower nor PyTorch: a SuperNode starts a fresh process per
message, and the SecAgg+ key-exchange messages never train, so they should not pay for
``import torch`` (about 1-2 s on a quiet machine, many more on a busy one).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from course_lib._validation import require_int

if TYPE_CHECKING:  # annotations only: nothing from fl/ is imported at run time here
    import numpy as np
    import torch

    from course_lib.fl.config import FedAvgConfig

__all__ = ["FLOWER_HINT", "RESULT_FILE", "MODEL_FILE", "MAX_NODES", "require_flwr",
           "check_deployable", "run_config", "config_from_run_config",
           "settings_from_run_config", "client_indices", "save_node_data", "load_node_data"]

FLOWER_HINT = ("Flower is not installed; install the optional `flower` extra: "
               "pip install -e '.[flower]'  (or: pip install flwr)")
RESULT_FILE = "history.json"  # written by the ServerApp into the run config's result-dir
MODEL_FILE = "model.safetensors"
MAX_NODES = 16  # each SuperNode is a Python process of ~150 MB, plus one per message it handles


def require_flwr() -> None:
    """Raise an ``ImportError`` naming the ``flower`` extra if Flower is not installed."""
    try:
        import flwr  # noqa: F401
    except ImportError as err:
        raise ImportError(FLOWER_HINT) from err


def check_deployable(config: FedAvgConfig) -> FedAvgConfig:
    """Return ``config`` if a local Flower deployment can run it, else raise ``ValueError``.

    A deployment runs one SuperNode per client (1 to :data:`MAX_NODES`), plain FedAvg or
    FedAvg under Flower's own SecAgg+ (``secure_aggregation=True``, every node in every round:
    Flower's workflow samples the nodes itself). DP and simulated dropouts are simulation-only.
    """
    from course_lib.fl.config import FedAvgConfig

    if not isinstance(config, FedAvgConfig):
        raise TypeError(f"`config` must be a course_lib.fl.config.FedAvgConfig, "
                        f"got {type(config).__name__}")
    require_int("num_clients", config.num_clients, minimum=1, maximum=MAX_NODES)
    if config.dp is not None:
        raise ValueError("`dp` must be None for a Flower deployment (DP-FedAvg runs in "
                         f"run_fedavg only), got {config.dp!r}")
    if config.dropout != 0.0:
        raise ValueError("`dropout` must be 0 for a Flower deployment (simulated dropouts "
                         f"run in run_fedavg only), got {config.dropout!r}")
    if config.secure_aggregation and config.fraction != 1.0:
        raise ValueError("`fraction` must be 1.0 with secure_aggregation=True in a Flower "
                         "deployment (Flower's SecAgg+ workflow sends to every node), "
                         f"got {config.fraction!r}")
    return config


# -- FedAvgConfig <-> Flower's run config (flat, TOML scalars only: None is encoded as 0) ------
def run_config(config: FedAvgConfig, *, result_dir: str = "", round_timeout: float = 120.0,
               connect_timeout: float = 60.0) -> dict[str, int | float | str | bool]:
    """Flower's run config for ``config`` (checked with :func:`check_deployable`).

    Parameters
    ----------
    config : FedAvgConfig
        The run, as for :func:`~course_lib.fl.simulation.run_fedavg`; ``num_clients`` is the
        number of SuperNodes. ``engine`` is not sent: a deployment trains like the sequential
        engine, one client per node.
    result_dir : str
        Where the ServerApp writes :data:`RESULT_FILE` and :data:`MODEL_FILE` (empty: nowhere).
    round_timeout, connect_timeout : float
        Seconds to wait for one round's replies, and for the nodes to connect.
    """
    check_deployable(config)
    for name, value in (("round_timeout", round_timeout), ("connect_timeout", connect_timeout)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ValueError(f"`{name}` must be a positive number of seconds, got {value!r}")
    if not isinstance(result_dir, str):
        raise TypeError(f"`result_dir` must be a str, got {type(result_dir).__name__}")
    c = config
    return {"num-clients": c.num_clients, "rounds": c.rounds, "local-epochs": c.local_epochs,
            "batch-size": 0 if c.batch_size is None else c.batch_size, "lr": float(c.lr),
            "fraction": float(c.fraction), "partition": c.partition,
            "alpha": 0.0 if c.alpha is None else float(c.alpha), "seed": c.seed,
            "shards-per-client": c.shards_per_client, "min-size": c.min_size,
            "secure-aggregation": c.secure_aggregation, "secagg-graph": c.secagg_graph,
            "result-dir": result_dir, "round-timeout": float(round_timeout),
            "connect-timeout": float(connect_timeout)}


def settings_from_run_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The run config's FedAvg options as keyword arguments of
    :class:`~course_lib.fl.config.FedAvgConfig` (no PyTorch needed to read them)."""
    missing = sorted({"num-clients", "rounds", "seed", "partition"} - set(config))
    if missing:
        raise ValueError(f"run config lacks {missing}; build it with run_config()")
    return {"num_clients": int(config["num-clients"]), "rounds": int(config["rounds"]),
            "local_epochs": int(config["local-epochs"]),
            "batch_size": int(config["batch-size"]) or None, "lr": float(config["lr"]),
            "fraction": float(config["fraction"]), "partition": str(config["partition"]),
            "alpha": float(config["alpha"]) or None, "seed": int(config["seed"]),
            "shards_per_client": int(config["shards-per-client"]),
            "min_size": int(config["min-size"]),
            "secure_aggregation": bool(config.get("secure-aggregation", False)),
            "secagg_graph": str(config.get("secagg-graph", "complete"))}


def config_from_run_config(config: Mapping[str, Any]) -> FedAvgConfig:
    """The inverse of :func:`run_config`: the :class:`~course_lib.fl.config.FedAvgConfig`
    (with ``engine="sequential"``, the engine a deployment reproduces)."""
    from course_lib.fl.config import FedAvgConfig

    return FedAvgConfig(**settings_from_run_config(config), engine="sequential")


@functools.lru_cache(maxsize=1)
def _digits() -> Any:
    from course_lib.fl.data import load_digits

    return load_digits(seed=0)  # the simulation's default data; the tensors are never modified


def client_indices(config: FedAvgConfig, data: Any = None) -> list[np.ndarray]:
    """Every client's training-sample indices, split exactly as ``run_fedavg`` splits them.

    ``data`` defaults to the digits (``load_digits(seed=0)``, the simulation's default).
    """
    from course_lib.fl.partition import split

    data = _digits() if data is None else data
    return split(config.partition, data.y_train, num_clients=config.num_clients,
                 alpha=config.alpha, seed=config.seed,
                 shards_per_client=config.shards_per_client, min_size=config.min_size)


def save_node_data(path: str | Path, X: torch.Tensor, y: torch.Tensor) -> None:
    """Write one node's training data (what a SuperNode's ``data-file`` points to)."""
    from safetensors.torch import save_file

    save_file({"X": X.contiguous(), "y": y.contiguous()}, str(path))


def load_node_data(path: str | Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Read a node's ``(X, y)`` (safetensors: no pickle), checking shapes and dtypes."""
    import torch
    from safetensors.torch import load_file

    tensors = load_file(str(path))
    X, y = tensors.get("X"), tensors.get("y")
    if X is None or y is None or X.dtype != torch.float32 or y.dtype != torch.int64 \
            or X.ndim != 2 or y.ndim != 1 or len(X) != len(y):
        raise ValueError(f"{path}: expected float32 X (samples, features) and int64 y "
                         f"(samples,), got {sorted(tensors)}")
    return X, y
