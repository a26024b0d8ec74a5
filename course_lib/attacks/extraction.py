"""Model extraction: stealing a model through its prediction API (Tramer et al. 2016).

A model served behind an API answers queries, and every answer leaks a little of the function
it computes. An attacker who may query but never sees a parameter can still build a copy:

- **learning attack** (any model): send ``n`` inputs of the attacker's choosing, record the
  answers, and train a *surrogate* on them (:func:`steal`). With full probabilities the
  surrogate learns from soft targets; with labels only, from hard ones.
- **equation-solving attack** (softmax regression): the log-ratio of two class probabilities
  is linear in the input, ``log p_j(x) - log p_0(x) = (w_j - w_0) . x + (b_j - b_0)``, so
  ``features + 1`` queries with exact probabilities determine an equivalent model exactly
  (:func:`solve_softmax_regression`).

How good is the copy? **Fidelity** is the fraction of held-out inputs on which surrogate and
victim agree; **accuracy** is the surrogate's own accuracy on the true labels. The defences
measured here are the ones an API can switch on (:class:`PredictionAPI`): answering with the
**label only**, **rounded probabilities**, and a **query budget**. Encrypting the parameters at
rest or in transit changes none of this: the API must decrypt them to answer.

Examples
--------
>>> from course_lib.attacks.extraction import PredictionAPI, attacker_split, steal
>>> from course_lib.fl.client import train_centralised
>>> from course_lib.fl.data import load_digits
>>> from course_lib.fl.models import make_mlp
>>> data = load_digits(seed=0)
>>> victim = train_centralised(make_mlp(seed=0), data.X_train, data.y_train, epochs=10)
>>> pool, held_out = attacker_split(data)
>>> api = PredictionAPI(victim)
>>> result = steal(api, pool, num_queries=400, seed=0)
>>> result.fidelity(victim, held_out) > 0.9, api.queries
(True, 400)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from course_lib._threads import torch_threads
from course_lib._validation import require_choice, require_int
from course_lib.crypto.linear import LinearModel
from course_lib.errors import CourseLibError
from course_lib.fl.data import Dataset
from course_lib.fl.models import make_mlp

__all__ = ["OUTPUTS", "QueryBudgetExceeded", "PredictionAPI", "attacker_split", "make_queries",
           "StolenModel", "steal", "solve_softmax_regression", "ExtractionCurve",
           "extraction_curve"]

OUTPUTS = ("probabilities", "rounded", "label")
JITTER = 0.3  # std of the noise added to the attacker's own unlabelled images, per feature


class QueryBudgetExceeded(CourseLibError):
    """The API refused a query: the caller's budget is spent."""


@dataclass(eq=False)
class PredictionAPI:
    """A deployed classifier as an attacker meets it: inputs in, answers out, nothing else.

    Parameters
    ----------
    model : nn.Module or LinearModel
        The victim. An ``nn.Module`` returns logits for a float32 batch; a
        :class:`~course_lib.crypto.linear.LinearModel` computes them in float64.
    output : {"probabilities", "rounded", "label"}
        What each answer holds: the softmax probabilities, the same rounded to ``decimals``
        decimal places (a common "defence"), or only the predicted class.
    decimals : int
        Decimal places of ``output="rounded"``.
    budget : int or None
        Most queries the API answers in total; past it, :class:`QueryBudgetExceeded`.

    Attributes
    ----------
    queries : int
        Inputs answered so far (each row of a batch counts once).
    """

    model: Any
    output: str = "probabilities"
    decimals: int = 2
    budget: int | None = None
    queries: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        require_choice("output", self.output, OUTPUTS)
        require_int("decimals", self.decimals, minimum=0, maximum=8)
        if self.budget is not None:
            require_int("budget", self.budget, minimum=1)
        if not isinstance(self.model, (nn.Module, LinearModel)):
            raise TypeError(f"`model` must be an nn.Module or a LinearModel, "
                            f"got {type(self.model).__name__}")

    @property
    def num_classes(self) -> int:
        """Classes the victim answers with."""
        return int(self._logits(np.zeros((1, self._num_features())))[0].shape[0])

    def _num_features(self) -> int:
        if isinstance(self.model, LinearModel):
            return int(self.model.weight.shape[1])
        first = next(m for m in self.model.modules() if isinstance(m, nn.Linear))
        return int(first.in_features)

    def _logits(self, X: np.ndarray) -> np.ndarray:
        if isinstance(self.model, LinearModel):
            return self.model.logits(X)  # (batch, classes), float64
        with torch.no_grad(), torch_threads(1):
            return self.model(torch.as_tensor(X, dtype=torch.float32)).double().numpy()

    def __call__(self, X: Any) -> np.ndarray:
        """Answer a batch ``X`` of shape ``(batch, features)``.

        Returns probabilities ``(batch, classes)`` (float64), or labels ``(batch,)`` (int64).
        """
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self._num_features():
            raise ValueError(f"`X` must have shape (batch, {self._num_features()}), "
                             f"got {X.shape}")
        if self.budget is not None and self.queries + len(X) > self.budget:
            raise QueryBudgetExceeded(f"query budget of {self.budget} spent ({self.queries} "
                                      f"answered, {len(X)} more asked)")
        self.queries += len(X)
        logits = self._logits(X)
        if self.output == "label":
            return logits.argmax(axis=1)
        probs = np.exp(logits - logits.max(axis=1, keepdims=True))  # stable softmax
        probs /= probs.sum(axis=1, keepdims=True)
        return probs if self.output == "probabilities" else probs.round(self.decimals)


