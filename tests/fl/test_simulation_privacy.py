"""run_fedavg with secure aggregation, dropouts and DP-FedAvg: oracles, determinism, errors.

Oracles: plain FedAvg over the same surviving clients (secure aggregation must give the same
model to fixed-point precision), Opacus's own ``RDPAccountant`` (epsilon), and clipped
equal-weight averaging written out here with ``train_local`` and ``clip_update`` (z = 0).
"""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from opacus.accountants import RDPAccountant

from course_lib.dp import DPConfig, clip_update, epsilon, state_delta
from course_lib.errors import CourseLibError
from course_lib.fl import partition as partitions
from course_lib.fl.client import train_local
from course_lib.fl.data import load_digits
from course_lib.fl.models import make_mlp, state_nbytes
from course_lib.fl.seeds import derive_seeds
from course_lib.fl.simulation import History, run_fedavg
from course_lib.secagg import TooManyDropoutsError

DP = DPConfig(noise_multiplier=1.0, max_norm=0.1, delta=1e-5)


def _max_diff(a: History, b: History) -> float:
    sa, sb = a.model.state_dict(), b.model.state_dict()
    return max((sa[k] - sb[k]).abs().max().item() for k in sa)


# -- secure aggregation ------------------------------------------------------------------------
@pytest.mark.parametrize("engine", ["batched", "sequential"])
# 80 clients: the default sparse degree 2 ceil(6 log2 80) = 76 < 79 (below ~78 it is complete)
@pytest.mark.parametrize("graph, clients", [("complete", 12), ("sparse", 80)])
@pytest.mark.parametrize("dropout", [0.0, 0.1, 1 / 3])
def test_secure_aggregation_gives_the_plain_model(engine, graph, clients, dropout):
    options = dict(num_clients=clients, rounds=1, alpha=0.5, engine=engine, dropout=dropout,
                   seed=3)
    plain = run_fedavg(**options)
    secure = run_fedavg(**options, secure_aggregation=True, secagg_graph=graph)
    assert _max_diff(plain, secure) <= 1e-6
    assert secure.test_accuracy == pytest.approx(plain.test_accuracy, abs=2e-3)
    (report,) = secure.secagg
    assert report.params.graph == graph
    if graph == "sparse":  # really sparse: fewer neighbours than clients - 1
        assert report.params.degree < clients - 1
    dropped = secure.dropped[0]
    assert len(dropped) == round(dropout * clients)
    assert np.array_equal(dropped, plain.dropped[0])  # the same clients drop in both modes
    assert report.survivors == tuple(i for i in range(clients) if i not in set(dropped))
    assert plain.secagg == [] and plain.config["secure_aggregation"] is False


def test_secure_aggregation_over_several_rounds_with_selection_and_a_dropout_schedule():
    options = dict(num_clients=15, rounds=3, fraction=0.8, dropout=[0.0, 0.25, 1 / 3],
                   alpha=0.3, seed=1)
    plain = run_fedavg(**options)
    for engine in ("batched", "sequential"):
        secure = run_fedavg(**options, engine=engine, secure_aggregation=True)
        assert _max_diff(plain, secure) <= 1e-6
        assert [len(d) for d in secure.dropped] == [0, 3, 4]  # of m = 12 per round
        assert all(set(d) <= set(p) for d, p in zip(secure.dropped, secure.participants))
        assert len(secure.secagg_seconds) == 3 and all(
            0 < t <= total for t, total in zip(secure.secagg_seconds, secure.round_seconds))
    # the protocol costs bytes: keys, shares and 8-byte masked entries instead of 4-byte floats
    assert sum(secure.bytes_transferred) > sum(plain.bytes_transferred)
    assert plain.bytes_transferred[0] == 2 * state_nbytes(plain.model) * 12


@pytest.mark.parametrize("graph, clients, dropout", [
    ("complete", 10, 0.5),  # 5 survivors < t = 6
    ("sparse", 40, 0.8),
])
def test_too_many_dropouts_raise_a_clear_error(graph, clients, dropout):
    with pytest.raises(TooManyDropoutsError, match="round 1: secure aggregation cannot"):
        run_fedavg(num_clients=clients, rounds=2, secure_aggregation=True, secagg_graph=graph,
                   dropout=dropout)
    assert issubclass(TooManyDropoutsError, CourseLibError)
    assert not issubclass(TooManyDropoutsError, ValueError)  # the arguments were fine
    # without secure aggregation the same dropouts are simply fewer clients averaged
    assert len(run_fedavg(num_clients=clients, rounds=1, dropout=dropout).dropped[0]) == \
        round(dropout * clients)


