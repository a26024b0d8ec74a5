"""Differential privacy from its definition: neighbours, sensitivity, the Gaussian mechanism.

A randomised algorithm ``M`` is **(epsilon, delta)-differentially private** (Dwork et al.
2006) if for every pair of *neighbouring* datasets ``D, D'`` and every set ``S`` of outputs

    Pr[M(D) in S] <= e^epsilon * Pr[M(D') in S] + delta.

**Neighbours** differ in one record: one is the other with a record *removed* (add/remove,
the relation DP-SGD, DP-FedAvg and the accountant use), or with one record *replaced*.

The **L2 sensitivity** of a query ``f`` is the most one record can move it:
``Delta = max ||f(D) - f(D')||_2`` over neighbours. A sum of records of L2 norm at most ``B``
has ``Delta = B`` (add/remove) or ``2 B`` (replace); a mean with a fixed denominator ``n``
has ``Delta / n``. Clipping each record to norm ``B`` is what makes the bound true.

The **Gaussian mechanism** releases ``f(D) + N(0, sigma^2 I)``. Two ways to choose ``sigma``:

- the classical bound (Dwork & Roth 2014, Theorem A.1), valid only for ``epsilon < 1``:
  ``sigma = sqrt(2 ln(1.25 / delta)) * Delta / epsilon``;
- the analytic Gaussian mechanism (Balle & Wang 2018): the smallest ``sigma`` whose exact
  privacy curve ``delta(epsilon) = Phi(Delta/(2 sigma) - epsilon sigma/Delta)
  - e^epsilon Phi(-Delta/(2 sigma) - epsilon sigma/Delta)`` (their Theorem 8) is at most
  ``delta``; valid for every ``epsilon > 0`` and always smaller.

:func:`check_one_step` puts one hand calibration beside the accountant's epsilon for that
single, unsampled step (``z = sigma / Delta``).

Examples
--------
>>> from course_lib.dp.definition import analytic_sigma, classical_sigma, check_one_step
>>> round(classical_sigma(0.5, 1e-5, sensitivity=1.0), 3), round(analytic_sigma(0.5, 1e-5), 3)
(9.69, 7.032)
>>> check_one_step(0.5, 1e-5)
OneStepCheck(classical: epsilon=0.5 -> sigma=9.69 (z=9.69); accountant epsilon=0.388, exact 0.353)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq
from scipy.special import log_ndtr, ndtr

from course_lib._validation import require_choice, require_int, require_probability, require_real
from course_lib.dp.accounting import epsilon as accountant_epsilon

__all__ = ["remove_one", "replace_one", "clip_rows", "l2_sensitivity", "empirical_sensitivity",
           "classical_sigma", "analytic_sigma", "gaussian_delta", "gaussian_epsilon",
           "gaussian_mechanism", "OneStepCheck", "check_one_step"]

RELATIONS = ("add_remove", "replace")


def _records(records: object) -> np.ndarray:
    array = np.asarray(records, dtype=np.float64)
    if array.ndim not in (1, 2) or len(array) == 0:
        raise ValueError(f"`records` must be a non-empty 1-D or 2-D array (one row per record), "
                         f"got shape {array.shape}")
    return array


def remove_one(records: object, index: int) -> np.ndarray:
    """The add/remove neighbour of ``records`` without record ``index``."""
    array = _records(records)
    require_int("index", index, minimum=0, maximum=len(array) - 1)
    return np.delete(array, index, axis=0)


def replace_one(records: object, index: int, value: object) -> np.ndarray:
    """The replace neighbour of ``records`` with record ``index`` set to ``value``."""
    array = _records(records).copy()
    require_int("index", index, minimum=0, maximum=len(array) - 1)
    array[index] = value
    return array


def clip_rows(records: object, norm_bound: float) -> np.ndarray:
    """Every record (row) scaled to L2 norm at most ``norm_bound``: what bounds sensitivity."""
    bound = require_real("norm_bound", norm_bound, minimum=0.0, allow_minimum=False)
    array = _records(records)
    rows = array.reshape(len(array), -1)  # (records, features)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)  # (records, 1)
    scale = np.minimum(1.0, bound / np.maximum(norms, 1e-300))
    return (rows * scale).reshape(array.shape)


def l2_sensitivity(query: str, *, neighbouring: str = "add_remove",
                   norm_bound: float | None = None,
                   value_range: tuple[float, float] | None = None,
                   num_records: int | None = None) -> float:
    """The L2 sensitivity of a bounded ``"sum"`` or ``"mean"`` of records.

    Give the bound on each record either as ``norm_bound`` (vectors of L2 norm at most ``B``)
    or as ``value_range=(lo, hi)`` (scalars in ``[lo, hi]``). ``"mean"`` is the sum divided
    by a *fixed, public* ``num_records`` (as DP-FedAvg divides by the expected number of
    clients): with a data-dependent count the denominator itself would leak.
    """
    require_choice("query", query, ("sum", "mean"))
    require_choice("neighbouring", neighbouring, RELATIONS)
    if (norm_bound is None) == (value_range is None):
        raise ValueError("give exactly one of `norm_bound` and `value_range`")
    if norm_bound is not None:
        bound = require_real("norm_bound", norm_bound, minimum=0.0, allow_minimum=False)
        delta = bound if neighbouring == "add_remove" else 2 * bound
    else:
        lo, hi = (require_real("value_range", v) for v in value_range)
        if not lo < hi:
            raise ValueError(f"`value_range` must be (lo, hi) with lo < hi, got {value_range}")
        delta = max(abs(lo), abs(hi)) if neighbouring == "add_remove" else hi - lo
    if query == "mean":
        if num_records is None:
            raise ValueError("`num_records` (the fixed denominator) is needed for a mean")
        delta /= require_int("num_records", num_records, minimum=1)
    return float(delta)


def empirical_sensitivity(query: Callable[[np.ndarray], object], records: object, *,
                          neighbouring: str = "add_remove",
                          candidates: object = None) -> float:
    """``max ||query(D) - query(D')||_2`` over the neighbours ``D'`` of this one dataset.

    ``"add_remove"`` tries removing each record; ``"replace"`` tries replacing each record
    by each row of ``candidates``. The true sensitivity is the maximum over *all* datasets,
    so this is a lower bound of it: a sanity check of :func:`l2_sensitivity`, not a proof.
    """
    array = _records(records)
    require_choice("neighbouring", neighbouring, RELATIONS)
    base = np.asarray(query(array), dtype=np.float64)
    if neighbouring == "add_remove":
        others = [remove_one(array, i) for i in range(len(array))]
    else:
        if candidates is None:
            raise ValueError("`candidates` (values a record may be replaced by) are needed")
        others = [replace_one(array, i, c) for i in range(len(array))
                  for c in np.asarray(candidates, dtype=np.float64)]
    return max(float(np.linalg.norm(np.asarray(query(d), dtype=np.float64) - base))
               for d in others)


def _check(epsilon: float, delta: float, sensitivity: float) -> tuple[float, float, float]:
    return (require_real("epsilon", epsilon, minimum=0.0, allow_minimum=False),
            require_probability("delta", delta, include_one=False),
            require_real("sensitivity", sensitivity, minimum=0.0, allow_minimum=False))


def classical_sigma(epsilon: float, delta: float, sensitivity: float = 1.0) -> float:
    """``sqrt(2 ln(1.25 / delta)) * sensitivity / epsilon``: the textbook calibration.

    Dwork & Roth (2014), Theorem A.1, proves it only for ``epsilon < 1``; larger values are
    refused (use :func:`analytic_sigma`).
    """
    epsilon, delta, sensitivity = _check(epsilon, delta, sensitivity)
    if epsilon >= 1:
        raise ValueError(f"`epsilon` must be < 1 for the classical Gaussian mechanism, got "
                         f"{epsilon!r}; use analytic_sigma for any epsilon")
    return math.sqrt(2 * math.log(1.25 / delta)) * sensitivity / epsilon


def gaussian_delta(sigma: float, epsilon: float, sensitivity: float = 1.0) -> float:
    """The exact ``delta`` of the Gaussian mechanism with ``sigma`` at ``epsilon``.

    Balle & Wang (2018), Theorem 8: ``Phi(D/(2s) - e s/D) - e^e Phi(-D/(2s) - e s/D)``;
    ``e^e Phi(.)`` is computed in log space so that large ``epsilon`` cannot overflow.
    """
    sigma = require_real("sigma", sigma, minimum=0.0, allow_minimum=False)
    epsilon = require_real("epsilon", epsilon, minimum=0.0)
    sensitivity = require_real("sensitivity", sensitivity, minimum=0.0, allow_minimum=False)
    a, b = sensitivity / (2 * sigma), epsilon * sigma / sensitivity
    return max(0.0, float(ndtr(a - b) - math.exp(epsilon + log_ndtr(-a - b))))


def analytic_sigma(epsilon: float, delta: float, sensitivity: float = 1.0) -> float:
    """The smallest ``sigma`` with ``gaussian_delta(sigma, epsilon) <= delta`` (Balle & Wang).

    ``gaussian_delta`` falls as ``sigma`` grows, so the root is bracketed and found by
    Brent's method to 1e-12 relative (their Algorithm 1 finds the same root in another
    parametrisation). Valid for every ``epsilon > 0``.
    """
    epsilon, delta, sensitivity = _check(epsilon, delta, sensitivity)
    low, high = 1e-3 * sensitivity, sensitivity
    while gaussian_delta(high, epsilon, sensitivity) > delta:
        high *= 2
    while gaussian_delta(low, epsilon, sensitivity) < delta:
        low /= 2
    return float(brentq(lambda s: gaussian_delta(s, epsilon, sensitivity) - delta, low, high,
                        xtol=1e-15, rtol=1e-12))


def gaussian_epsilon(sigma: float, delta: float, sensitivity: float = 1.0) -> float:
    """The exact (smallest) ``epsilon`` of the Gaussian mechanism with ``sigma`` at ``delta``."""
    delta = require_probability("delta", delta, include_one=False)
    if gaussian_delta(sigma, 0.0, sensitivity) <= delta:
        return 0.0
    high = 1.0
    while gaussian_delta(sigma, high, sensitivity) > delta:
        high *= 2
    return float(brentq(lambda e: gaussian_delta(sigma, e, sensitivity) - delta, 0.0, high,
                        xtol=1e-15, rtol=1e-12))


def gaussian_mechanism(value: object, *, sigma: float, seed: int) -> np.ndarray:
    """Release ``value + N(0, sigma^2 I)`` (noise from ``numpy.random.default_rng(seed)``)."""
    sigma = require_real("sigma", sigma, minimum=0.0)
    require_int("seed", seed, minimum=0)
    array = np.asarray(value, dtype=np.float64)
    return array + sigma * np.random.default_rng(seed).standard_normal(array.shape)


@dataclass(frozen=True, repr=False)
class OneStepCheck:
    """One hand calibration beside the accountant, for a single unsampled Gaussian step.

    Attributes
    ----------
    epsilon, delta : float
        The target the noise was calibrated for.
    calibration : str
        ``"classical"`` or ``"analytic"``.
    sigma, noise_multiplier : float
        The noise std and ``z = sigma / sensitivity``.
    accountant_epsilon : float
        Opacus's RDP accountant for one step at ``z``, ``q = 1``, the same ``delta``.
    exact_epsilon : float
        The Gaussian mechanism's exact epsilon at this ``sigma`` (:func:`gaussian_epsilon`);
        both other numbers are upper bounds of it.
    """

    epsilon: float
    delta: float
    calibration: str
    sigma: float
    noise_multiplier: float
    accountant_epsilon: float
    exact_epsilon: float

    @property
    def accountant_within_target(self) -> bool:
        """Whether the accountant certifies the target: ``accountant_epsilon <= epsilon``."""
        return self.accountant_epsilon <= self.epsilon

    def __repr__(self) -> str:
        return (f"OneStepCheck({self.calibration}: epsilon={self.epsilon:g} -> "
                f"sigma={self.sigma:.3g} (z={self.noise_multiplier:.3g}); accountant "
                f"epsilon={self.accountant_epsilon:.3g}, exact {self.exact_epsilon:.3g})")


def check_one_step(epsilon: float, delta: float, *, sensitivity: float = 1.0,
                   calibration: str = "classical") -> OneStepCheck:
    """Calibrate ``sigma`` by hand, then ask the accountant about that one step.

    With the classical calibration the accountant's epsilon is below the target for most
    ``(epsilon, delta)`` (0.388 for 0.5 at 1e-5), because the classical bound is loose.
    Below about ``epsilon = 0.15`` at ``delta = 1e-5`` it is not (0.116 for 0.1): the
    accountant only searches Renyi orders up to 63 and small epsilons need larger ones. The
    analytic calibration is exact, so every valid accountant reports at least its target
    (1.09 for 1.0 at 1e-5): for one step, RDP is the looser bound.
    """
    epsilon, delta, sensitivity = _check(epsilon, delta, sensitivity)
    require_choice("calibration", calibration, ("classical", "analytic"))
    sigma = (classical_sigma if calibration == "classical" else analytic_sigma)(
        epsilon, delta, sensitivity)
    z = sigma / sensitivity
    return OneStepCheck(
        epsilon=epsilon, delta=delta, calibration=calibration, sigma=sigma, noise_multiplier=z,
        accountant_epsilon=accountant_epsilon(noise_multiplier=z, sample_rate=1.0, steps=1,
                                              delta=delta),
        exact_epsilon=gaussian_epsilon(sigma, delta, sensitivity))