def attacker_split(data: Dataset, *, pool_size: int = 150) -> tuple[torch.Tensor, Dataset]:
    """Split the test images into the attacker's unlabelled pool and a held-out set.

    The attacker never sees the victim's training images: its pool is the first
    ``pool_size`` test images (labels dropped), and fidelity and accuracy are measured on the
    remaining ones, which neither side trained on.

    Returns
    -------
    pool : torch.Tensor
        ``(pool_size, features)``.
    held_out : Dataset
        The other test images as a Dataset whose *test* split is what to evaluate on.
    """
    n = len(data.y_test)
    require_int("pool_size", pool_size, minimum=1, maximum=n - 1)
    held_out = Dataset(X_train=data.X_train[:0], y_train=data.y_train[:0],
                       X_test=data.X_test[pool_size:], y_test=data.y_test[pool_size:],
                       mean=data.mean, std=data.std, name=f"{data.name} (held out)")
    return data.X_test[:pool_size], held_out


def make_queries(pool: Any, num_queries: int, *, seed: int = 0) -> np.ndarray:
    """``num_queries`` inputs drawn from the attacker's pool with Gaussian jitter.

    Each query is a pool image chosen at random plus noise of std :data:`JITTER` per
    (standardised) pixel, so that more queries keep adding information even when the pool is
    small. An int ``pool`` (the number of features) draws uniform noise in ``[-2, 2]`` per
    pixel instead: an attacker with no data at all.
    """
    require_int("num_queries", num_queries, minimum=1)
    rng = np.random.default_rng(seed)
    if isinstance(pool, int) and not isinstance(pool, bool):  # no data: just the input size
        return rng.uniform(-2.0, 2.0, size=(num_queries, require_int("pool", pool, minimum=1)))
    pool = np.asarray(pool, dtype=np.float64)
    if pool.ndim != 2 or len(pool) == 0:
        raise ValueError(f"`pool` must have shape (images, features), got {pool.shape}")
    picks = rng.integers(0, len(pool), size=num_queries)
    return pool[picks] + JITTER * rng.standard_normal((num_queries, pool.shape[1]))


@dataclass(eq=False, repr=False)
class StolenModel:
    """A surrogate trained on a victim's answers, with how many queries it took."""

    model: nn.Module
    queries: int
    output: str

    def predict(self, X: Any) -> np.ndarray:
        with torch.no_grad(), torch_threads(1):
            return self.model(torch.as_tensor(np.asarray(X), dtype=torch.float32)) \
                .argmax(dim=1).numpy()

    def fidelity(self, victim: Any, data: Dataset) -> float:
        """Fraction of ``data``'s test images on which the copy and the victim agree."""
        truth = PredictionAPI(victim, output="label")(data.X_test.numpy())
        return float(np.mean(self.predict(data.X_test) == truth))

    def accuracy(self, data: Dataset) -> float:
        """The copy's own accuracy on ``data``'s test labels."""
        return float(np.mean(self.predict(data.X_test) == data.y_test.numpy()))

    def __repr__(self) -> str:
        return f"StolenModel({self.model!r}, queries={self.queries}, output={self.output!r})"


def steal(api: PredictionAPI, pool: Any, *, num_queries: int, hidden: int | Sequence[int] = 32,
          steps: int = 300, lr: float = 0.01, seed: int = 0) -> StolenModel:
    """The learning attack: query ``api`` ``num_queries`` times, train an MLP on the answers.

    Soft answers (probabilities, rounded or not) are fitted with the cross-entropy against
    the answered distribution (distillation); labels with the ordinary cross-entropy. Training
    is full-batch Adam for ``steps`` steps from ``make_mlp(seed=seed)``.

    Raises
    ------
    QueryBudgetExceeded
        When ``num_queries`` exceeds what the API's budget has left.
    """
    require_int("steps", steps, minimum=1)
    X = make_queries(pool, num_queries, seed=seed)  # (queries, features)
    answers = api(X)
    model = make_mlp(in_features=X.shape[1], hidden=hidden, num_classes=api.num_classes,
                     seed=seed)
    inputs = torch.as_tensor(X, dtype=torch.float32)
    if api.output == "label":
        def loss_fn(logits: torch.Tensor) -> torch.Tensor:
            return F.cross_entropy(logits, targets)
        targets = torch.as_tensor(answers, dtype=torch.int64)  # (queries,)
    else:
        soft = np.maximum(answers, 0.0)
        soft = soft / np.maximum(soft.sum(axis=1, keepdims=True), 1e-12)  # rounding: renormalise
        targets = torch.as_tensor(soft, dtype=torch.float32)  # (queries, classes)

        def loss_fn(logits: torch.Tensor) -> torch.Tensor:
            return -(targets * F.log_softmax(logits, dim=1)).sum(dim=1).mean()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    with torch_threads(1):
        for _ in range(steps):
            optimizer.zero_grad()
            loss_fn(model(inputs)).backward()
            optimizer.step()
    return StolenModel(model=model.eval(), queries=num_queries, output=api.output)


