"""The contract between :mod:`course_lib.deploy.apps`'s apps and whoever starts them.

Flower hands both apps a flat *run config* (TOML scalars) and each SuperNode a *node config*.
:func:`run_config` validates FedAvg settings exactly as ``run_fedavg`` does and flattens them
(``None`` is encoded as 0); :func:`settings_from_run_config` reverses it. A node's training
data is a safetensors file (:func:`save_node_data` / :func:`load_node_data`), split by
:func:`client_indices` exactly as the simulation splits it. Importing this needs no Flower.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from course_lib.fl.client import DEFAULT_LR

__all__ = ["FLOWER_HINT", "RESULT_FILE", "MODEL_FILE", "require_flwr", "run_config",
           "settings_from_run_config", "client_indices", "save_node_data", "load_node_data"]

FLOWER_HINT = ("Flower is not installed; install the optional `flower` extra: "
               "pip install -e '.[flower]'  (or: pip install flwr)")
RESULT_FILE = "history.json"  # written by the ServerApp into the run config's result-dir
MODEL_FILE = "model.safetensors"


def require_flwr() -> None:
    """Raise an ``ImportError`` naming the ``flower`` extra if Flower is not installed."""
    try:
        import flwr  # noqa: F401
    except ImportError as err:
        raise ImportError(FLOWER_HINT) from err


# -- settings <-> Flower's run config (flat, TOML scalars only: None is encoded as 0) ----------
def run_config(*, num_clients: int, rounds: int, local_epochs: int = 1,
               batch_size: int | None = 32, lr: float = DEFAULT_LR, fraction: float = 1.0,
               partition: str | None = None, alpha: float | None = None, seed: int = 0,
               shards_per_client: int = 2, min_size: int = 0, result_dir: str = "",
               round_timeout: float = 120.0,
               connect_timeout: float = 60.0) -> dict[str, int | float | str]:
    """Validate FedAvg settings as :func:`run_fedavg` does; return Flower's run config.

    The arguments mean what they mean for :func:`~course_lib.fl.simulation.run_fedavg`;
    ``result_dir`` is where the ServerApp writes :data:`RESULT_FILE` and :data:`MODEL_FILE`
    (empty: nowhere); the timeouts bound the wait for the nodes to connect and for the
    replies of one round, in seconds.
    """
    from course_lib.fl.config import FedAvgConfig

    partition = FedAvgConfig(num_clients=num_clients, rounds=rounds, local_epochs=local_epochs,
                             batch_size=batch_size, lr=lr, fraction=fraction,
                             partition=partition, alpha=alpha, seed=seed,
                             shards_per_client=shards_per_client, min_size=min_size).partition
    for name, value in (("round_timeout", round_timeout), ("connect_timeout", connect_timeout)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ValueError(f"`{name}` must be a positive number of seconds, got {value!r}")
    if not isinstance(result_dir, str):
        raise TypeError(f"`result_dir` must be a str, got {type(result_dir).__name__}")
    return {"num-clients": num_clients, "rounds": rounds, "local-epochs": local_epochs,
            "batch-size": 0 if batch_size is None else batch_size, "lr": float(lr),
            "fraction": float(fraction), "partition": partition,
            "alpha": 0.0 if alpha is None else float(alpha), "seed": seed,
            "shards-per-client": shards_per_client, "min-size": min_size,
            "result-dir": result_dir, "round-timeout": float(round_timeout),
            "connect-timeout": float(connect_timeout)}


def settings_from_run_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The inverse of :func:`run_config`: keyword arguments in ``run_fedavg``'s names."""
    missing = sorted({"num-clients", "rounds", "seed", "partition"} - set(config))
    if missing:
        raise ValueError(f"run config lacks {missing}; build it with run_config()")
    return {"num_clients": int(config["num-clients"]), "rounds": int(config["rounds"]),
            "local_epochs": int(config["local-epochs"]),
            "batch_size": int(config["batch-size"]) or None, "lr": float(config["lr"]),
            "fraction": float(config["fraction"]), "partition": str(config["partition"]),
            "alpha": float(config["alpha"]) or None, "seed": int(config["seed"]),
            "shards_per_client": int(config["shards-per-client"]),
            "min_size": int(config["min-size"])}


@functools.lru_cache(maxsize=1)
def _digits() -> Any:
    from course_lib.fl.data import load_digits

    return load_digits(seed=0)  # the simulation's default data; the tensors are never modified


def client_indices(settings: Mapping[str, Any], data: Any = None) -> list[np.ndarray]:
    """Every client's training-sample indices, split exactly as ``run_fedavg`` splits them.

    ``settings`` is :func:`settings_from_run_config`'s output; ``data`` defaults to the digits.
    """
    from course_lib.fl.partition import split

    data = _digits() if data is None else data
    return split(settings["partition"], data.y_train, num_clients=settings["num_clients"],
                  alpha=settings["alpha"], seed=settings["seed"],
                  shards_per_client=settings["shards_per_client"],
                  min_size=settings["min_size"])


def save_node_data(path: str | Path, X: torch.Tensor, y: torch.Tensor) -> None:
    """Write one node's training data (what a SuperNode's ``data-file`` points to)."""
    from safetensors.torch import save_file

    save_file({"X": X.contiguous(), "y": y.contiguous()}, str(path))


def load_node_data(path: str | Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Read a node's ``(X, y)`` (safetensors: no pickle), checking shapes and dtypes."""
    from safetensors.torch import load_file

    tensors = load_file(str(path))
    X, y = tensors.get("X"), tensors.get("y")
    if X is None or y is None or X.dtype != torch.float32 or y.dtype != torch.int64 \
            or X.ndim != 2 or y.ndim != 1 or len(X) != len(y):
        raise ValueError(f"{path}: expected float32 X (samples, features) and int64 y "
                         f"(samples,), got {sorted(tensors)}")
    return X, y
