"""Model extraction through a prediction API (course_lib.attacks.extraction)."""

from __future__ import annotations

import numpy as np
import pytest

from course_lib.attacks.extraction import (
    PredictionAPI,
    QueryBudgetExceeded,
    attacker_split,
    extraction_curve,
    make_queries,
    solve_softmax_regression,
    steal,
)
from course_lib.crypto.linear import train_linear
from course_lib.errors import CourseLibError
from course_lib.fl.client import train_centralised
from course_lib.fl.models import make_mlp


@pytest.fixture(scope="module")
def victim(digits):
    return train_centralised(make_mlp(seed=0), digits.X_train, digits.y_train, epochs=10)


@pytest.fixture(scope="module")
def linear_victim(digits):
    return train_linear(digits.X_train, digits.y_train)


def test_api_answers_and_counts(victim, digits):
    X = digits.X_test[:7].numpy()
    probs = PredictionAPI(victim)(X)
    assert probs.shape == (7, 10) and np.allclose(probs.sum(axis=1), 1.0)
    rounded = PredictionAPI(victim, output="rounded", decimals=1)(X)
    assert np.array_equal(rounded, np.round(probs, 1))
    api = PredictionAPI(victim, output="label")
    assert np.array_equal(api(X), probs.argmax(axis=1)) and api.queries == 7


def test_budget_refuses_past_it(victim, digits):
    api = PredictionAPI(victim, budget=10)
    api(digits.X_test[:6].numpy())
    with pytest.raises(QueryBudgetExceeded, match="budget of 10"):
        api(digits.X_test[:5].numpy())
    assert api.queries == 6 and issubclass(QueryBudgetExceeded, CourseLibError)


def test_fidelity_rises_with_queries_and_falls_with_each_defence(victim, digits):
    curve = extraction_curve(victim, digits, query_counts=(25, 400), steps=150)
    fidelity = {(o, q): f for o, q, f, _ in curve.rows}
    assert fidelity["probabilities", 400] > fidelity["probabilities", 25] + 0.1
    assert fidelity["probabilities", 400] > 0.9
    assert fidelity["probabilities", 400] > fidelity["rounded", 400] > fidelity["label", 400]
    assert 0.9 < curve.victim_accuracy <= 1.0


def test_budget_caps_what_the_attacker_reaches(victim, digits):
    curve = extraction_curve(victim, digits, query_counts=(25, 100, 400), outputs=(),
                             budget=100, steps=150)
    queries, fidelity, _ = curve.series("budget")
    assert queries == [25, 100, 400] and fidelity[2] == fidelity[1]  # 400 refused: kept 100's


def test_equation_solving_recovers_softmax_regression_exactly(linear_victim, digits):
    api = PredictionAPI(linear_victim)
    stolen = solve_softmax_regression(api, seed=1)
    assert api.queries == digits.num_features + 1
    X = digits.X_test.numpy()
    assert np.array_equal(stolen.predict(X), linear_victim.predict(X))
    shifted = linear_victim.weight - linear_victim.weight[0]  # softmax's class-shift freedom
    assert np.allclose(stolen.weight, shifted, atol=1e-8)


def test_rounding_breaks_equation_solving_and_labels_refuse(linear_victim, digits):
    X = digits.X_test.numpy()
    stolen = solve_softmax_regression(PredictionAPI(linear_victim, output="rounded", decimals=2))
    assert np.mean(stolen.predict(X) == linear_victim.predict(X)) < 0.9
    with pytest.raises(ValueError, match="`api` must answer with probabilities"):
        solve_softmax_regression(PredictionAPI(linear_victim, output="label"))


def test_stolen_copy_is_reproducible(victim, digits):
    pool, held_out = attacker_split(digits)
    a = steal(PredictionAPI(victim), pool, num_queries=50, steps=20, seed=3)
    b = steal(PredictionAPI(victim), pool, num_queries=50, steps=20, seed=3)
    assert np.array_equal(a.predict(held_out.X_test), b.predict(held_out.X_test))
    assert "queries=50" in repr(a)


@pytest.mark.parametrize("call, message", [
    (lambda v: PredictionAPI(v, output="logits"), "`output` must be one of"),
    (lambda v: PredictionAPI(v, budget=0), r"`budget` must be an int in \[1, inf\]"),
    (lambda v: PredictionAPI("model"), "`model` must be an nn.Module or a LinearModel"),
    (lambda v: PredictionAPI(v)(np.zeros((2, 3))), r"`X` must have shape \(batch, 64\)"),
    (lambda v: make_queries(np.zeros((0, 64)), 5), r"`pool` must have shape"),
    (lambda v: make_queries(np.zeros((3, 64)), 0), r"`num_queries` must be an int"),
])
def test_bad_arguments_name_the_parameter(victim, call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call(victim)