def solve_softmax_regression(api: PredictionAPI, *, seed: int = 0) -> LinearModel:
    """The equation-solving attack on softmax regression: ``features + 1`` queries.

    Queries ``d + 1`` random points, takes ``log p_j - log p_0`` of each answer and solves the
    linear system for ``(w_j - w_0, b_j - b_0)``. Softmax does not change when every class's
    logit shifts by the same amount, so the model with ``w_0 = 0`` predicts exactly as the
    victim. Needs probabilities: rounded answers make some ``log p`` infinite or coarse and the
    solution wrong, labels give nothing to solve.
    """
    if api.output == "label":
        raise ValueError("`api` must answer with probabilities: label-only answers give no "
                         "equations to solve")
    d = api._num_features()
    X = np.random.default_rng(seed).standard_normal((d + 1, d))  # (d + 1, features)
    with np.errstate(divide="ignore"):
        log_p = np.maximum(np.log(api(X)), -50.0)  # (d + 1, classes); a rounded 0 gives -50
    ratios = log_p - log_p[:, :1]  # log p_j - log p_0 for every query
    design = np.hstack([X, np.ones((d + 1, 1))])  # (d + 1, d + 1)
    solution, *_ = np.linalg.lstsq(design, ratios, rcond=None)  # (d + 1, classes)
    return LinearModel(weight=solution[:-1].T.copy(), bias=solution[-1].copy())


@dataclass(frozen=True, repr=False)
class ExtractionCurve:
    """Fidelity and accuracy of stolen copies against the number of queries, per answer kind.

    ``rows`` holds ``(output, queries, fidelity, accuracy)``; ``budget`` is the query budget
    under which the ``"budget"`` row was measured (or None). Drawn by
    :func:`course_lib.plots.extraction_curves`.
    """

    rows: tuple[tuple[str, int, float, float], ...]
    victim_accuracy: float
    budget: int | None = None

    def series(self, output: str) -> tuple[list[int], list[float], list[float]]:
        """Queries, fidelities and accuracies of one answer kind, in query order."""
        picked = sorted((r for r in self.rows if r[0] == output), key=lambda r: r[1])
        return [r[1] for r in picked], [r[2] for r in picked], [r[3] for r in picked]

    def __repr__(self) -> str:
        lines = [f"ExtractionCurve(victim accuracy {self.victim_accuracy:.3f})",
                 f"  {'answers':<14}{'queries':>8}{'fidelity':>10}{'accuracy':>10}"]
        lines += [f"  {o:<14}{q:>8}{f:>10.3f}{a:>10.3f}" for o, q, f, a in self.rows]
        return "\n".join(lines)


def extraction_curve(victim: Any, data: Dataset, *,
                     query_counts: Sequence[int] = (25, 50, 100, 200, 400, 800),
                     outputs: Sequence[str] = OUTPUTS, decimals: int = 1,
                     budget: int | None = None, steps: int = 300, seed: int = 0,
                     on_point: Callable[[str, int], None] | None = None) -> ExtractionCurve:
    """Steal ``victim`` with each number of queries and each kind of answer; measure copies.

    With ``budget``, one more series (``"budget"``) answers with probabilities but stops at
    ``budget`` queries: every larger query count is refused, and the attacker keeps the copy
    it could make within the budget.
    """
    for name in outputs:
        require_choice("outputs", name, OUTPUTS)
    counts = sorted({require_int("query_counts", q, minimum=1) for q in query_counts})
    pool, held_out = attacker_split(data)
    truth = PredictionAPI(victim, output="label")(held_out.X_test.numpy())
    victim_accuracy = float(np.mean(truth == held_out.y_test.numpy()))
    rows = []
    series = [(o, o) for o in outputs]  # (name of the series, what the API answers)
    if budget is not None:
        series.append(("budget", "probabilities"))
    for name, output in series:
        best = None
        for q in counts:
            if on_point is not None:
                on_point(name, q)
            api = PredictionAPI(victim, output=output, decimals=decimals,
                                budget=budget if name == "budget" else None)
            try:
                best = steal(api, pool, num_queries=q, steps=steps, seed=seed)
            except QueryBudgetExceeded:
                if best is None:
                    continue  # not even the smallest count fits the budget
            rows.append((name, q, best.fidelity(victim, held_out), best.accuracy(held_out)))
    return ExtractionCurve(rows=tuple(rows), victim_accuracy=victim_accuracy, budget=budget)
