"""Flower adapters: our client training as a Flower ``ClientApp``, Flower's FedAvg as the
``ServerApp``.

Flower (https://flower.ai) runs FedAvg's five steps as a real federation: a *SuperLink* (the
server's endpoint) and one *SuperNode* per client, separate processes talking over the network.
Our code plugs into Flower's Message API:

- :data:`client_app` answers ``"train"`` messages with :func:`train_on_node`, which calls
  :func:`~course_lib.fl.client.train_local` on the node's own data (the file its node config
  names) and sends back ``(weights, n_k)``; ``"query"`` messages get its partition id;
- :data:`server_app` runs **Flower's own FedAvg strategy**
  (:class:`~course_lib.deploy.strategy.PartitionFedAvg`, a ``flwr.serverapp.strategy.FedAvg``):
  it starts from our initial model, sends it to the simulation's partitions, weights the
  replies by ``num-examples`` and averages them, and calls our evaluation on the server's test
  set after every round, as :func:`~course_lib.fl.simulation.run_fedavg` does.

Same split, same per-client seeds (``derive_seeds(seed, round, [k])``), same selection: the
deployed model matches ``run_fedavg(config, engine="sequential")`` to within 1e-6 per weight.
It is not bit for bit, because Flower averages in float32 where our ``fedavg`` sums in float64
(:mod:`course_lib.deploy.strategy` says where). Weights travel as NumPy ``.npy`` bytes, read
with ``allow_pickle=False``; results are written as JSON and safetensors. The run's
:class:`~course_lib.fl.config.FedAvgConfig` reaches both apps as Flower's flat *run config*
(:func:`~course_lib.deploy.protocol.run_config`). Importing this module needs no Flower;
building an app without it raises an ``ImportError`` naming the ``flower`` extra.
:mod:`course_lib.deploy` starts the processes; :mod:`course_lib.deploy.secagg_apps` holds the
same round under Flower's SecAgg+.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from course_lib.deploy.protocol import (
    FLOWER_HINT,
    MODEL_FILE,
    RESULT_FILE,
    _digits,
    client_indices,
    config_from_run_config,
    load_node_data,
    require_flwr,
    run_config,
    save_node_data,
)
from course_lib.deploy.record import RunRecord
from course_lib.fl.client import train_local
from course_lib.fl.models import make_mlp
from course_lib.fl.seeds import derive_seeds

# client_app and server_app come from __getattr__ below (built on first use: Flower is optional)
__all__ = ["client_app", "server_app", "make_client_app", "make_server_app", "require_flwr",  # noqa: F822
           "train_on_node", "node_setting", "wait_for_nodes", "run_config", "client_indices",
           "save_node_data", "load_node_data", "RESULT_FILE", "MODEL_FILE", "FLOWER_HINT"]


# -- the ClientApp ---------------------------------------------------------------------------
def node_setting(context: Any, key: str, kind: type) -> Any:
    """The SuperNode's ``--node-config`` value ``key``, checked to be a ``kind``."""
    value = context.node_config.get(key)
    if isinstance(value, bool) or not isinstance(value, kind):
        raise ValueError(f"node config `{key}` must be a {kind.__name__}, got {value!r}")
    return value


def train_on_node(context: Any, state: Mapping[str, torch.Tensor] | Sequence[np.ndarray], *,
                  round_number: int,
                  num_classes: int) -> tuple[dict[str, torch.Tensor], int, int, float]:
    """One client's local training on its node: ``(weights, n_k, partition id, seconds)``.

    ``state`` is the global model, a state_dict or its arrays in state_dict order (what a
    ``NumPyClient`` receives). The node's data file and partition id come from its node
    config, the options from the run config; the seed is the simulation's
    ``derive_seeds(seed, round, [k])``.
    """
    start = time.perf_counter()
    c = config_from_run_config(context.run_config)
    k = node_setting(context, "partition-id", int)
    X, y = load_node_data(node_setting(context, "data-file", str))
    model = make_mlp(in_features=X.shape[1], num_classes=num_classes)
    if not isinstance(state, Mapping):
        state = {name: torch.as_tensor(np.asarray(a)) for name, a in zip(model.state_dict(),
                                                                         state, strict=True)}
    model.load_state_dict(dict(state))  # strict: same keys and shapes; copies into float32
    weights, n = train_local(model, X, y, epochs=c.local_epochs, batch_size=c.batch_size,
                             lr=c.lr, seed=int(derive_seeds(c.seed, round_number, [k])[0]))
    return weights, n, k, time.perf_counter() - start


