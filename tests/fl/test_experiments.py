"""The rounds-to-target experiments, and the early-stop hook of run_fedavg they rely on."""

from __future__ import annotations

import pytest

from course_lib.fl.experiments import rounds_to_target, rounds_to_target_table
from course_lib.fl.simulation import run_centralised, run_fedavg, run_fedsgd


@pytest.mark.parametrize("run", [run_fedavg, run_fedsgd])
def test_on_round_returning_true_stops_the_run(run):
    full = run(num_clients=5, rounds=8)
    stopped = run(num_clients=5, rounds=8, on_round=lambda h: len(h.test_accuracy) == 3)
    assert len(stopped.test_accuracy) == len(stopped.round_seconds) == 3
    assert stopped.test_accuracy == full.test_accuracy[:3]
    assert stopped.config["rounds"] == 8 and stopped.wall_seconds > 0


def test_on_round_stop_for_centralised_and_only_on_true():
    stopped = run_centralised(epochs=6, on_round=lambda h: len(h.test_accuracy) >= 2)
    assert len(stopped.test_accuracy) == 2
    # a truthy value other than True (e.g. a list.append's None or a count) does not stop
    assert len(run_fedavg(num_clients=3, rounds=3, on_round=lambda h: 1).test_accuracy) == 3


def test_rounds_to_target_matches_a_full_run():
    full = run_fedavg(num_clients=10, rounds=20, lr=0.5, local_epochs=1, batch_size=10, seed=1)
    got = rounds_to_target(target=0.9, seeds=(1,), max_rounds=20, num_clients=10, lr=0.5,
                           local_epochs=1, batch_size=10)
    assert got == (full.rounds_to_reach(0.9),)
    assert rounds_to_target(target=1.0, seeds=(0,), max_rounds=2, num_clients=10) == (None,)


def test_diverging_learning_rate_stops_early_and_counts_as_not_reached():
    assert rounds_to_target(target=0.95, seeds=(0,), max_rounds=500, algorithm="fedavg",
                            num_clients=10, lr=1.0, local_epochs=5, batch_size=10) == (None,)


@pytest.mark.parametrize("kwargs, match", [
    (dict(target=0), "target"), (dict(target=1.5), "target"), (dict(max_rounds=0), "max_rounds"),
    (dict(algorithm="fedprox"), "algorithm"), (dict(seeds=()), "seeds"),
])
def test_rounds_to_target_rejects_bad_arguments(kwargs, match):
    options = dict(target=0.9, num_clients=2) | kwargs
    with pytest.raises(ValueError, match=match):
        rounds_to_target(**options)


def test_table_tunes_lr_per_cell_and_computes_speedups():
    table = rounds_to_target_table(target=0.85, fedavg_epochs=(1,), fedsgd_lrs=(0.5, 2.0),
                                   fedavg_lrs=(0.1, 0.5), seeds=(0,), max_rounds=60)
    assert [r.label for r in table.rows] == ["FedSGD E=1 B=inf"] * 2 + ["FedAvg E=1 B=10"] * 2
    for r in table.rows:
        assert set(r.by_lr) == ({0.5, 2.0} if r.method == "FedSGD" else {0.1, 0.5})
        best = min(n for n in r.by_lr.values() if n is not None)
        assert r.rounds == best == r.by_lr[r.lr] == r.per_seed[0]
    sgd, avg = table.row("FedSGD E=1 B=inf", "iid"), table.row("FedAvg E=1 B=10", "iid")
    assert sgd.speedup == 1.0 and avg.speedup == pytest.approx(sgd.rounds / avg.rounds)
    assert avg.rounds < sgd.rounds  # the direction McMahan et al. report on IID data
    text = str(table)
    assert "85%" in text and "FedAvg E=1 B=10" in text and "shards" in text
    assert "lr 0.1:" in table.grid()
    with pytest.raises(KeyError):
        table.row("FedAvg E=7 B=10", "iid")
