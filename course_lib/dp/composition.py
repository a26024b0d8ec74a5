"""Composition: what ``k`` Gaussian steps cost together, counted three ways, and subsampling.

Training runs many noisy steps on the same data; each spends privacy. Three ways to add up
``k`` steps that are each ``(epsilon_0, delta_0)``-DP:

- **simple** (basic) composition: ``(k epsilon_0, k delta_0)``. Always valid, grows like ``k``.
- **advanced** composition (Dwork, Rothblum & Vadhan 2010): for any slack ``delta'``,
  ``epsilon_0 sqrt(2 k ln(1/delta')) + k epsilon_0 (e^epsilon_0 - 1)`` at
  ``k delta_0 + delta'``. Grows like ``sqrt(k)`` for small ``epsilon_0``.
- **Renyi DP** (Mironov 2017): a Gaussian step of noise multiplier ``z`` has Renyi divergence
  ``alpha / (2 z^2)`` at every order ``alpha``; Renyi DP adds up exactly over steps, and is
  converted to ``(epsilon, delta)`` once, at the end. This is the accountant's way
  (:func:`course_lib.dp.epsilon`) and by far the tightest over many steps (for a single
  step the exact Gaussian epsilon is a little lower: the conversion costs something).

For Gaussian steps the exact answer is known, which makes the race checkable: ``k`` steps of
noise multiplier ``z`` release exactly as much as one step of ``z / sqrt(k)`` (Dong, Roth &
Su 2022, Gaussian DP), so the column ``exact`` is ``gaussian_epsilon(z / sqrt(k), delta)``.
Every method must report at least that.

For a fair race every method gets the same total ``delta``: simple composition splits it into
``k`` per-step shares ``delta / k``; advanced composition gives half to the slack and
``delta / (2k)`` to each step; each per-step ``epsilon_0`` is the Gaussian mechanism's exact
epsilon at that share (:func:`course_lib.dp.definition.gaussian_epsilon`).

**Subsampling.** If each record joins a step only with probability ``q``, an
``(epsilon, delta)`` step becomes ``(log(1 + q (e^epsilon - 1)), q delta)`` (amplification
by Poisson subsampling; Balle, Barthe & Gaboardi 2018). The accountant applies the sharper
Renyi-DP version of this (Mironov, Talwar & Zhang 2019) when ``sample_rate < 1``.

Examples
--------
>>> from course_lib.dp.composition import compare_composition, compare_subsampling
>>> compare_composition(noise_multiplier=20.0, steps=[1, 10, 100, 1000], delta=1e-5)
steps   simple  advanced       RDP     exact
    1     0.16      0.87      0.18      0.16
   10     1.89      3.51      0.62      0.56
  100    21.51     16.53      2.17      1.99
 1000   238.58    106.49      8.08      7.51
>>> compare_subsampling(noise_multiplier=1.0, sample_rate=0.01, steps=1000, delta=1e-5)
SubsamplingComparison(z=1, 1000 steps, delta=1e-05: epsilon 655 at q=1, 2.1 at q=0.01)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from course_lib._validation import require_int, require_probability, require_real
from course_lib.dp.accounting import epsilon as accountant_epsilon
from course_lib.dp.definition import gaussian_epsilon

__all__ = ["simple_composition", "advanced_composition", "rdp_composition",
           "subsampled_epsilon", "CompositionTable", "compare_composition",
           "SubsamplingComparison", "compare_subsampling"]


def _per_step(epsilon: float, delta: float, steps: int) -> tuple[float, float, int]:
    return (require_real("epsilon", epsilon, minimum=0.0),
            require_probability("delta", delta, include_zero=True, include_one=False),
            require_int("steps", steps, minimum=1))


def simple_composition(epsilon: float, delta: float, steps: int) -> tuple[float, float]:
    """``(steps * epsilon, steps * delta)``: basic composition of identical steps."""
    epsilon, delta, steps = _per_step(epsilon, delta, steps)
    return steps * epsilon, steps * delta


def advanced_composition(epsilon: float, delta: float, steps: int, *,
                         delta_slack: float) -> tuple[float, float]:
    """Dwork, Rothblum & Vadhan's bound for ``steps`` steps, each ``(epsilon, delta)``-DP.

    Returns ``(epsilon * sqrt(2 k ln(1/delta_slack)) + k epsilon (e^epsilon - 1),
    k delta + delta_slack)``.
    """
    epsilon, delta, steps = _per_step(epsilon, delta, steps)
    slack = require_probability("delta_slack", delta_slack, include_one=False)
    total = (epsilon * math.sqrt(2 * steps * math.log(1 / slack))
             + steps * epsilon * math.expm1(epsilon))
    return total, steps * delta + slack


def rdp_composition(noise_multiplier: float, steps: int, delta: float, *,
                    sample_rate: float = 1.0) -> float:
    """The accountant's epsilon for ``steps`` Gaussian steps (Renyi DP, then converted once)."""
    return accountant_epsilon(noise_multiplier=noise_multiplier, sample_rate=sample_rate,
                              steps=steps, delta=delta)


