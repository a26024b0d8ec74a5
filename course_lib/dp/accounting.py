"""Privacy accounting: how much epsilon a run of sampled Gaussian mechanisms spends.

The accountant is Opacus's Renyi-DP accountant (a maintained one, not written here).
"""

from __future__ import annotations

import functools
import math
import warnings
from typing import Any

import numpy as np

from course_lib._validation import require_int
from course_lib.dp._checks import _positive, _probability

__all__ = ["epsilon", "epsilon_after", "noise_for_epsilon"]


def epsilon(*, noise_multiplier: float, sample_rate: float, steps: int, delta: float) -> float:
    """``epsilon`` of ``steps`` sampled Gaussian mechanisms, from Opacus's RDP accountant.

    Parameters
    ----------
    noise_multiplier : float
        ``z``; 0 means no noise and gives ``inf``.
    sample_rate : float
        ``q`` in (0, 1]: the fraction of clients per round (1 = every client, no amplification).
    steps : int
        Number of noisy rounds (>= 0; 0 rounds spend nothing).
    delta : float
        Target ``delta`` in (0, 1).
    """
    z = _positive("noise_multiplier", noise_multiplier, allow_zero=True)
    q = _probability("sample_rate", sample_rate, include_one=True)
    require_int("steps", steps, minimum=0)
    delta = _probability("delta", delta, include_one=False)
    if steps == 0:
        return 0.0
    if z == 0:
        return math.inf
    from opacus.accountants import RDPAccountant  # imported here: opacus loads slowly

    accountant = RDPAccountant()
    accountant.history = [(z, q, steps)]
    with warnings.catch_warnings():
        # Opacus warns when the best order is at the edge of its grid; the bound is still valid.
        warnings.filterwarnings("ignore", message="Optimal order is the")
        return float(accountant.get_epsilon(delta=delta))


def noise_for_epsilon(*, target_epsilon: float, sample_rate: float, steps: int,
                      delta: float) -> float:
    """The smallest noise multiplier (to 0.01 in epsilon) reaching ``target_epsilon``.

    A thin wrapper of ``opacus.accountants.utils.get_noise_multiplier`` (RDP accountant).
    """
    target = _positive("target_epsilon", target_epsilon)
    q = _probability("sample_rate", sample_rate, include_one=True)
    require_int("steps", steps, minimum=1)
    delta = _probability("delta", delta, include_one=False)
    from opacus.accountants.utils import get_noise_multiplier

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Optimal order is the")
        return float(get_noise_multiplier(target_epsilon=target, target_delta=delta,
                                          sample_rate=q, steps=steps, accountant="rdp"))


@functools.lru_cache(maxsize=64)
def _rdp_of_one_round(noise_multiplier: float, sample_rate: float) -> tuple[float, ...]:
    from opacus.accountants import RDPAccountant  # imported here: opacus loads slowly
    from opacus.accountants.analysis.rdp import compute_rdp

    return tuple(compute_rdp(q=sample_rate, noise_multiplier=noise_multiplier, steps=1,
                             orders=RDPAccountant.DEFAULT_ALPHAS))


def epsilon_after(dp: Any, *, sample_rate: float, steps: int) -> float:
    """Epsilon after ``steps`` rounds: the number ``dp.epsilon(...)`` gives, only faster.

    Opacus's ``RDPAccountant`` computes the Renyi DP of one sampled Gaussian step (about
    0.1 s, a series per order), multiplies it by ``steps`` and converts it to ``(epsilon,
    delta)``. A run reports epsilon after every round, so the one-step values are computed once
    per ``(z, q)`` with the accountant's own functions and orders, and only the (cheap)
    conversion runs per round; the result is the accountant's to the last bit (tested).
    """
    if steps == 0:
        return 0.0
    if dp.noise_multiplier == 0:
        return math.inf
    from opacus.accountants import RDPAccountant
    from opacus.accountants.analysis.rdp import get_privacy_spent

    rdp = np.asarray(_rdp_of_one_round(float(dp.noise_multiplier), float(sample_rate))) * steps
    with warnings.catch_warnings():
        # Opacus warns when the best order is at the edge of its grid; the bound is still valid.
        warnings.filterwarnings("ignore", message="Optimal order is the")
        eps, _ = get_privacy_spent(orders=RDPAccountant.DEFAULT_ALPHAS, rdp=rdp, delta=dp.delta)
    return float(eps)