def make_client_app() -> Any:
    """A new ``ClientApp``: ``query`` -> partition id; ``train`` -> :func:`train_on_node`.

    Each SuperNode is started with ``--node-config 'partition-id=K data-file="..."'``: its
    id and the file (see :func:`save_node_data`) holding its own training samples.
    """
    require_flwr()
    from flwr.app import ArrayRecord, Message, MetricRecord, RecordDict
    from flwr.clientapp import ClientApp

    app = ClientApp()

    @app.query()
    def query(message: Any, context: Any) -> Any:
        metrics = MetricRecord({"partition-id": node_setting(context, "partition-id", int)})
        return Message(RecordDict({"metrics": metrics}), reply_to=message)

    @app.train()
    def train(message: Any, context: Any) -> Any:
        config = message.content["config"]
        weights, n, k, seconds = train_on_node(
            context, message.content["arrays"].to_torch_state_dict(),
            round_number=int(config["server-round"]), num_classes=int(config["num-classes"]))
        metrics = MetricRecord({"num-examples": n, "partition-id": k, "train-seconds": seconds})
        return Message(RecordDict({"arrays": ArrayRecord(torch_state_dict=weights),
                                   "metrics": metrics}), reply_to=message)

    return app


# -- the ServerApp ---------------------------------------------------------------------------
def make_server_app() -> Any:
    """A new ``ServerApp`` running Flower's FedAvg over the connected SuperNodes (module doc)."""
    require_flwr()
    from flwr.serverapp import ServerApp

    app = ServerApp()

    @app.main()
    def main(grid: Any, context: Any) -> None:
        _serve_fedavg(grid, context.run_config)

    return app


def _serve_fedavg(grid: Any, config: Mapping[str, Any]) -> None:
    """FedAvg by Flower's strategy (:class:`~course_lib.deploy.strategy.PartitionFedAvg`)."""
    from flwr.app import ArrayRecord, ConfigRecord, MetricRecord

    from course_lib.deploy.strategy import PartitionFedAvg, PollingGrid

    c = config_from_run_config(config)
    data = _digits()  # the server's own test set (the simulation evaluates on the same one)
    model = make_mlp(in_features=data.num_features, num_classes=data.num_classes, seed=c.seed)
    record = RunRecord(model, data)
    wait_for_nodes(grid, c.num_clients, timeout=float(config["connect-timeout"]))
    chosen: list[int] = []
    strategy = PartitionFedAvg(num_clients=c.num_clients, fraction=c.fraction, seed=c.seed,
                               on_select=lambda ks: chosen.__setitem__(slice(None), ks))

    def evaluate(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        state = None if server_round == 0 else arrays.to_torch_state_dict()
        accuracy, loss = record.evaluate(server_round, state, chosen)
        return MetricRecord({"accuracy": accuracy, "loss": loss})

    record.header(f"Flower FedAvg on {c.num_clients} SuperNodes, {c.rounds} "
                  f"round{'s' * (c.rounds > 1)}")
    record.begin()
    strategy.start(PollingGrid(grid, strict=True), ArrayRecord(model.state_dict()),
                   num_rounds=c.rounds, timeout=float(config["round-timeout"]),
                   train_config=ConfigRecord({"num-classes": data.num_classes}),
                   evaluate_fn=evaluate)
    record.extra["nodes"] = {str(k): node for k, node in (strategy.node_of or {}).items()}
    record.save(str(config["result-dir"]))


def wait_for_nodes(grid: Any, num_clients: int, *, timeout: float) -> list[int]:
    """Wait until ``num_clients`` SuperNodes are connected; return their node ids."""
    deadline = time.monotonic() + timeout
    nodes: list[int] = sorted(grid.get_node_ids())
    while len(nodes) < num_clients:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(nodes)} of {num_clients} SuperNodes connected "
                               f"within {timeout:g} s")
        time.sleep(0.1)
        nodes = sorted(grid.get_node_ids())
    return nodes


def __getattr__(name: str) -> Any:
    """``client_app`` and ``server_app`` are built on first access (Flower imported then)."""
    makers = {"client_app": make_client_app, "server_app": make_server_app}
    if name in makers:
        app = makers[name]()
        globals()[name] = app
        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
