"""fl.round: one round for every caller. The plan is made once and in order, the aggregate does
not depend on the order of the trainer's rows, and fedavg_stacked is fedavg on updates."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from course_lib.dp import DPConfig
from course_lib.fl.aggregate import fedavg, fedavg_stacked
from course_lib.fl.config import FedAvgConfig
from course_lib.fl.data import load_digits
from course_lib.fl.models import make_mlp
from course_lib.fl.round import Server, Updates, apply, train_sequential
from course_lib.fl.seeds import derive_seeds


def _updates(clients: int, seed: int = 0) -> Updates:
    rng = np.random.default_rng(seed)
    tensors = {"w": torch.from_numpy(rng.normal(size=(clients, 3, 2)).astype(np.float32)),
               "b": torch.from_numpy(rng.normal(size=(clients, 3)).astype(np.float32))}
    return Updates(tensors, rng.integers(0, 50, size=clients), np.arange(clients))


def test_fedavg_refuses_a_string_naming_states():
    with pytest.raises(TypeError, match="`states` must be a list of state_dicts, got str"):
        fedavg("abc", [1])
    with pytest.raises(TypeError, match="`states`"):
        fedavg(b"abc", [1])


def test_fedavg_stacked_is_fedavg_on_the_rows():
    u = _updates(6)
    rows = [{k: t[i] for k, t in u.tensors.items()} for i in range(6)]
    expected = fedavg(rows, u.sizes.tolist())
    got = fedavg_stacked(u.tensors, u.sizes)
    assert all(torch.allclose(got[k], expected[k], atol=1e-6) for k in expected)
    counters = {"n": torch.tensor([[1], [2], [4]])}  # integers: float64 mean, rounded
    assert fedavg_stacked(counters, [1, 1, 2])["n"].tolist() == [3]
    for bad in ([0, 0, 0, 0, 0, 0], [1, -1, 1, 1, 1, 1], [1, np.nan, 1, 1, 1, 1]):
        with pytest.raises(ValueError, match="`weights` must be finite"):
            fedavg_stacked(u.tensors, bad)
    with pytest.raises(ValueError, match="has 6 rows, `weights` 2"):
        fedavg_stacked(u.tensors, [1, 1])


def test_plans_are_made_once_each_in_order_with_the_one_seed_derivation():
    config = FedAvgConfig(num_clients=10, rounds=3, fraction=0.5, dropout=[0.0, 0.4, 0.2],
                          seed=4)
    server, again = Server(config), Server(config)
    plans = [server.plan() for _ in range(3)]
    assert [p.number for p in plans] == [1, 2, 3]
    for plan, twin in zip(plans, (again.plan() for _ in range(3))):  # a pure function of seed
        assert np.array_equal(plan.clients, twin.clients) and plan.dropouts == twin.dropouts
        assert plan.seeds.tolist() == derive_seeds(4, plan.number, plan.clients).tolist()
        assert len(plan.clients) == 5 and np.all(np.diff(plan.clients) > 0)
    assert [len(p.dropped) for p in plans] == [0, 2, 1]
    assert set(plans[1].dropped) <= set(plans[1].clients)
    assert len(plans[1].arrived) == 3 and "2 dropping" in repr(plans[1])
    with pytest.raises(ValueError, match="the run has 3 rounds; round 4 cannot be planned"):
        server.plan()
    with pytest.raises(TypeError, match="`config` must be a FedAvgConfig, got dict"):
        Server({"num_clients": 3})


@pytest.mark.parametrize("options", [
    dict(),
    dict(dropout=0.3),
    dict(dp=DPConfig(0.0, 0.5), dropout=0.3),
    dict(secure_aggregation=True, dropout=0.3),
    dict(secure_aggregation=True, dp=DPConfig(0.0, 0.5)),
])
def test_the_aggregate_does_not_depend_on_the_order_of_the_rows(options):
    config = FedAvgConfig(num_clients=8, rounds=1, seed=1, **options)
    u = _updates(8, seed=2)
    plan = Server(config).plan()
    in_order, _ = Server(config).aggregate(u, plan)
    perm = np.random.default_rng(0).permutation(8)  # the batched engine sorts rows by size
    shuffled = Updates({k: t[perm] for k, t in u.tensors.items()}, u.sizes[perm], perm)
    got, _ = Server(config).aggregate(shuffled, plan)
    assert all(torch.allclose(got[k], in_order[k], atol=1e-6) for k in in_order)
    # the oracle: the arrived clients' rows, FedAvg (or clipped, over m under DP) in the clear
    arrived = list(plan.arrived)
    rows = [{k: t[i] for k, t in u.tensors.items()} for i in arrived]
    if "dp" in options:  # z = 0: clipped sum / m exactly
        from course_lib.dp import clip_update
        clipped = [clip_update(r, 0.5) for r in rows]
        expected = {k: sum(c[k] for c in clipped) / 8 for k in u.tensors}
    else:
        expected = fedavg(rows, u.sizes[arrived].tolist())
    assert all(torch.allclose(got[k], expected[k], atol=1e-6) for k in expected)


def test_a_round_without_arriving_samples_keeps_the_model():
    config = FedAvgConfig(num_clients=4, rounds=1)
    u = _updates(4)
    u.sizes[:] = 0
    mean, report = Server(config).aggregate(u, Server(config).plan())
    assert mean is None and report is None


def test_run_round_is_plan_train_aggregate_apply():
    data = load_digits(seed=0)
    model = make_mlp(seed=0)
    config = FedAvgConfig(num_clients=4, rounds=1, seed=2)
    parts = config.split(data.y_train)
    seen = []

    def train(plan):
        seen.append(plan)
        return train_sequential(model, data.X_train, data.y_train,
                                [parts[k] for k in plan.clients], plan.seeds, epochs=1,
                                batch_size=32, lr=0.3)

    server = Server(config)
    result = server.run_round(model.state_dict(), train)
    assert result.plan is seen[0] and result.report is None and result.epsilon is None
    assert result.bytes_transferred == 2 * 4 * 2410 * 4  # everyone down and up, float32
    # the oracle: FedAvg of the four clients' weights, trained as train_local would
    from course_lib.fl.client import train_local
    trained = [train_local(model, data.X_train[torch.from_numpy(parts[k])],
                           data.y_train[torch.from_numpy(parts[k])],
                           seed=int(derive_seeds(2, 1, [k])[0])) for k in range(4)]
    expected = fedavg([s for s, _ in trained], [n for _, n in trained])
    assert all(torch.allclose(result.state[k], expected[k], atol=1e-6) for k in expected)
    assert apply({"w": torch.ones(2)}, {"w": torch.tensor([1.0, -1.0])})["w"].tolist() == [2, 0]
    assert "1/1 rounds planned" in repr(server)
