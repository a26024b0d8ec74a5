"""Local training and evaluation: deterministic, non-mutating, and checked against a plain loop."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from course_lib.fl.client import evaluate, train_centralised, train_local
from course_lib.fl.models import make_mlp
from course_lib.fl.seeds import sample_orders


def _snapshot(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_train_local_is_deterministic_and_does_not_mutate(digits):
    model = make_mlp(seed=0)
    before = _snapshot(model)
    X, y = digits.X_train[:135], digits.y_train[:135]
    s1, n1 = train_local(model, X, y, epochs=2, seed=7)
    s2, n2 = train_local(model, X, y, epochs=2, seed=7)
    s3, _ = train_local(model, X, y, epochs=2, seed=8)
    assert n1 == n2 == 135
    assert all(torch.equal(model.state_dict()[k], before[k]) for k in before)
    assert all(torch.equal(s1[k], s2[k]) for k in s1)
    assert not torch.equal(s1["fc1.weight"], s3["fc1.weight"])
    assert s1["fc1.weight"].data_ptr() != model.fc1.weight.data_ptr()


def test_train_local_matches_a_hand_written_sgd_loop(digits):
    """Oracle: the textbook loop, with explicit w <- w - lr * grad and no torch.optim."""
    model = make_mlp(seed=1)
    X, y = digits.X_train[:70], digits.y_train[:70]
    state, _ = train_local(model, X, y, epochs=2, batch_size=16, lr=0.3, seed=5)
    params = {k: v.clone().requires_grad_(True) for k, v in model.state_dict().items()}
    for epoch in range(2):
        order = sample_orders([5], [70], epoch)[0]
        assert sorted(order.tolist()) == list(range(70))
        for start in range(0, 70, 16):
            idx = torch.from_numpy(order[start:start + 16])
            h = torch.relu(X[idx] @ params["fc1.weight"].T + params["fc1.bias"])
            loss = F.cross_entropy(h @ params["fc2.weight"].T + params["fc2.bias"], y[idx])
            grads = torch.autograd.grad(loss, list(params.values()))
            with torch.no_grad():
                for p, g in zip(params.values(), grads):
                    p -= 0.3 * g
    for k in state:
        torch.testing.assert_close(state[k], params[k].detach(), rtol=0, atol=1e-6)


def test_train_local_full_batch_and_empty_client(digits):
    model = make_mlp(seed=0)
    X, y = digits.X_train[:40], digits.y_train[:40]
    state, n = train_local(model, X, y, batch_size=None, lr=0.5)
    # One full-batch step equals w - lr * grad of the mean loss.
    loss = F.cross_entropy(model(X), y)
    grads = torch.autograd.grad(loss, list(model.parameters()))
    for (name, p), g in zip(model.named_parameters(), grads):
        torch.testing.assert_close(state[name], p.detach() - 0.5 * g, atol=1e-6, rtol=0)
    empty_state, zero = train_local(model, X[:0], y[:0])
    assert zero == 0
    assert all(torch.equal(empty_state[k], model.state_dict()[k]) for k in empty_state)


def test_evaluate_and_centralised_baseline(digits):
    model = make_mlp(seed=0)
    model.train()
    acc0, loss0 = evaluate(model, digits.X_test, digits.y_test)
    assert model.training  # mode restored
    assert 0.0 <= acc0 < 0.3 and loss0 > 2.0
    trained = train_centralised(model, digits.X_train, digits.y_train, epochs=10, seed=0)
    acc, loss = evaluate(trained, digits.X_test, digits.y_test)
    assert acc >= 0.95 and loss < 0.3
    logits = trained(digits.X_test)
    assert acc == pytest.approx((logits.argmax(1) == digits.y_test).float().mean().item())
    assert loss == pytest.approx(F.cross_entropy(logits, digits.y_test).item(), rel=1e-6)
    assert evaluate(model, digits.X_test, digits.y_test) == (acc0, loss0)  # input unchanged


@pytest.mark.parametrize("kwargs, name", [
    ({"epochs": 0}, "epochs"), ({"batch_size": 0}, "batch_size"), ({"lr": 0}, "lr"),
    ({"lr": float("nan")}, "lr"), ({"seed": -1}, "seed"),
])
def test_train_local_bad_arguments(digits, kwargs, name):
    with pytest.raises(ValueError, match=name):
        train_local(make_mlp(), digits.X_train[:10], digits.y_train[:10], **kwargs)


def test_bad_data():
    with pytest.raises(ValueError, match="same number of rows"):
        train_local(make_mlp(), torch.zeros(3, 64), torch.zeros(2, dtype=torch.int64))
    with pytest.raises(ValueError, match="at least one sample"):
        evaluate(make_mlp(), torch.zeros(0, 64), torch.zeros(0, dtype=torch.int64))