def test_the_error_names_the_round_that_failed():
    with pytest.raises(TooManyDropoutsError, match="round 3"):
        run_fedavg(num_clients=6, rounds=4, secure_aggregation=True, dropout=[0, 0.3, 0.5, 0])


# -- differential privacy ----------------------------------------------------------------------
@pytest.mark.parametrize("num_clients, fraction, z", [(20, 0.25, 1.0), (10, 0.25, 0.7),
                                                      (8, 1.0, 2.0)])
def test_reported_epsilon_is_the_accountants_own(num_clients, fraction, z):
    dp = DPConfig(noise_multiplier=z, max_norm=0.5, delta=1e-4)
    history = run_fedavg(num_clients=num_clients, rounds=4, fraction=fraction, dp=dp)
    q = max(1, round(fraction * num_clients)) / num_clients  # 10 * 0.25 -> 2 clients: q = 0.2
    assert history.config["sample_rate"] == q and history.config["dp"] is dp
    for steps, reported in enumerate(history.epsilon, start=1):
        oracle = RDPAccountant()
        for _ in range(steps):  # step the accountant as DP-SGD would, one round at a time
            oracle.step(noise_multiplier=z, sample_rate=q)
        assert reported == pytest.approx(oracle.get_epsilon(delta=1e-4), rel=1e-12)
        assert reported == pytest.approx(epsilon(noise_multiplier=z, sample_rate=q,
                                                 steps=steps, delta=1e-4), rel=1e-12)
    assert history.final_epsilon == history.epsilon[-1]
    assert f"epsilon {history.epsilon[-1]:.3g}" in repr(history)
    assert [row["epsilon"] for row in history.rows()] == history.epsilon


def test_zero_noise_is_clipped_equal_weight_averaging_with_a_fixed_denominator():
    num_clients, seed, max_norm = 8, 5, 0.05
    dp = DPConfig(noise_multiplier=0.0, max_norm=max_norm)
    history = run_fedavg(num_clients=num_clients, rounds=2, fraction=0.5, dropout=0.25,
                         alpha=0.5, seed=seed, dp=dp, engine="sequential")
    assert history.epsilon == [float("inf")] * 2
    # the oracle, written out: m = 4 chosen, 1 drops, the 3 others' clipped updates / 4
    data = load_digits(seed=0)
    parts = partitions.dirichlet(data.y_train, num_clients=num_clients, alpha=0.5, seed=seed)
    model = make_mlp(seed=seed)
    for r, (chosen, dropped) in enumerate(zip(history.participants, history.dropped), start=1):
        assert len(chosen) == 4 and len(dropped) == 1
        global_state = model.state_dict()
        total = {k: torch.zeros_like(t) for k, t in global_state.items()}
        for k, client_seed in zip(chosen, derive_seeds(seed, r, chosen)):
            if k in dropped:
                continue
            ix = torch.from_numpy(parts[k])
            state, _ = train_local(model, data.X_train[ix], data.y_train[ix],
                                   seed=int(client_seed))
            clipped = clip_update(state_delta(state, global_state), max_norm)
            total = {name: total[name] + clipped[name] for name in total}
        model.load_state_dict({k: global_state[k] + total[k] / 4 for k in global_state})
    expected = model.state_dict()
    got = history.model.state_dict()
    assert max((got[k] - expected[k]).abs().max().item() for k in got) <= 1e-6
    batched = run_fedavg(num_clients=num_clients, rounds=2, fraction=0.5, dropout=0.25,
                         alpha=0.5, seed=seed, dp=dp)
    assert _max_diff(batched, history) <= 1e-5


def test_more_noise_lowers_accuracy_and_epsilon():
    options = dict(num_clients=100, rounds=50, fraction=0.2, seed=0)
    noise = (0.0, 2.0, 8.0)  # measured: 0.84, 0.81, 0.41 (no DP at all: 0.94)
    runs = {z: run_fedavg(**options, dp=DPConfig(noise_multiplier=z, max_norm=0.1))
            for z in noise}
    accuracy = [runs[z].final_accuracy for z in noise]
    eps = [runs[z].final_epsilon for z in noise]
    assert accuracy[0] > accuracy[1] > accuracy[2]
    assert accuracy[0] > 0.75 and accuracy[2] < accuracy[0] - 0.2
    assert eps[0] == float("inf") and eps[1] > eps[2] > 0


