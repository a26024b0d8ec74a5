"""fedavg() against Flower's own aggregation function, the reference most FL code is held to.

Flower (flwr) is an optional extra, not installed by default: without it this module is
skipped with the reason below. To run it: ``pip install flwr`` (or the ``flower`` extra).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from course_lib.fl.aggregate import fedavg
from course_lib.fl.client import train_local
from course_lib.fl.models import make_mlp

flower = pytest.importorskip(
    "flwr.server.strategy.aggregate",
    reason="flwr is not installed (optional 'flower' extra): Flower's aggregate() oracle skipped")


def _flower_fedavg(states, weights):
    """Flower's FedAvg: ``aggregate([(ndarrays, num_examples), ...])`` on numpy arrays."""
    keys = list(states[0])
    results = [([s[k].numpy() for k in keys], int(n)) for s, n in zip(states, weights)]
    return dict(zip(keys, flower.aggregate(results)))


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31), num_clients=st.integers(1, 12),
       sizes=st.lists(st.integers(1, 1000), min_size=12, max_size=12))
def test_fedavg_equals_flower_aggregate_on_random_inputs(seed, num_clients, sizes):
    rng = np.random.default_rng(seed)
    shapes = {"fc1.weight": (5, 7), "fc1.bias": (5,), "scale": ()}
    states = [{k: torch.from_numpy(rng.normal(scale=3.0, size=s).astype(np.float32))
               for k, s in shapes.items()} for _ in range(num_clients)]
    weights = sizes[:num_clients]
    ours = fedavg(states, weights)
    theirs = _flower_fedavg(states, weights)
    for key in shapes:
        np.testing.assert_allclose(ours[key].numpy(), theirs[key], rtol=1e-5, atol=1e-6)


def test_fedavg_equals_flower_aggregate_on_trained_clients(digits):
    model = make_mlp(seed=0)
    results = [train_local(model, digits.X_train[i::5], digits.y_train[i::5], seed=i)
               for i in range(5)]
    states, sizes = zip(*results)
    ours = fedavg(list(states), list(sizes))
    theirs = _flower_fedavg(states, sizes)
    for key in ours:
        np.testing.assert_allclose(ours[key].numpy(), theirs[key], rtol=1e-5, atol=1e-7)
