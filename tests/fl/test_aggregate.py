"""fedavg(): a pure weighted mean, checked against numpy and closed forms; errors name clients."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from course_lib.fl.aggregate import fedavg
from course_lib.fl.models import make_mlp


def _random_states(num_clients, seed):
    rng = np.random.default_rng(seed)
    shapes = {"a.weight": (3, 4), "a.bias": (3,), "b": ()}
    return [{k: torch.from_numpy(rng.normal(size=s).astype(np.float32)) for k, s in shapes.items()}
            for _ in range(num_clients)]


def _numpy_oracle(states, weights):
    """Independent oracle: the formula w = sum_k (n_k / n) w_k written in numpy float64."""
    w = np.asarray(weights, dtype=np.float64)
    return {k: sum(wk * s[k].double().numpy() for wk, s in zip(w, states)) / w.sum()
            for k in states[0]}


@settings(max_examples=40, deadline=None)
@given(num_clients=st.integers(1, 8), seed=st.integers(0, 2**31),
       weights=st.lists(st.integers(0, 500), min_size=8, max_size=8).filter(lambda w: sum(w) > 0))
def test_matches_numpy_oracle(num_clients, seed, weights):
    weights = weights[:num_clients]
    if sum(weights) == 0:
        weights[0] = 1
    states = _random_states(num_clients, seed)
    got = fedavg(states, weights)
    want = _numpy_oracle(states, weights)
    assert list(got) == list(states[0])
    for k in want:
        assert got[k].dtype == torch.float32
        np.testing.assert_allclose(got[k].numpy(), want[k], rtol=1e-6, atol=1e-6)


def test_closed_forms():
    states = _random_states(4, seed=0)
    one = fedavg(states[:1], [5])
    assert all(torch.equal(one[k], states[0][k]) for k in one)  # one client: itself
    same = fedavg([states[0]] * 3, [1, 2, 7])
    assert all(torch.allclose(same[k], states[0][k]) for k in same)  # equal models: unchanged
    scaled = fedavg(states, [1, 2, 3, 4])
    scaled10 = fedavg(states, [10, 20, 30, 40])
    assert all(torch.allclose(scaled[k], scaled10[k]) for k in scaled)  # only ratios matter
    zero_weight = fedavg([states[0], states[1]], [1, 0])
    assert all(torch.equal(zero_weight[k], states[0][k]) for k in zero_weight)
    # The source text's bug: averaging a model with itself must not double it.
    assert torch.allclose(fedavg([states[0], states[0]], [1, 1])["b"], states[0]["b"])


def test_pure_inputs_unchanged_and_new_tensors():
    states = _random_states(3, seed=1)
    copies = [{k: v.clone() for k, v in s.items()} for s in states]
    out = fedavg(states, [1, 1, 1])
    for s, c in zip(states, copies):
        assert all(torch.equal(s[k], c[k]) for k in s)
    out["a.weight"] += 1
    assert torch.equal(states[0]["a.weight"], copies[0]["a.weight"])


def test_real_model_states_and_integer_buffers():
    states = [make_mlp(seed=s).state_dict() for s in range(3)]
    avg = fedavg(states, [100, 50, 50])
    want = 0.5 * states[0]["fc2.bias"] + 0.25 * (states[1]["fc2.bias"] + states[2]["fc2.bias"])
    torch.testing.assert_close(avg["fc2.bias"], want)
    counters = [{"num_batches_tracked": torch.tensor(n)} for n in (10, 20, 31)]
    out = fedavg(counters, [1, 1, 2])
    assert out["num_batches_tracked"].dtype == torch.int64
    assert out["num_batches_tracked"].item() == 23  # (10 + 20 + 62) / 4 = 23
    flags = [{"f": torch.tensor([True, False])}, {"f": torch.tensor([False, False])}]
    assert fedavg(flags, [3, 1])["f"].tolist() == [True, False]  # weighted majority


def test_mismatches_name_the_client():
    states = _random_states(3, seed=2)
    bad_key = [states[0], states[1], {**states[2], "extra": torch.zeros(1)}]
    with pytest.raises(ValueError, match=r"client 2: keys differ.*unexpected \['extra'\]"):
        fedavg(bad_key, [1, 1, 1])
    missing = dict(states[1])
    del missing["b"]
    with pytest.raises(ValueError, match=r"client 1: keys differ.*missing \['b'\]"):
        fedavg([states[0], missing], [1, 1])
    bad_shape = [states[0], {**states[1], "a.bias": torch.zeros(4)}]
    with pytest.raises(ValueError, match=r"client 1: `a.bias` has shape \(4,\)"):
        fedavg(bad_shape, [1, 1])
    bad_dtype = [states[0], states[1], {**states[2], "b": states[2]["b"].double()}]
    with pytest.raises(ValueError, match="client 2: `b` has dtype torch.float64"):
        fedavg(bad_dtype, [1, 1, 1])


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_values_name_the_client(value):
    states = _random_states(3, seed=3)
    states[1]["a.weight"][2, 1] = value
    with pytest.raises(ValueError, match="client 1: `a.weight` contains NaN or infinite"):
        fedavg(states, [1, 1, 1])


def test_bad_weights():
    states = _random_states(3, seed=4)
    with pytest.raises(ValueError, match="client 2: weight must be finite and >= 0, got -1"):
        fedavg(states, [1, 1, -1])
    with pytest.raises(ValueError, match="client 0: weight must be finite"):
        fedavg(states, [float("nan"), 1, 1])
    with pytest.raises(ValueError, match="sum to a positive number"):
        fedavg(states, [0, 0, 0])
    with pytest.raises(ValueError, match="one entry per state"):
        fedavg(states, [1, 1])
    with pytest.raises(ValueError, match="at least one"):
        fedavg([], [])
    with pytest.raises(TypeError, match="client 1: weight must be a number"):
        fedavg(states, [1, "2", 1])
    with pytest.raises(TypeError, match="list of state_dicts"):
        fedavg(states[0], [1])
