"""The same FedAvg round under Flower's own secure aggregation: ``SecAggPlusWorkflow`` on the
server, ``secaggplus_mod`` on the clients.

Flower's SecAgg+ (Bell et al. 2020, on Bonawitz et al. 2017) runs four message exchanges per
round between the ServerApp and every node: *setup* (the node makes two key pairs and sends the
public keys), *share keys* (it Shamir-shares its mask seed ``b_u`` and its key ``s_u`` among its
neighbours, encrypted to each), *collect masked vectors* (it trains, quantises
``(n_k / max_weight) * w_k`` and adds its self-mask and pairwise masks mod ``2**32``), *unmask*
(it reveals shares so that the server can remove the masks). The server learns the weighted
sum and nothing else, **if it follows the protocol**:

- **Threat model: semi-honest (honest-but-curious) server.** The server relays the public keys
  unsigned (it could substitute its own), and each node reveals whatever shares the unmask
  message asks for: Flower 1.42's mod does not even check that one node id is not in both the
  "active" and the "dead" list, so a cheating server can ask for ``b_u`` and ``s_u`` of the
  same ``u`` and unmask ``u`` alone. Chapter 5's ``course_lib.secagg`` adds the consistency
  round with signatures (Bonawitz et al.'s active-adversary variant) that stops this.
- **Quantisation.** Each weight is clipped to ``[-8, 8]`` (:data:`CLIPPING_RANGE`) and rounded
  *stochastically* to one of ``2**22`` levels with NumPy's global, unseeded generator, so two
  runs differ, and the aggregate differs from the plain weighted mean by about the step
  ``16 / 2**22 ~ 3.8e-6`` (scaled by the weights). Our client refuses to send a weight outside
  the clipping range, which Flower would clip silently.
- **Dropouts.** A node that fails to answer one stage is dropped from the next; the round goes
  on while every node keeps at least ``threshold`` live neighbours, and a dropped node's pair
  masks are rebuilt from the shares of its ``s_u``. (A deployment here has no dropouts; the
  simulation's ``dropout=`` shows them.)

:func:`flower_secagg_params` maps ``FedAvgConfig.secagg_graph`` to Flower's ``num_shares`` and
``reconstruction_threshold`` with chapter 5's rules. Importing this module needs Flower but not
PyTorch: the three key-exchange stages never train, so their ClientApp processes skip
``import torch`` (the training stage imports it in :func:`_client_fn`'s ``fit``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from flwr.client import NumPyClient
from flwr.client.mod import secaggplus_mod
from flwr.clientapp import ClientApp
from flwr.serverapp import ServerApp

from course_lib.deploy.protocol import config_from_run_config

# client_app and server_app come from __getattr__ below (built on first use)
__all__ = ["client_app", "server_app", "make_client_app", "make_server_app",  # noqa: F822
           "flower_secagg_params", "CLIPPING_RANGE", "QUANTIZATION_RANGE", "MODULUS_RANGE"]

CLIPPING_RANGE = 8.0  # Flower's defaults, named so that the chapter can print them
QUANTIZATION_RANGE = 2**22
MODULUS_RANGE = 2**32


def flower_secagg_params(num_clients: int, graph: str) -> tuple[int | float, int]:
    """``(num_shares, reconstruction_threshold)`` for Flower's ``SecAggPlusWorkflow``.

    ``"complete"``: every node holds a share of every other (``num_shares=1.0``, Flower's
    "all sampled nodes"), threshold a majority ``m // 2 + 1`` as in :mod:`course_lib.secagg`.
    ``"sparse"``: ``k = sparse_degree(m)`` neighbours plus the node itself hold shares,
    threshold ``(k + 1) // 3 + 1``; with ``k >= m - 1`` (up to 16 nodes, always) it is the
    complete graph.
    """
    from course_lib.secagg import sparse_degree  # imports torch: the server's side only

    if graph not in ("complete", "sparse"):
        raise ValueError(f"`graph` must be 'complete' or 'sparse', got {graph!r}")
    k = num_clients - 1 if graph == "complete" else sparse_degree(num_clients)
    if k >= num_clients - 1:
        return 1.0, num_clients // 2 + 1
    return k + 1, (k + 1) // 3 + 1


# -- the ClientApp: our training as a NumPyClient, wrapped by Flower's secaggplus_mod -----------
class _NodeClient(NumPyClient):
    """``fit`` trains on this node's data and returns ``(weights, n_k, metrics)``."""

    def __init__(self, context: Any) -> None:
        self.context = context

    def fit(self, parameters: list[np.ndarray], config: dict[str, Any],
            ) -> tuple[list[np.ndarray], int, dict[str, Any]]:
        from course_lib.deploy.apps import train_on_node  # imports torch, at this stage only

        weights, n, k, seconds = train_on_node(
            self.context, parameters, round_number=int(config["server-round"]),
            num_classes=int(config["num-classes"]))
        arrays = [w.detach().numpy() for w in weights.values()]
        largest = max(float(np.abs(a).max()) for a in arrays)
        if largest > CLIPPING_RANGE:
            raise ValueError(f"a weight of {largest:.3g} is outside SecAgg+'s clipping range "
                             f"[-{CLIPPING_RANGE:g}, {CLIPPING_RANGE:g}]: it would be clipped")
        return arrays, n, {"partition-id": k, "train-seconds": seconds}