def subsampled_epsilon(epsilon: float, delta: float, sample_rate: float) -> tuple[float, float]:
    """``(log(1 + q (e^epsilon - 1)), q delta)``: one step run on a Poisson sample of rate ``q``."""
    epsilon = require_real("epsilon", epsilon, minimum=0.0)
    delta = require_probability("delta", delta, include_zero=True)
    q = require_probability("sample_rate", sample_rate)
    return math.log1p(q * math.expm1(epsilon)), q * delta


@dataclass(frozen=True, repr=False)
class CompositionTable:
    """Epsilon after each number of Gaussian steps, by the three counts, at one total delta."""

    noise_multiplier: float
    delta: float
    steps: tuple[int, ...]
    simple: tuple[float, ...]
    advanced: tuple[float, ...]
    rdp: tuple[float, ...]
    exact: tuple[float, ...]

    def __repr__(self) -> str:
        rows = [f"{'steps':>5} {'simple':>8} {'advanced':>9} {'RDP':>9} {'exact':>9}"]
        rows += [f"{k:>5} {s:>8.2f} {a:>9.2f} {r:>9.2f} {e:>9.2f}" for k, s, a, r, e
                 in zip(self.steps, self.simple, self.advanced, self.rdp, self.exact)]
        return "\n".join(rows)


def compare_composition(*, noise_multiplier: float, steps: Sequence[int] | int,
                        delta: float) -> CompositionTable:
    """Epsilon (at total ``delta``) after ``k`` unsampled Gaussian steps of noise ``z``.

    Simple: ``k * gaussian_epsilon(z, delta / k)``. Advanced: per-step share
    ``delta / (2k)`` and slack ``delta / 2``. RDP: the accountant at ``q = 1``.
    """
    z = require_real("noise_multiplier", noise_multiplier, minimum=0.0, allow_minimum=False)
    delta = require_probability("delta", delta, include_one=False)
    ks = (steps,) if isinstance(steps, int) else tuple(steps)
    for k in ks:
        require_int("steps", k, minimum=1)
    simple, advanced, rdp, exact = [], [], [], []
    for k in ks:
        simple.append(simple_composition(gaussian_epsilon(z, delta / k), delta / k, k)[0])
        advanced.append(advanced_composition(gaussian_epsilon(z, delta / (2 * k)),
                                             delta / (2 * k), k, delta_slack=delta / 2)[0])
        rdp.append(rdp_composition(z, k, delta))
        exact.append(gaussian_epsilon(z / math.sqrt(k), delta))
    return CompositionTable(noise_multiplier=z, delta=delta, steps=ks, simple=tuple(simple),
                            advanced=tuple(advanced), rdp=tuple(rdp), exact=tuple(exact))


@dataclass(frozen=True, repr=False)
class SubsamplingComparison:
    """The accountant's epsilon for the same steps with and without Poisson subsampling."""

    noise_multiplier: float
    sample_rate: float
    steps: int
    delta: float
    full: float
    sampled: float

    def __repr__(self) -> str:
        return (f"SubsamplingComparison(z={self.noise_multiplier:g}, {self.steps} steps, "
                f"delta={self.delta:g}: epsilon {self.full:.3g} at q=1, {self.sampled:.3g} at "
                f"q={self.sample_rate:g})")


def compare_subsampling(*, noise_multiplier: float, sample_rate: float, steps: int,
                        delta: float) -> SubsamplingComparison:
    """What subsampling adds: ``steps`` steps with ``q = 1`` against ``q = sample_rate``."""
    require_int("steps", steps, minimum=1)
    return SubsamplingComparison(
        noise_multiplier=noise_multiplier, sample_rate=sample_rate, steps=steps, delta=delta,
        full=rdp_composition(noise_multiplier, steps, delta),
        sampled=rdp_composition(noise_multiplier, steps, delta, sample_rate=sample_rate))
