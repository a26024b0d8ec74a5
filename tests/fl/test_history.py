"""History: one writer (add_round) and a JSON round trip that loses nothing but the model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from course_lib.dp import DPConfig
from course_lib.fl.history import History
from course_lib.fl.simulation import run_centralised, run_fedavg


def _same(a: History, b: History) -> None:
    assert (a.algorithm, a.config) == (b.algorithm, b.config)
    assert np.array_equal(a.label_counts, b.label_counts)
    assert (a.initial_accuracy, a.initial_loss) == (b.initial_accuracy, b.initial_loss)
    for name in ("test_accuracy", "test_loss", "bytes_transferred", "round_seconds",
                 "epsilon", "secagg_seconds"):
        assert getattr(a, name) == getattr(b, name), name
    for name in ("participants", "dropped"):
        got, expected = getattr(a, name), getattr(b, name)
        assert len(got) == len(expected) and all(
            x.dtype == y.dtype and np.array_equal(x, y) for x, y in zip(got, expected)), name
    assert a.wall_seconds == b.wall_seconds and a.rows() == b.rows() and repr(a) == repr(b)


@pytest.mark.parametrize("options", [
    pytest.param(dict(num_clients=6, rounds=3, fraction=0.5, alpha=0.5), id="plain"),
    pytest.param(dict(num_clients=6, rounds=2, dp=DPConfig(0.0, 0.1), dropout=[0.2, 0.0]),
                 id="dp-infinite-epsilon"),
    pytest.param(dict(num_clients=5, rounds=2, secure_aggregation=True, dropout=0.2,
                      dp=DPConfig(1.0, 0.1)), id="secagg-dp"),
])
def test_json_round_trip(options):
    history = run_fedavg(**options)
    text = json.dumps(history.to_dict())  # plain JSON types only
    again = History.from_dict(json.loads(text), model=history.model)
    _same(again, history)
    assert again.model is history.model
    for got, expected in zip(again.secagg, history.secagg):
        assert got.survivors == expected.survivors and got.params.degree == expected.params.degree
        assert got.dropouts == expected.dropouts and got.reconstructed == expected.reconstructed
        assert np.array_equal(got.bytes_sent, expected.bytes_sent)
    if "dp" in options:
        assert again.config["dp"] == options["dp"] and again.final_epsilon == history.final_epsilon


def test_centralised_round_trip_and_add_round_is_the_one_writer():
    history = run_centralised(epochs=2)
    again = History.from_dict(history.to_dict(), model=history.model)
    _same(again, history)
    assert again.dropped == [] and again.secagg == []
    again.add_round(accuracy=0.5, loss=1.0, participants=[0, 1], bytes_transferred=10,
                    seconds=0.1, dropped=[], epsilon=2.0, secagg=None, secagg_seconds=0.0)
    assert again.rows()[-1] == {"round": 3, "accuracy": 0.5, "loss": 1.0, "clients": 2,
                                "bytes": 10, "seconds": 0.1}
    assert again.epsilon == [2.0] and again.secagg == [None] and again.secagg_seconds == [0.0]
    assert again.participants[-1].dtype == np.int64


def test_from_dict_refuses_incomplete_records():
    record = run_fedavg(num_clients=2, rounds=2).to_dict()
    with pytest.raises(TypeError, match="`record` must be a dict"):
        History.from_dict([record], model=None)
    with pytest.raises(ValueError, match=r"lacks \['test_loss'\]"):
        History.from_dict({k: v for k, v in record.items() if k != "test_loss"}, model=None)
    record["round_seconds"] = record["round_seconds"][:1]
    with pytest.raises(ValueError, match=r"`record\['round_seconds'\]` must have one entry "
                                         r"per round \(2\), got 1"):
        History.from_dict(record, model=None)
