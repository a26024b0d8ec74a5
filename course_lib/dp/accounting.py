"""Privacy accounting: how much epsilon a run of sampled Gaussian mechanisms spends.

The accountant is Opacus's Renyi-DP accountant (a maintained one, not written here), used
through its public functions only. There is one path, :func:`epsilon`; everything else
(``DPConfig.epsilon``, :func:`epsilon_after`, the fl engine's per-round report) calls it.

How it reaches the accountant's number fast. ``RDPAccountant.get_epsilon`` computes, for
every entry ``(z, q, steps)`` of its history, ``compute_rdp(q=q, noise_multiplier=z,
steps=steps, orders=DEFAULT_ALPHAS)`` and converts the sum with ``get_privacy_spent``.
``compute_rdp`` sums a series for each of the 150 orders (0.2 to 0.6 s for ``q < 1``, measured)
and returns that one-step vector times ``steps``. A run reports epsilon after every round, so
calling ``get_epsilon`` each round would cost minutes for a few hundred rounds. Here the
one-step vector is computed once per ``(z, q)`` with the same public function, multiplied by
``steps`` exactly as ``compute_rdp`` multiplies it, and converted with the same
``get_privacy_spent`` and orders: the result equals ``RDPAccountant`` stepped ``steps``
times to the last bit (tested), and 200 rounds of reporting take milliseconds.

Examples
--------
>>> from course_lib.dp import epsilon
>>> round(epsilon(noise_multiplier=1.0, sample_rate=0.1, steps=100, delta=1e-5), 2)
7.9
"""

from __future__ import annotations

import functools
import math
import warnings
from typing import Any

import numpy as np

from course_lib._validation import require_int, require_probability, require_real

__all__ = ["epsilon", "epsilon_after", "noise_for_epsilon"]


def _orders() -> list[float]:
    """The Renyi orders searched when converting to ``(epsilon, delta)``: Opacus's defaults."""
    from opacus.accountants import RDPAccountant  # imported here: opacus loads slowly

    return list(RDPAccountant.DEFAULT_ALPHAS)


@functools.lru_cache(maxsize=256)
def _rdp_of_one_step(noise_multiplier: float, sample_rate: float) -> np.ndarray:
    """Renyi DP of one sampled Gaussian step at every order (Opacus's ``compute_rdp``)."""
    from opacus.accountants.analysis.rdp import compute_rdp

    rdp = compute_rdp(q=sample_rate, noise_multiplier=noise_multiplier, steps=1,
                      orders=_orders())
    rdp.setflags(write=False)  # shared by every caller of the cache
    return rdp


def epsilon(*, noise_multiplier: float, sample_rate: float, steps: int, delta: float) -> float:
    """``epsilon`` of ``steps`` sampled Gaussian mechanisms, from Opacus's RDP accountant.

    Equal, to the last bit, to ``RDPAccountant`` stepped ``steps`` times with
    ``step(noise_multiplier=z, sample_rate=q)`` and then ``get_epsilon(delta)``.

    Parameters
    ----------
    noise_multiplier : float
        ``z``: noise std divided by the sensitivity; 0 means no noise and gives ``inf``.
    sample_rate : float
        ``q`` in (0, 1]: the chance that a record (or client) joins a step (1 = always, no
        amplification by subsampling).
    steps : int
        Number of noisy steps or rounds (>= 0; 0 steps spend nothing).
    delta : float
        Target ``delta`` in (0, 1).

    Examples
    --------
    >>> from course_lib.dp import epsilon
    >>> round(epsilon(noise_multiplier=1.0, sample_rate=1.0, steps=1, delta=1e-5), 2)
    4.73
    """
    z = require_real("noise_multiplier", noise_multiplier, minimum=0.0)
    q = require_probability("sample_rate", sample_rate)
    require_int("steps", steps, minimum=0)
    delta = require_probability("delta", delta, include_one=False)
    if steps == 0:
        return 0.0
    if z == 0:
        return math.inf
    from opacus.accountants.analysis.rdp import get_privacy_spent

    rdp = _rdp_of_one_step(z, q) * steps  # what compute_rdp(..., steps=steps) returns
    with warnings.catch_warnings():
        # Opacus warns when the best order is at the edge of its grid; the bound is still valid.
        warnings.filterwarnings("ignore", message="Optimal order is the")
        eps, _ = get_privacy_spent(orders=_orders(), rdp=rdp, delta=delta)
    return float(eps)


def epsilon_after(dp: Any, *, sample_rate: float, steps: int) -> float:
    """Epsilon after ``steps`` rounds of ``dp`` (a :class:`~course_lib.dp.DPConfig`).

    The same number as ``dp.epsilon(sample_rate=..., steps=...)``: both call :func:`epsilon`.
    """
    return epsilon(noise_multiplier=dp.noise_multiplier, sample_rate=sample_rate, steps=steps,
                   delta=dp.delta)


def noise_for_epsilon(*, target_epsilon: float, sample_rate: float, steps: int,
                      delta: float) -> float:
    """The smallest noise multiplier (to 0.01 in epsilon) reaching ``target_epsilon``.

    A thin wrapper of Opacus's public ``opacus.accountants.utils.get_noise_multiplier``
    (RDP accountant, the same orders), so ``epsilon(noise_multiplier=result, ...)`` is at
    most ``target_epsilon``.
    """
    target = require_real("target_epsilon", target_epsilon, minimum=0.0, allow_minimum=False)
    q = require_probability("sample_rate", sample_rate)
    require_int("steps", steps, minimum=1)
    delta = require_probability("delta", delta, include_one=False)
    from opacus.accountants.utils import get_noise_multiplier

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Optimal order is the")
        return float(get_noise_multiplier(target_epsilon=target, target_delta=delta,
                                          sample_rate=q, steps=steps, accountant="rdp"))
