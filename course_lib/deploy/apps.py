"""Flower adapters: our client training and FedAvg as a Flower ``ClientApp`` and ``ServerApp``.

Flower (https://flower.ai) runs FedAvg's five steps as a real federation: a *SuperLink* (the
server's endpoint) and one *SuperNode* per client, separate processes talking over the network.
Our code plugs into Flower's Message API unchanged:

- :data:`client_app` answers ``"train"`` messages by calling
  :func:`~course_lib.fl.client.train_local` on the node's own data (the file its node config
  names) and sends back ``(weights, n_k)``; ``"query"`` messages get its partition id;
- :data:`server_app` sends the global model to the selected nodes, averages their replies with
  :func:`~course_lib.fl.aggregate.fedavg` in partition order, and evaluates on the test set
  after every round, as :func:`~course_lib.fl.simulation.run_fedavg` does.

Same split, same per-client seeds (``derive_seeds(seed, round, [k])``), same order: the
deployed model equals ``run_fedavg(..., engine="sequential")``'s bit for bit. Weights travel as
NumPy ``.npy`` bytes, read with ``allow_pickle=False``; results are written as JSON and
safetensors. Settings reach both apps as Flower's flat *run config* (:func:`run_config`).
Importing this module needs no Flower; building an app without it raises an ``ImportError``
naming the ``flower`` extra. :mod:`course_lib.deploy` starts the processes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from course_lib.deploy.protocol import (
    FLOWER_HINT,
    MODEL_FILE,
    RESULT_FILE,
    _digits,
    client_indices,
    load_node_data,
    require_flwr,
    run_config,
    save_node_data,
    settings_from_run_config,
)
from course_lib.fl.client import train_local
from course_lib.fl.models import make_mlp, state_nbytes
from course_lib.fl.seeds import derive_seeds

# A SuperNode starts a fresh process per message, so the client side imports only torch and the
# modules above; scikit-learn's digits and the simulation's split are imported where used.

# client_app and server_app come from __getattr__ below (built on first use: Flower is optional)
__all__ = ["client_app", "server_app", "make_client_app", "make_server_app", "require_flwr",  # noqa: F822
           "run_config", "settings_from_run_config", "client_indices", "save_node_data",
           "load_node_data", "RESULT_FILE", "MODEL_FILE", "FLOWER_HINT"]

POLL_SECONDS = 0.1  # how often the server asks the SuperLink for replies


# -- the ClientApp ---------------------------------------------------------------------------
def _node_setting(context: Any, key: str, kind: type) -> Any:
    value = context.node_config.get(key)
    if isinstance(value, bool) or not isinstance(value, kind):
        raise ValueError(f"node config `{key}` must be a {kind.__name__}, got {value!r}")
    return value


def make_client_app() -> Any:
    """A new ``ClientApp``: ``query`` -> partition id; ``train`` -> ``train_local``.

    Each SuperNode is started with ``--node-config 'partition-id=K data-file="..."'``: its
    id and the file (see :func:`save_node_data`) holding its own training samples.
    """
    require_flwr()
    from flwr.app import ArrayRecord, Message, MetricRecord, RecordDict
    from flwr.clientapp import ClientApp

    app = ClientApp()

    @app.query()
    def query(message: Any, context: Any) -> Any:
        metrics = MetricRecord({"partition-id": _node_setting(context, "partition-id", int)})
        return Message(RecordDict({"metrics": metrics}), reply_to=message)

    @app.train()
    def train(message: Any, context: Any) -> Any:
        start = time.perf_counter()
        s = settings_from_run_config(context.run_config)
        k = _node_setting(context, "partition-id", int)
        X, y = load_node_data(_node_setting(context, "data-file", str))
        round_number = int(message.content["config"]["round"])
        model = make_mlp(in_features=X.shape[1], num_classes=int(message.content["config"][
            "num-classes"]))
        model.load_state_dict(message.content["arrays"].to_torch_state_dict())  # strict
        state, n = train_local(model, X, y, epochs=s["local_epochs"], batch_size=s["batch_size"],
                               lr=s["lr"], seed=int(derive_seeds(s["seed"], round_number, [k])[0]))
        metrics = MetricRecord({"num-examples": n, "partition-id": k,
                                "train-seconds": time.perf_counter() - start})
        return Message(RecordDict({"arrays": ArrayRecord(torch_state_dict=state),
                                   "metrics": metrics}), reply_to=message)

    return app


# -- the ServerApp ---------------------------------------------------------------------------
def make_server_app() -> Any:
    """A new ``ServerApp`` running FedAvg over the connected SuperNodes (see module doc)."""
    require_flwr()
    from flwr.serverapp import ServerApp

    app = ServerApp()

    @app.main()
    def main(grid: Any, context: Any) -> None:
        _serve_fedavg(grid, context.run_config)

    return app


def _serve_fedavg(grid: Any, config: Mapping[str, Any]) -> None:
    from flwr.app import ArrayRecord, ConfigRecord, RecordDict

    from course_lib.fl.aggregate import fedavg
    from course_lib.fl.client import evaluate

    start = time.perf_counter()
    s = settings_from_run_config(config)
    num_clients, seed, timeout = s["num_clients"], s["seed"], float(config["round-timeout"])
    data = _digits()  # the server's own test set (the simulation evaluates on the same one)
    model = make_mlp(in_features=data.num_features, num_classes=data.num_classes, seed=seed)
    nodes = _wait_for_nodes(grid, num_clients, timeout=float(config["connect-timeout"]))
    per_round = max(1, round(s["fraction"] * num_clients))
    # With every client in every round the first replies say who holds which partition;
    # with a fraction the server asks first, since it must pick partitions by number.
    node_of = None if per_round == num_clients else \
        _partition_map(_exchange(grid, RecordDict(), nodes, "query", group="0",
                                 timeout=timeout), num_clients)
    record: dict[str, Any] = {key: [] for key in ("test_accuracy", "test_loss", "participants",
                                                  "bytes_transferred", "round_seconds")}
    record["initial_accuracy"], record["initial_loss"] = evaluate(model, data.X_test,
                                                                  data.y_test)
    select_rng = np.random.default_rng([seed, 1])  # the simulation's selection stream
    _log(f"FedAvg on {num_clients} SuperNodes, {s['rounds']} round{'s' * (s['rounds'] > 1)}; "
         f"connected in {time.perf_counter() - start:.1f} s")
    _log(f"{'round':>5}  {'accuracy':>8}  {'loss':>7}  {'clients':>7}  {'time (s)':>8}")
    for r in range(1, s["rounds"] + 1):
        t0 = time.perf_counter()
        chosen = np.arange(num_clients) if per_round == num_clients else \
            np.sort(select_rng.choice(num_clients, size=per_round, replace=False))
        content = RecordDict({"arrays": ArrayRecord(torch_state_dict=model.state_dict()),
                              "config": ConfigRecord({"round": r,
                                                      "num-classes": data.num_classes})})
        targets = nodes if node_of is None else [node_of[int(k)] for k in chosen]
        replies = _exchange(grid, content, targets, "train", group=str(r), timeout=timeout)
        if node_of is None:
            node_of = _partition_map(replies, num_clients)
        ordered = [replies[node_of[int(k)]] for k in chosen]  # partition order, as simulated
        sizes = [int(reply["metrics"]["num-examples"]) for reply in ordered]
        if sum(sizes) > 0:  # all chosen clients empty: the model stays as it is
            states = [reply["arrays"].to_torch_state_dict() for reply in ordered]
            model.load_state_dict(fedavg(states, sizes))  # checks keys, shapes, NaN
        record["round_seconds"].append(time.perf_counter() - t0)
        accuracy, loss = evaluate(model, data.X_test, data.y_test)
        record["test_accuracy"].append(accuracy)
        record["test_loss"].append(loss)
        record["participants"].append(chosen.tolist())
        record["bytes_transferred"].append(2 * state_nbytes(model) * len(chosen))
        _log(f"{r:>5}  {accuracy:>8.4f}  {loss:>7.4f}  {len(chosen):>7}  "
             f"{record['round_seconds'][-1]:>8.2f}")
    record["wall_seconds"] = time.perf_counter() - start
    record["nodes"] = {str(k): node for k, node in (node_of or {}).items()}
    _log(f"final test accuracy: {record['test_accuracy'][-1]:.4f}")
    if config["result-dir"]:
        _save(Path(str(config["result-dir"])), record, model.state_dict())


def _wait_for_nodes(grid: Any, num_clients: int, *, timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    nodes: list[int] = sorted(grid.get_node_ids())
    while len(nodes) < num_clients:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(nodes)} of {num_clients} SuperNodes connected "
                               f"within {timeout:g} s")
        time.sleep(POLL_SECONDS)
        nodes = sorted(grid.get_node_ids())
    return nodes


def _partition_map(replies: Mapping[int, Any], num_clients: int) -> dict[int, int]:
    """``{partition id: node id}`` from replies that carry a ``partition-id`` metric."""
    claimed = {node: int(reply["metrics"]["partition-id"]) for node, reply in replies.items()}
    if sorted(claimed.values()) != list(range(num_clients)):
        raise ValueError(f"SuperNodes must hold partitions 0..{num_clients - 1} once each, "
                         f"got {sorted(claimed.values())}")
    return {k: node for node, k in claimed.items()}


def _exchange(grid: Any, content: Any, nodes: Iterable[int], message_type: str, *,
              group: str, timeout: float) -> dict[int, Any]:
    """Send ``content`` to every node and return ``{node: reply content}``.

    Flower's ``grid.send_and_receive`` checks for replies every 3 s; polling every
    :data:`POLL_SECONDS` keeps a round of this small model from waiting for nothing.
    """
    from flwr.app import Message

    nodes = list(nodes)
    messages = [Message(content, dst_node_id=node, message_type=message_type, group_id=group)
                for node in nodes]
    ids = list(grid.push_messages(messages))
    sent = dict(zip(ids, nodes))
    replies: dict[int, Any] = {}
    deadline = time.monotonic() + timeout
    while len(replies) < len(nodes):
        for reply in grid.pull_messages([i for i in ids if sent[i] not in replies]):
            node = sent[reply.metadata.reply_to_message_id]
            if reply.has_error():
                raise RuntimeError(f"SuperNode {node} failed a {message_type} message: "
                                   f"{reply.error.reason}")
            replies[node] = reply.content
        if len(replies) < len(nodes):
            if time.monotonic() > deadline:
                missing = sorted(set(nodes) - set(replies))
                raise TimeoutError(f"no {message_type} reply from SuperNodes {missing} "
                                   f"within {timeout:g} s")
            time.sleep(POLL_SECONDS)
    return replies


def _save(folder: Path, record: dict[str, Any], state: dict[str, torch.Tensor]) -> None:
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / MODEL_FILE))
    (folder / RESULT_FILE).write_text(json.dumps(record, indent=1), encoding="utf-8")


def _log(line: str) -> None:
    print(line, flush=True)  # the ServerApp's stdout is what `flwr run --stream` shows


def __getattr__(name: str) -> Any:
    """``client_app`` and ``server_app`` are built on first access (Flower imported then)."""
    makers = {"client_app": make_client_app, "server_app": make_server_app}
    if name in makers:
        app = makers[name]()
        globals()[name] = app
        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