def _client_fn(context: Any) -> Any:
    return _NodeClient(context).to_client()


def make_client_app() -> ClientApp:
    """A new ``ClientApp`` whose train messages go through Flower's ``secaggplus_mod``."""
    return ClientApp(client_fn=_client_fn, mods=[secaggplus_mod])


# -- the ServerApp: Flower's legacy FedAvg driven by SecAggPlusWorkflow --------------------------
def make_server_app() -> ServerApp:
    """A new ``ServerApp``: ``DefaultWorkflow(fit_workflow=SecAggPlusWorkflow(...))``."""
    app = ServerApp()

    @app.main()
    def main(grid: Any, context: Any) -> None:
        _serve_secagg(grid, context)

    return app


def _serve_secagg(grid: Any, context: Any) -> None:
    import torch
    from flwr.common import ndarrays_to_parameters
    from flwr.server import LegacyContext, ServerConfig
    from flwr.server.strategy import FedAvg
    from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow

    from course_lib.deploy.apps import wait_for_nodes
    from course_lib.deploy.protocol import _digits
    from course_lib.deploy.record import RunRecord
    from course_lib.deploy.strategy import PollingGrid
    from course_lib.fl.models import make_mlp

    config = context.run_config
    c = config_from_run_config(config)
    data = _digits()
    model = make_mlp(in_features=data.num_features, num_classes=data.num_classes, seed=c.seed)
    names = list(model.state_dict())
    record = RunRecord(model, data)
    wait_for_nodes(grid, c.num_clients, timeout=float(config["connect-timeout"]))
    everyone = list(range(c.num_clients))

    def evaluate(server_round: int, parameters: list[np.ndarray], _: Any) -> tuple[float, dict]:
        state = None if server_round == 0 else {
            name: torch.from_numpy(np.asarray(a, dtype=np.float32))  # dequantised: float64
            for name, a in zip(names, parameters)}
        accuracy, loss = record.evaluate(server_round, state, everyone)
        return loss, {"accuracy": accuracy}

    strategy = FedAvg(  # Flower's own (legacy) FedAvg: SecAgg+ hands it the unmasked mean
        fraction_fit=1.0, fraction_evaluate=0.0, min_fit_clients=c.num_clients,
        min_available_clients=c.num_clients, evaluate_fn=evaluate,
        initial_parameters=ndarrays_to_parameters([v.numpy() for v in model.state_dict()
                                                   .values()]),
        on_fit_config_fn=lambda r: {"server-round": r, "num-classes": data.num_classes})
    num_shares, threshold = flower_secagg_params(c.num_clients, c.secagg_graph)
    max_weight = float(len(data.y_train))  # a public bound on n_k, so n_k / max_weight <= 1
    workflow = DefaultWorkflow(fit_workflow=SecAggPlusWorkflow(
        num_shares=num_shares, reconstruction_threshold=threshold, max_weight=max_weight,
        clipping_range=CLIPPING_RANGE, quantization_range=QUANTIZATION_RANGE,
        modulus_range=MODULUS_RANGE, timeout=float(config["round-timeout"])))
    record.header(f"Flower SecAgg+ FedAvg on {c.num_clients} SuperNodes, {c.rounds} "
                  f"round{'s' * (c.rounds > 1)}")
    record.begin()
    workflow(PollingGrid(grid, strict=False),
             LegacyContext(context, config=ServerConfig(num_rounds=c.rounds),
                           strategy=strategy))
    record.extra["secagg_plus"] = {
        "num_shares": c.num_clients if isinstance(num_shares, float) else num_shares,
        "threshold": threshold, "clipping_range": CLIPPING_RANGE,
        "quantization_range": QUANTIZATION_RANGE, "modulus_range": MODULUS_RANGE,
        "max_weight": max_weight}
    record.save(str(config["result-dir"]))


def __getattr__(name: str) -> Any:
    """``client_app`` and ``server_app`` are built on first access."""
    makers = {"client_app": make_client_app, "server_app": make_server_app}
    if name in makers:
        app = makers[name]()
        globals()[name] = app
        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
