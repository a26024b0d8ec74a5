"""Partitions: disjoint, complete, seeded, and as skewed as their parameters promise."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from course_lib.fl.partition import dirichlet, iid, label_counts, shards


def _check_disjoint_cover(parts, n):
    joined = np.concatenate(parts)
    assert joined.dtype == np.int64
    assert np.array_equal(np.sort(joined), np.arange(n))  # every sample exactly once
    assert all(np.array_equal(p, np.sort(p)) for p in parts)


def test_iid(digits):
    y = digits.y_train
    parts = iid(y, num_clients=10, seed=0)
    _check_disjoint_cover(parts, 1347)
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1
    counts = label_counts(y, parts)
    assert counts.shape == (10, 10) and counts.min() >= 5  # every client sees every digit
    assert all(np.array_equal(a, b) for a, b in zip(parts, iid(y, num_clients=10, seed=0)))
    assert not np.array_equal(parts[0], iid(y, num_clients=10, seed=1)[0])
    many = iid(y, num_clients=2000, seed=0)
    assert sum(len(p) == 0 for p in many) == 2000 - 1347  # more clients than samples


def test_dirichlet_skew_follows_alpha(digits):
    y = digits.y_train.numpy()
    classes_held = {}
    for alpha in (0.05, 1.0, 1000.0):
        parts = dirichlet(y, num_clients=10, alpha=alpha, seed=0)
        _check_disjoint_cover(parts, 1347)
        classes_held[alpha] = (label_counts(y, parts) > 0).sum(axis=1).mean()
    assert classes_held[0.05] < 4 < classes_held[1.0] <= classes_held[1000.0] == 10
    near_iid = label_counts(y, dirichlet(y, num_clients=10, alpha=1000.0, seed=0))
    assert np.abs(near_iid - near_iid.mean(axis=0)).max() < 10


def test_dirichlet_min_size_and_errors(digits):
    y = digits.y_train
    loose = dirichlet(y, num_clients=100, alpha=0.1, seed=0)
    assert min(len(p) for p in loose) == 0  # small alpha, many clients: some get nothing
    strict = dirichlet(y, num_clients=20, alpha=0.5, min_size=10, seed=0)
    assert min(len(p) for p in strict) >= 10
    with pytest.raises(ValueError, match="min_size"):
        dirichlet(y, num_clients=100, alpha=0.5, min_size=20)  # 2,000 > 1,347 samples
    with pytest.raises(ValueError, match="no Dirichlet split"):
        dirichlet(y, num_clients=100, alpha=0.01, min_size=5, max_tries=3)
    for alpha in (0, -1.0, float("inf"), float("nan"), None):
        with pytest.raises(ValueError, match="alpha"):
            dirichlet(y, num_clients=5, alpha=alpha)


def test_shards_is_pathological(digits):
    y = digits.y_train
    parts = shards(y, num_clients=10, shards_per_client=2, seed=0)
    _check_disjoint_cover(parts, 1347)
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 2
    held = (label_counts(y, parts) > 0).sum(axis=1)
    assert held.max() <= 4 and held.mean() < 3.5  # two sorted shards span few digits
    with pytest.raises(ValueError, match="shards_per_client"):
        shards(y, num_clients=1000, shards_per_client=2)


def test_label_counts_and_bad_arguments():
    labels = torch.tensor([0, 1, 1, 2, 2, 2])
    counts = label_counts(labels, [np.array([0, 1]), np.array([], dtype=np.int64),
                                   np.array([2, 3, 4, 5])])
    assert counts.tolist() == [[1, 1, 0], [0, 0, 0], [0, 1, 3]]
    assert label_counts(labels, [np.arange(6)], num_classes=5).tolist() == [[1, 2, 3, 0, 0]]
    with pytest.raises(ValueError, match="num_clients"):
        iid(labels, num_clients=0)
    with pytest.raises(ValueError, match="seed"):
        iid(labels, num_clients=2, seed=-1)
    with pytest.raises(ValueError, match="labels"):
        iid(np.array([0.5, 1.0]), num_clients=2)
