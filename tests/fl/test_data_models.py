"""Data loading, the shared MLP, and the thread context manager."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits as sklearn_digits

from course_lib._threads import torch_threads
from course_lib.fl.data import load_digits
from course_lib.fl.models import MLP, make_mlp, num_parameters, state_nbytes


def test_digits_shapes_dtypes_and_split(digits):
    assert (len(digits.y_train), len(digits.y_test)) == (1347, 450)
    assert digits.X_train.shape == (1347, 64) and digits.X_test.shape == (450, 64)
    assert digits.X_train.dtype == torch.float32 and digits.y_train.dtype == torch.int64
    assert digits.num_features == 64 and digits.num_classes == 10
    assert repr(digits) == "Dataset(name='digits', train=1347, test=450, features=64, classes=10)"


def test_digits_standardised_with_train_statistics_only(digits):
    raw = sklearn_digits().data
    X = digits.X_train.double()
    varying = digits.std != 1.0
    assert torch.allclose(X.mean(0), torch.zeros(64, dtype=torch.float64), atol=1e-6)
    assert torch.allclose(X.std(0, unbiased=False)[varying], torch.ones(int(varying.sum()),
                          dtype=torch.float64), atol=1e-5)
    # Undoing the scaling gives back raw pixel rows, test rows included.
    train_raw = (digits.X_train * digits.std + digits.mean).round().numpy()
    test_raw = (digits.X_test * digits.std + digits.mean).round().numpy()
    raw_rows = {tuple(r) for r in raw}
    assert all(tuple(r) in raw_rows for r in train_raw[:50])
    assert all(tuple(r) in raw_rows for r in test_raw[:50])
    # The test set's own mean is not zero: its statistics were not used.
    assert digits.X_test.double().mean(0).abs().max() > 1e-3


def test_digits_split_is_stratified_and_seeded(digits):
    counts_train = np.bincount(digits.y_train.numpy(), minlength=10)
    counts_test = np.bincount(digits.y_test.numpy(), minlength=10)
    assert np.all(np.abs(counts_test / 450 - counts_train / 1347) < 0.01)
    again = load_digits(seed=0)
    assert torch.equal(again.X_train, digits.X_train)
    other = load_digits(seed=1)
    assert not torch.equal(other.y_train, digits.y_train)
    assert len(load_digits(test_size=0.5, seed=0).y_test) == 899


@pytest.mark.parametrize("test_size", [0, 1, 1.5, -0.1, "0.2", True])
def test_digits_bad_test_size(test_size):
    with pytest.raises(ValueError, match="test_size"):
        load_digits(test_size=test_size)


def test_mlp_structure_and_names():
    model = make_mlp(seed=0)
    assert isinstance(model, MLP)
    assert list(model.state_dict()) == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
    assert num_parameters(model) == 64 * 32 + 32 + 32 * 10 + 10 == 2410
    assert state_nbytes(model) == 2410 * 4
    assert repr(model) == "MLP(64 -> 32 -> 10, relu, 2410 parameters)"
    assert model(torch.zeros(5, 8, 8)).shape == (5, 10)
    assert repr(make_mlp(hidden=(16, 8))) == "MLP(64 -> 16 -> 8 -> 10, relu, 1266 parameters)"


def test_mlp_seeded_without_touching_global_rng():
    before = torch.random.get_rng_state()
    a, b, c = make_mlp(seed=3), make_mlp(seed=3), make_mlp(seed=4)
    assert torch.equal(torch.random.get_rng_state(), before)
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())
    assert not torch.equal(a.fc1.weight, c.fc1.weight)
    bound = 1 / 8  # 1/sqrt(64), PyTorch's default nn.Linear range
    assert a.fc1.weight.abs().max() <= bound and a.fc1.weight.abs().max() > 0.9 * bound


@pytest.mark.parametrize("kwargs", [{"hidden": 0}, {"seed": -1}, {"in_features": 0},
                                    {"hidden": (8, 0)}])
def test_mlp_bad_arguments(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        make_mlp(**kwargs)


def test_torch_threads_restores_even_after_an_error():
    before = torch.get_num_threads()
    target = 1 if before != 1 else 2
    with torch_threads(target):
        assert torch.get_num_threads() == target
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError), torch_threads(target):
        raise RuntimeError("boom")
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="num_threads"):
        with torch_threads(0):
            pass
