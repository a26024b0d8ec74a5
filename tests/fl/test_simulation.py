"""run_fedavg and friends: the two engines agree, FedAvg learns, non-IID learns slower."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from course_lib.fl.data import Dataset
from course_lib.fl.models import state_nbytes
from course_lib.fl.simulation import History, run_centralised, run_fedavg, run_fedsgd


def _max_diff(a: History, b: History) -> float:
    sa, sb = a.model.state_dict(), b.model.state_dict()
    return max((sa[k] - sb[k]).abs().max().item() for k in sa)


@pytest.mark.parametrize("kwargs, has_empty", [
    pytest.param(dict(num_clients=10), False, id="iid-10"),
    pytest.param(dict(num_clients=100, alpha=0.05), True, id="dirichlet-empty-clients"),
    pytest.param(dict(num_clients=1000), False, id="iid-1000"),
    pytest.param(dict(num_clients=1000, alpha=0.5), True, id="dirichlet-1000"),
    pytest.param(dict(num_clients=20, partition="shards", local_epochs=3, batch_size=7), False,
                 id="shards-E3-B7"),
    pytest.param(dict(num_clients=30, fraction=0.3, alpha=0.5), False, id="fraction"),
])
def test_batched_equals_sequential_after_one_round(kwargs, has_empty):
    batched = run_fedavg(rounds=1, engine="batched", **kwargs)
    sequential = run_fedavg(rounds=1, engine="sequential", **kwargs)
    assert (batched.label_counts.sum(axis=1) == 0).any() == has_empty
    assert _max_diff(batched, sequential) <= 1e-5
    assert np.array_equal(batched.participants[0], sequential.participants[0])


def test_fedsgd_engines_agree_and_fedsgd_is_one_full_batch_step():
    a = run_fedsgd(num_clients=10, rounds=2, alpha=0.3, engine="batched")
    b = run_fedsgd(num_clients=10, rounds=2, alpha=0.3, engine="sequential")
    assert _max_diff(a, b) <= 1e-5
    same = run_fedavg(num_clients=10, rounds=2, alpha=0.3, local_epochs=1, batch_size=None,
                      lr=a.config["lr"])
    assert _max_diff(a, same) == 0.0
    assert a.algorithm == "fedsgd" and a.config["batch_size"] is None


def test_iid_reaches_90_percent_with_defaults():
    history = run_fedavg(num_clients=10, rounds=20)
    assert history.final_accuracy >= 0.90
    assert history.config["partition"] == "iid" and history.config["engine"] == "batched"


def test_strong_label_skew_learns_visibly_slower():
    iid_curves, skew_curves, iid_r90, skew_r90 = [], [], 0, 0
    for seed in range(3):
        iid = run_fedavg(num_clients=10, rounds=20, seed=seed)
        skew = run_fedavg(num_clients=10, rounds=20, alpha=0.05, seed=seed)
        iid_curves.append(iid.test_accuracy)
        skew_curves.append(skew.test_accuracy)
        iid_r90 += iid.rounds_to_reach(0.9) or 21
        skew_r90 += skew.rounds_to_reach(0.9) or 21
    assert np.mean(iid_curves) >= np.mean(skew_curves) + 0.02
    assert skew_r90 > iid_r90


def test_history_records_everything():
    seen = []
    history = run_fedavg(num_clients=20, rounds=4, fraction=0.25, alpha=1.0, seed=3,
                         on_round=lambda h: seen.append(len(h.test_accuracy)))
    assert seen == [1, 2, 3, 4]
    assert history.rounds.tolist() == [1, 2, 3, 4]
    assert len(history.test_loss) == len(history.round_seconds) == 4
    assert all(len(p) == 5 and len(set(p.tolist())) == 5 for p in history.participants)
    assert all(0 <= p.min() and p.max() < 20 for p in history.participants)
    assert history.bytes_transferred == [2 * 5 * state_nbytes(history.model)] * 4
    assert history.label_counts.shape == (20, 10) and history.label_counts.sum() == 1347
    assert history.wall_seconds >= sum(history.round_seconds) > 0
    assert 0 <= history.initial_accuracy < 0.3
    assert history.rows()[0]["clients"] == 5
    assert repr(history).startswith("History(fedavg, 20 clients, 4 rounds, final accuracy 0.")
    again = run_fedavg(num_clients=20, rounds=4, fraction=0.25, alpha=1.0, seed=3)
    assert again.test_accuracy == history.test_accuracy  # same seed, same run
    other = run_fedavg(num_clients=20, rounds=4, fraction=0.25, alpha=1.0, seed=4)
    assert other.test_accuracy != history.test_accuracy


def test_rounds_where_every_chosen_client_is_empty_keep_the_model():
    rng = np.random.default_rng(0)
    X = torch.from_numpy(rng.normal(size=(40, 64)).astype(np.float32))
    y = torch.arange(40) % 10
    tiny = Dataset(X_train=X[:3], y_train=y[:3], X_test=X, y_test=y,
                   mean=torch.zeros(64), std=torch.ones(64), name="tiny")
    runs = [run_fedavg(num_clients=10, rounds=12, fraction=0.1, data=tiny, engine=engine)
            for engine in ("batched", "sequential")]
    assert _max_diff(*runs) <= 1e-5
    losses = [runs[0].initial_loss] + runs[0].test_loss
    counts = runs[0].label_counts.sum(axis=1)
    for r, chosen in enumerate(runs[0].participants, start=1):
        if counts[chosen].sum() == 0:
            assert losses[r] == losses[r - 1]
        else:
            assert losses[r] != losses[r - 1]


def test_sequential_engine_takes_any_model_batched_refuses():
    model = nn.Sequential(nn.Linear(64, 10))
    history = run_fedavg(num_clients=3, rounds=2, engine="sequential", model=model)
    assert list(history.model.state_dict()) == ["0.weight", "0.bias"]
    with pytest.raises(ValueError, match="engine.*sequential"):
        run_fedavg(num_clients=3, rounds=2, engine="batched", model=model)


def test_centralised_baseline():
    history = run_centralised(epochs=10)
    assert history.algorithm == "centralised" and len(history.test_accuracy) == 10
    assert history.final_accuracy >= 0.95
    assert history.bytes_transferred[0] == 1347 * 64 * 4 + 1347 * 8  # the raw data, once
    assert history.bytes_transferred[1:] == [0] * 9
    assert history.label_counts.shape == (1, 10)


def test_progress_bar_runs(capsys):
    run_fedavg(num_clients=2, rounds=2, progress=True)
    assert "fedavg" in capsys.readouterr().err


@pytest.mark.parametrize("kwargs, message", [
    (dict(num_clients=0), r"`num_clients` must be an int in \[1, 10000\], got 0"),
    (dict(rounds=0), r"`rounds` must be an int in \[1, 10000\], got 0"),
    (dict(alpha=0), "`alpha` must be a positive finite number, got 0"),
    (dict(alpha=-0.5), "`alpha` must be a positive finite number, got -0.5"),
    (dict(partition="dirichlet"), "`alpha` is required when partition='dirichlet'"),
    (dict(partition="iid", alpha=0.5), "`alpha` is only used with partition='dirichlet'"),
    (dict(fraction=0), r"`fraction` must be a number in \(0, 1\], got 0"),
    (dict(fraction=1.5), r"`fraction` must be a number in \(0, 1\], got 1.5"),
    (dict(engine="fast"), "`engine` must be one of .*, got 'fast'"),
    (dict(partition="random"), "`partition` must be one of .*, got 'random'"),
    (dict(lr=-1.0), "`lr` must be a positive finite number, got -1.0"),
    (dict(local_epochs=0), "`epochs` must be an int"),
    (dict(batch_size=0), "`batch_size` must be an int"),
])
def test_bad_arguments_name_parameter_and_value(kwargs, message):
    arguments = dict(num_clients=10, rounds=2) | kwargs
    with pytest.raises(ValueError, match=message):
        run_fedavg(**arguments)