def test_dp_engines_agree_and_secure_aggregation_changes_nothing_but_who_sees_what():
    options = dict(num_clients=20, rounds=3, fraction=0.5, dropout=0.2, alpha=0.5, seed=2, dp=DP)
    batched = run_fedavg(**options)
    sequential = run_fedavg(**options, engine="sequential")
    secure = run_fedavg(**options, secure_aggregation=True, secagg_graph="sparse")
    assert _max_diff(batched, sequential) <= 1e-5
    assert _max_diff(batched, secure) <= 1e-6  # the same noise, the same clipped sum
    assert batched.epsilon == secure.epsilon
    assert len(secure.secagg) == 3 and all(r is not None for r in secure.secagg)


def test_dp_is_deterministic_for_a_seed_and_the_noise_depends_on_it():
    options = dict(num_clients=20, rounds=3, fraction=0.5, dp=DP)
    a, b = run_fedavg(**options, seed=4), run_fedavg(**options, seed=4)
    assert _max_diff(a, b) == 0.0 and a.test_accuracy == b.test_accuracy
    assert a.epsilon == b.epsilon
    assert _max_diff(a, run_fedavg(**options, seed=5)) > 0


def test_noise_is_added_even_when_nobody_arrives():
    alone = dict(num_clients=1, rounds=1, dropout=0.6)  # round(0.6 * 1) = 1: the only one drops
    plain = run_fedavg(**alone)
    assert plain.dropped[0].tolist() == [0]
    start = make_mlp(seed=0).state_dict()
    assert all(torch.equal(plain.model.state_dict()[k], start[k]) for k in start)  # it stays
    noisy = run_fedavg(**alone, dp=DP)
    moved = max((noisy.model.state_dict()[k] - start[k]).abs().max().item() for k in start)
    assert 0 < moved < 10 * DP.noise_multiplier * DP.max_norm  # noise of std z * S / m


def test_no_global_random_state_is_touched():
    before = (torch.get_rng_state(), np.random.get_state(), random.getstate())
    run_fedavg(num_clients=12, rounds=2, fraction=0.5, dropout=1 / 3, dp=DP,
               secure_aggregation=True, alpha=0.3)
    run_fedavg(num_clients=12, rounds=2, dp=DP, engine="sequential")
    after = (torch.get_rng_state(), np.random.get_state(), random.getstate())
    assert torch.equal(before[0], after[0])
    assert all(np.array_equal(x, y) for x, y in zip(before[1], after[1]))
    assert before[2] == after[2]


# -- argument checks ---------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, error, match", [
    (dict(dropout=-0.1), ValueError, r"`dropout` must be a fraction in \[0, 1\)"),
    (dict(dropout=1.0), ValueError, "`dropout`"),
    (dict(dropout=[0.1]), ValueError, "`dropout` must be a number in .* sequence of 2"),
    (dict(dropout="0.1"), ValueError, "`dropout`"),
    (dict(dropout=True), ValueError, "`dropout`"),
    (dict(secagg_graph="ring"), ValueError, "`secagg_graph` must be one of"),
    (dict(secure_aggregation=1), TypeError, "`secure_aggregation` must be True or False"),
    (dict(dp={"noise_multiplier": 1.0}), TypeError, "`dp` must be a .*DPConfig"),
    (dict(secure_aggregation=True, fraction=0.1), ValueError,
     "`secure_aggregation` needs at least 2 clients per round"),
])
def test_bad_privacy_arguments_name_the_parameter(kwargs, error, match):
    with pytest.raises(error, match=match):
        run_fedavg(num_clients=10, rounds=2, **kwargs)


def test_plain_runs_record_nothing_private():
    history = run_fedavg(num_clients=5, rounds=2)
    assert history.epsilon == [] and history.final_epsilon is None and history.secagg == []
    assert history.secagg_seconds == []
    assert [d.tolist() for d in history.dropped] == [[], []]
    assert "dropped" not in history.rows()[0] and "epsilon" not in history.rows()[0]
    assert "epsilon" not in repr(history)
