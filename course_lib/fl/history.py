"""The record of one training run (returned by every ``run_*`` function), and its JSON form.

A :class:`History` is written in one place, :meth:`History.add_round`, once per round, by
whoever runs the round (the simulation here, the Flower ServerApp in :mod:`course_lib.deploy`).
:meth:`History.to_dict` turns it into plain JSON types (the model excepted: it travels as
safetensors) and :meth:`History.from_dict` reads that back.

Examples
--------
>>> import json
>>> from course_lib.fl import run_fedavg
>>> from course_lib.fl.history import History
>>> h = run_fedavg(num_clients=5, rounds=2)
>>> again = History.from_dict(json.loads(json.dumps(h.to_dict())), model=h.model)
>>> again.test_accuracy == h.test_accuracy and again.config == h.config
True
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch import nn

from course_lib.dp import DPConfig
from course_lib.secagg import Dropouts, SecAggParams, SecAggReport

__all__ = ["History"]

_PER_ROUND = ("test_accuracy", "test_loss", "participants", "bytes_transferred",
              "round_seconds", "dropped", "epsilon", "secagg", "secagg_seconds")


@dataclass(eq=False, repr=False)
class History:
    """What happened in each round of a federated (or centralised) training run.

    Round ``r`` (1-based) is entry ``r - 1`` of every per-round list. For the centralised
    baseline a "round" is one epoch over all the training data.

    Attributes
    ----------
    algorithm : str
        ``"fedavg"``, ``"fedsgd"`` or ``"centralised"``.
    config : dict
        The arguments of the run (after defaults were resolved), for tables and plots.
    test_accuracy, test_loss : list of float
        The global model's test accuracy and mean cross-entropy after each round.
    initial_accuracy, initial_loss : float
        The same for the initial model ("round 0").
    participants : list of int arrays
        The ids of the clients selected in each round.
    bytes_transferred : list of int
        Bytes that would travel in each round: every participant downloads the global model
        and uploads its own (raw float32 tensors, no protocol overhead). For the centralised
        baseline, the raw training data travels once, in round 1.
    round_seconds : list of float
        Wall time of each round's training and aggregation (evaluation excluded; secure
        aggregation and DP accounting included).
    dropped : list of int arrays
        The ids of the selected clients whose updates did not arrive in each round
        (``dropout``); empty arrays when nobody dropped.
    epsilon : list of float
        With differential privacy (``dp=``): the ``epsilon`` spent after each round, for
        ``config["dp"].delta`` (Opacus's RDP accountant); empty without DP.
    secagg : list of SecAggReport or None
        With secure aggregation: each round's protocol report (who survived, bytes, CPU
        seconds), ``None`` for a round whose clients had no data; empty without it.
    secagg_seconds : list of float
        With secure aggregation: wall time of each round's aggregation step, the protocol
        (all clients' and the server's parts, run in this process) included; part of
        ``round_seconds``.
    wall_seconds : float
        Wall time of the whole run: set-up, training, aggregation and evaluation.
    label_counts : np.ndarray, shape (clients, classes)
        Training samples of each class per client (one row for the centralised baseline).
    model : nn.Module
        The final global model.
    """

    algorithm: str
    config: dict[str, Any]
    label_counts: np.ndarray
    model: nn.Module
    initial_accuracy: float
    initial_loss: float
    test_accuracy: list[float] = field(default_factory=list)
    test_loss: list[float] = field(default_factory=list)
    participants: list[np.ndarray] = field(default_factory=list)
    bytes_transferred: list[int] = field(default_factory=list)
    round_seconds: list[float] = field(default_factory=list)
    wall_seconds: float = 0.0
    dropped: list[np.ndarray] = field(default_factory=list)
    epsilon: list[float] = field(default_factory=list)
    secagg: list[Any] = field(default_factory=list)
    secagg_seconds: list[float] = field(default_factory=list)

    @property
    def rounds(self) -> np.ndarray:
        """Round numbers ``1 .. R`` completed so far (x axis of the per-round lists)."""
        return np.arange(1, len(self.test_accuracy) + 1)

    @property
    def final_accuracy(self) -> float:
        """Test accuracy after the last completed round (the initial one if none ran)."""
        return self.test_accuracy[-1] if self.test_accuracy else self.initial_accuracy

    @property
    def final_epsilon(self) -> float | None:
        """``epsilon`` after the last completed round; ``None`` without DP (or before round 1)."""
        return self.epsilon[-1] if self.epsilon else None

    def rounds_to_reach(self, target: float) -> int | None:
        """First round whose test accuracy is at least ``target``; ``None`` if never reached."""
        for r, accuracy in zip(self.rounds, self.test_accuracy):
            if accuracy >= target:
                return int(r)
        return None

    def rows(self) -> list[dict[str, Any]]:
        """One dict per round (round, accuracy, loss, clients, bytes, seconds) for tables;
        with ``dropped`` when clients dropped out and ``epsilon`` under DP."""
        rows = [{"round": int(r), "accuracy": acc, "loss": loss, "clients": len(p),
                 "bytes": b, "seconds": s}
                for r, acc, loss, p, b, s in zip(self.rounds, self.test_accuracy, self.test_loss,
                                                 self.participants, self.bytes_transferred,
                                                 self.round_seconds)]
        for row, dropped in zip(rows, self.dropped):
            if any(len(d) for d in self.dropped):
                row["dropped"] = len(dropped)
        for row, eps in zip(rows, self.epsilon):
            row["epsilon"] = eps
        return rows

    def add_round(self, *, accuracy: float, loss: float, participants: np.ndarray,
                  bytes_transferred: int, seconds: float, dropped: np.ndarray | None = None,
                  epsilon: float | None = None, secagg: Any = None,
                  secagg_seconds: float | None = None) -> None:
        """Record one finished round: the one place that writes the per-round lists.

        ``dropped`` is recorded for federated runs (an empty array when nobody dropped);
        ``epsilon`` only under DP; ``secagg`` and ``secagg_seconds`` only with secure
        aggregation (``secagg=None`` with ``secagg_seconds`` given: a round without data).
        """
        self.test_accuracy.append(float(accuracy))
        self.test_loss.append(float(loss))
        self.participants.append(np.asarray(participants, dtype=np.int64))
        self.bytes_transferred.append(int(bytes_transferred))
        self.round_seconds.append(float(seconds))
        if dropped is not None:
            self.dropped.append(np.asarray(dropped, dtype=np.int64))
        if epsilon is not None:
            self.epsilon.append(float(epsilon))
        if secagg_seconds is not None:
            self.secagg.append(secagg)
            self.secagg_seconds.append(float(secagg_seconds))

    def to_dict(self) -> dict[str, Any]:
        """Everything but the model, as JSON types: ``json.dumps(history.to_dict())`` works.

        Arrays become lists, ``config["dp"]`` a dict of the :class:`~course_lib.dp.DPConfig`
        fields, secure-aggregation reports dicts of their fields. An infinite epsilon (no
        noise) stays ``float("inf")``, which Python's ``json`` writes as ``Infinity``.
        """
        out: dict[str, Any] = {"algorithm": self.algorithm,
                               "config": {k: _plain(v) for k, v in self.config.items()},
                               "label_counts": self.label_counts.tolist(),
                               "initial_accuracy": self.initial_accuracy,
                               "initial_loss": self.initial_loss,
                               "wall_seconds": self.wall_seconds}
        for name in _PER_ROUND:
            out[name] = [_plain(v) for v in getattr(self, name)]
        return out

    @classmethod
    def from_dict(cls, record: Mapping[str, Any], *, model: nn.Module) -> History:
        """The inverse of :meth:`to_dict`; ``model`` is the final model (loaded separately).

        Raises
        ------
        ValueError
            ``record`` lacks a field, or its per-round lists have different lengths.
        """
        if not isinstance(record, Mapping):
            raise TypeError(f"`record` must be a dict from History.to_dict(), "
                            f"got {type(record).__name__}")
        required = ("algorithm", "config", "label_counts", "initial_accuracy", "initial_loss",
                    "test_accuracy", "test_loss", "participants", "bytes_transferred",
                    "round_seconds")
        missing = [name for name in required if name not in record]
        if missing:
            raise ValueError(f"`record` lacks {missing}; write it with History.to_dict()")
        rounds = len(record["test_accuracy"])
        for name in ("test_loss", "participants", "bytes_transferred", "round_seconds"):
            if len(record[name]) != rounds:
                raise ValueError(f"`record[{name!r}]` must have one entry per round ({rounds}), "
                                 f"got {len(record[name])}")
        config = dict(record["config"])
        if isinstance(config.get("dp"), Mapping):
            config["dp"] = DPConfig(**config["dp"])
        history = cls(str(record["algorithm"]), config,
                      np.asarray(record["label_counts"], dtype=np.int64).reshape(
                          len(record["label_counts"]), -1), model,
                      float(record["initial_accuracy"]), float(record["initial_loss"]))
        history.test_accuracy = [float(v) for v in record["test_accuracy"]]
        history.test_loss = [float(v) for v in record["test_loss"]]
        history.participants = [np.asarray(p, dtype=np.int64) for p in record["participants"]]
        history.bytes_transferred = [int(v) for v in record["bytes_transferred"]]
        history.round_seconds = [float(v) for v in record["round_seconds"]]
        history.wall_seconds = float(record.get("wall_seconds", 0.0))
        history.dropped = [np.asarray(d, dtype=np.int64) for d in record.get("dropped", [])]
        history.epsilon = [float(v) for v in record.get("epsilon", [])]
        history.secagg = [None if r is None else _report(r) for r in record.get("secagg", [])]
        history.secagg_seconds = [float(v) for v in record.get("secagg_seconds", [])]
        return history

    def __repr__(self) -> str:
        clients = self.label_counts.shape[0]
        eps = "" if self.final_epsilon is None else f", epsilon {self.final_epsilon:.3g}"
        return (f"History({self.algorithm}, {clients} client{'s' * (clients != 1)}, "
                f"{len(self.test_accuracy)} rounds, final accuracy {self.final_accuracy:.3f}"
                f"{eps})")


def _plain(value: Any) -> Any:
    """``value`` in JSON types: arrays and tuples become lists, dataclasses dicts."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def _report(fields: Mapping[str, Any]) -> SecAggReport:
    """A :class:`~course_lib.secagg.SecAggReport` from its :func:`_plain` dict."""
    params = dict(fields["params"])
    params["neighbours"] = tuple(tuple(n) for n in params["neighbours"])
    values = dict(fields)
    values["params"] = SecAggParams(**params)
    values["dropouts"] = Dropouts(**{k: tuple(v) for k, v in fields["dropouts"].items()})
    values["survivors"] = tuple(fields["survivors"])
    values["reconstructed"] = {int(k): v for k, v in fields["reconstructed"].items()}
    values["client_seconds"] = np.asarray(fields["client_seconds"], dtype=np.float64)
    values["bytes_sent"] = np.asarray(fields["bytes_sent"], dtype=np.int64)
    return SecAggReport(**values)
