"""An empirical privacy audit of DP-SGD: a lower bound on epsilon from a real attack.

The accountant gives an *upper* bound: no attack can do better than its epsilon. An audit
(Jagielski et al. 2020; Nasr et al. 2021) runs an attack and turns its success into a *lower*
bound. If the two meet, the analysis is tight; if the lower bound ever exceeded the upper one,
the implementation (or the analysis) would be wrong.

The attack here is a distinguishing game with a **canary** record:

1. Train many times on ``D`` (world 0) and many times on ``D + {canary}`` (world 1); the runs
   differ only in their random batches and noise (one seed each).
2. Score each trained model. The default ``score="gradient"`` is the white-box test of
   Nasr et al.: how far the model moved along the canary's own clipped gradient. DP-SGD adds
   that gradient (clipped to ``C``) when the canary is in the batch, so world 1's scores are
   shifted by up to ``C`` against noise of std ``z C``. ``score="loss"`` uses the canary's
   loss instead (what a black-box attacker sees).
3. Guess "world 1" when the score is above a threshold, chosen on one half of the runs and
   evaluated on the other half (choosing and measuring on the same runs would flatter it).
4. The guess's false-positive and false-negative rates bound epsilon: an (epsilon, delta)-DP
   training forces ``FPR + e^epsilon FNR >= 1 - delta`` and the same with the two swapped, so

       epsilon >= max(log((1 - delta - FNR) / FPR), log((1 - delta - FPR) / FNR)).

   With the Clopper-Pearson upper ends of FPR and FNR (each at ``1 - (1 - confidence) / 2``,
   so both hold together with probability ``confidence``) this is a lower bound that holds
   with that confidence, not a point estimate.

To run thousands of trainings in a second, each one is a single DP-SGD step of a logistic
regression on the digits, from a known starting point (the strongest adversary knows it):
the per-sample gradients are computed once with :mod:`course_lib.dp.dpsgd` (they depend only
on the starting point), and each trial draws its own Poisson batch and Gaussian noise, all
trials at once. This is the classic fast audit: one step, white-box, worst-case canary.

Examples
--------
>>> from course_lib.dp.audit import audit_dp_sgd
>>> table = audit_dp_sgd(noise_multipliers=[0.0, 0.5, 1.0, 2.0], seed=0)
>>> table
    z  empirical epsilon >=   exact  accountant    FPR    FNR
 0.00                  6.52     inf         inf  0.000  0.000
 0.50                  4.01   10.00       10.73  0.864  0.000
 1.00                  1.72    4.38        4.73  0.964  0.002
 2.00                  0.91    1.99        2.17  0.007  0.965
>>> one = table[2]  # an AuditResult: the rates, both epsilons, every score
>>> round(one.epsilon_lower, 2), round(one.epsilon_accountant, 2), one.scores_with.shape
(1.72, 4.73, (5000,))

Without noise the attack wins every game: the bound, about 6.5, is then limited only by the
number of trials (no error in 2,500 gives ``FPR <= 0.0015`` at 97.5%). With noise it stays
below the exact epsilon and the accountant's: the implementation passes the audit.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats

from course_lib._threads import torch_threads
from course_lib._validation import require_choice, require_int, require_probability, require_real
from course_lib.dp.accounting import epsilon as accountant_epsilon
from course_lib.dp.definition import gaussian_epsilon
from course_lib.dp.dpsgd import clip_per_sample, per_sample_gradients

__all__ = ["clopper_pearson", "epsilon_lower_bound", "AuditResult", "AuditTable",
           "audit_dp_sgd"]


def clopper_pearson(count: np.ndarray | int, trials: int, *,
                    confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """The exact (Clopper-Pearson) two-sided interval of a binomial rate ``count / trials``."""
    require_int("trials", trials, minimum=1)
    confidence = require_probability("confidence", confidence, include_one=False)
    k = np.asarray(count, dtype=np.float64)
    if (k < 0).any() or (k > trials).any():
        raise ValueError(f"`count` must lie in [0, {trials}], got {count!r}")
    alpha = 1 - confidence
    low = np.where(k > 0, stats.beta.ppf(alpha / 2, np.maximum(k, 1), trials - k + 1), 0.0)
    high = np.where(k < trials, stats.beta.ppf(1 - alpha / 2, k + 1,
                                               np.maximum(trials - k, 1)), 1.0)
    return low, high


def epsilon_lower_bound(fpr: np.ndarray | float, fnr: np.ndarray | float,
                        delta: float) -> np.ndarray:
    """``max(log((1 - delta - FNR) / FPR), log((1 - delta - FPR) / FNR), 0)``, elementwise."""
    delta = require_probability("delta", delta, include_zero=True, include_one=False)
    fpr, fnr = np.asarray(fpr, dtype=np.float64), np.asarray(fnr, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        one = np.where((fpr > 0) & (1 - delta - fnr > 0), np.log((1 - delta - fnr) / fpr), 0.0)
        two = np.where((fnr > 0) & (1 - delta - fpr > 0), np.log((1 - delta - fpr) / fnr), 0.0)
    return np.maximum(np.maximum(one, two), 0.0)


@dataclass(frozen=True, repr=False)
class AuditResult:
    """One audit: the attack's error rates and the two epsilons, at one noise level.

    Attributes
    ----------
    epsilon_lower : float
        The empirical lower bound (holds with probability ``confidence``).
    epsilon_accountant : float
        Opacus's RDP accountant for the same single step (``inf`` without noise).
    epsilon_exact : float
        With ``sample_rate = 1`` the step is exactly a Gaussian mechanism of noise ``z``, so
        its true epsilon is known (:func:`course_lib.dp.definition.gaussian_epsilon`);
        ``nan`` with subsampling. ``epsilon_lower <= epsilon_exact <= epsilon_accountant``.
    fpr, fnr : float
        The attack's error rates on the evaluation half at the chosen ``threshold``.
    fpr_high, fnr_high : float
        Their Clopper-Pearson upper ends, which the bound uses.
    scores_without, scores_with : numpy.ndarray
        The attacker's score of every training without and with the canary, ``(2 * trials,)``
        each (the first half chose the threshold); plot their histograms to see the game.
    """

    noise_multiplier: float
    sample_rate: float
    delta: float
    confidence: float
    score: str
    trials: int
    threshold: float
    fpr: float
    fnr: float
    fpr_high: float
    fnr_high: float
    epsilon_lower: float
    epsilon_accountant: float
    epsilon_exact: float
    scores_without: np.ndarray
    scores_with: np.ndarray
    seconds: float = 0.0

    def __repr__(self) -> str:
        exact = "" if math.isnan(self.epsilon_exact) else f"exact {self.epsilon_exact:.2f}, "
        return (f"AuditResult(z={self.noise_multiplier:g}, q={self.sample_rate:g}: empirical "
                f"epsilon >= {self.epsilon_lower:.2f} ({self.confidence:.0%} confidence), "
                f"{exact}accountant {self.epsilon_accountant:.2f}; FPR {self.fpr:.3f}, FNR "
                f"{self.fnr:.3f} over 2 x {self.trials} trainings)")


class AuditTable(tuple):
    """Audits at several noise levels: a tuple of :class:`AuditResult` that prints as a table."""

    def __repr__(self) -> str:
        rows = [f"{'z':>5}  {'empirical epsilon >=':>20}  {'exact':>6}  {'accountant':>10}  "
                f"{'FPR':>5}  {'FNR':>5}"]
        rows += [f"{r.noise_multiplier:>5.2f}  {r.epsilon_lower:>20.2f}  {r.epsilon_exact:>6.2f}  "
                 f"{r.epsilon_accountant:>10.2f}  {r.fpr:>5.3f}  {r.fnr:>5.3f}" for r in self]
        return "\n".join(rows)


def _digits(num_records: int) -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits  # bundled with scikit-learn: no download

    bunch = load_digits()
    X = torch.from_numpy(bunch.data[:num_records] / 16.0).float()  # (records, 64) in [0, 1]
    return X, torch.from_numpy(bunch.target[:num_records]).long()


def _scores(world: int, *, grads: torch.Tensor, direction: torch.Tensor, x_canary: torch.Tensor,
            y_canary: int, q: float, z: float, max_norm: float, lr: float, trials: int,
            score: str, shape: tuple[int, int], generator: torch.Generator) -> np.ndarray:
    """One DP-SGD step from zero weights in ``trials`` independent runs; one score per run."""
    n = len(grads) - 1  # the last row is the canary's clipped gradient
    picked = (torch.rand(trials, n + 1, generator=generator) < q).float()  # (trials, n+1)
    picked[:, -1] *= world  # world 0: the canary is not in the data
    noise = torch.randn(trials, grads.shape[1], generator=generator)  # (trials, params)
    noisy_sum = picked @ grads + z * max_norm * noise  # (trials, params)
    step = -lr * noisy_sum / (q * n)  # theta_1 - theta_0, theta_0 = 0
    if score == "gradient":  # how far the model moved against the canary's gradient
        return (-step @ direction).numpy()  # (trials,)
    weight = step.reshape(trials, *shape)  # (trials, classes, features + 1)
    logits = weight[:, :, :-1] @ x_canary + weight[:, :, -1]  # (trials, classes)
    return -(torch.logsumexp(logits, dim=1) - logits[:, y_canary]).numpy()  # minus the loss


def _audit_one(z: float, *, grads, direction, x_canary, y_canary, q, max_norm, lr, trials,
               score, shape, delta, confidence, generator) -> AuditResult:
    start = time.perf_counter()
    kw = dict(grads=grads, direction=direction, x_canary=x_canary, y_canary=y_canary, q=q, z=z,
              max_norm=max_norm, lr=lr, trials=2 * trials, score=score, shape=shape,
              generator=generator)
    out, into = _scores(0, **kw), _scores(1, **kw)  # (2 * trials,) each
    # Choose the threshold on the first half of each world, measure on the second half.
    candidates = np.unique(np.r_[out[:trials], into[:trials]])
    if len(candidates) > 2000:  # enough resolution, bounded cost
        candidates = np.quantile(candidates, np.linspace(0, 1, 2000))
    candidates = np.r_[candidates, np.inf]

    def bound(outside: np.ndarray, inside: np.ndarray, thresholds: np.ndarray):
        fp = (outside[None, :] >= thresholds[:, None]).sum(1)  # (thresholds,)
        fn = (inside[None, :] < thresholds[:, None]).sum(1)
        fp_high = clopper_pearson(fp, len(outside), confidence=confidence)[1]
        fn_high = clopper_pearson(fn, len(inside), confidence=confidence)[1]
        return epsilon_lower_bound(fp_high, fn_high, delta), fp, fn, fp_high, fn_high

    best = candidates[int(np.argmax(bound(out[:trials], into[:trials], candidates)[0]))]
    eps, fp, fn, fp_high, fn_high = bound(out[trials:], into[trials:], np.array([best]))
    return AuditResult(
        noise_multiplier=z, sample_rate=q, delta=delta, confidence=confidence, score=score,
        trials=trials, threshold=float(best), fpr=float(fp[0]) / trials,
        fnr=float(fn[0]) / trials, fpr_high=float(fp_high[0]), fnr_high=float(fn_high[0]),
        epsilon_lower=float(eps[0]),
        epsilon_accountant=accountant_epsilon(noise_multiplier=z, sample_rate=q, steps=1,
                                              delta=delta),
        epsilon_exact=(math.inf if z == 0 else gaussian_epsilon(z, delta)) if q == 1
        else math.nan, scores_without=out, scores_with=into, seconds=time.perf_counter() - start)


def audit_dp_sgd(*, noise_multipliers: Sequence[float] = (0.0, 0.5, 1.0, 2.0),
                 max_norm: float = 1.0, sample_rate: float = 1.0, num_records: int = 100,
                 X: torch.Tensor | None = None, y: torch.Tensor | None = None,
                 trials: int = 2500, lr: float = 1.0, score: str = "gradient",
                 delta: float = 1e-5, confidence: float = 0.95,
                 seed: int = 0) -> AuditTable:
    """Audit one DP-SGD step at each noise level: empirical epsilon beside the accountant's.

    Parameters
    ----------
    noise_multipliers : sequence of float
        The ``z`` values to audit (``0`` = clipping without noise).
    max_norm, sample_rate, lr : float
        DP-SGD's clipping norm ``C``, Poisson rate ``q`` and step size.
    num_records, X, y
        The training data ``D``: by default the first ``num_records`` of scikit-learn's
        digits, pixels scaled to [0, 1]; or your own ``X (n, features)``, ``y (n,)``.
        The canary is an image with every pixel at its maximum, labelled 0.
    trials : int
        Trainings per world *and* half: ``4 * trials`` runs per noise level in all.
    score : {"gradient", "loss"}
        The attacker's test statistic (see the module docstring).
    delta, confidence : float
        The ``delta`` of both epsilons, and the confidence of the lower bound.
    seed : int
        Seeds the one ``torch.Generator`` behind every batch and every noise draw.
    """
    zs = [require_real("noise_multipliers", z, minimum=0.0) for z in noise_multipliers]
    max_norm = require_real("max_norm", max_norm, minimum=0.0, allow_minimum=False)
    q = require_probability("sample_rate", sample_rate)
    lr = require_real("lr", lr, minimum=0.0, allow_minimum=False)
    require_int("trials", trials, minimum=10, maximum=1_000_000)
    require_choice("score", score, ("gradient", "loss"))
    delta = require_probability("delta", delta, include_one=False)
    confidence = require_probability("confidence", confidence, include_one=False)
    require_int("seed", seed, minimum=0)
    if X is None or y is None:
        X, y = _digits(require_int("num_records", num_records, minimum=1, maximum=1797))
    if not isinstance(X, torch.Tensor) or X.dim() != 2 or len(X) != len(y) or len(X) == 0:
        raise ValueError("`X` must be a (records, features) tensor with one label in `y` each")
    classes = int(max(int(y.max()) + 1, 2))
    x_canary = torch.full((X.shape[1],), float(X.max()))  # every pixel at its maximum
    model = torch.nn.Linear(X.shape[1], classes)
    torch.nn.init.zeros_(model.weight)
    torch.nn.init.zeros_(model.bias)  # theta_0 = 0: known to the attacker
    inputs = torch.cat([X.float(), x_canary[None]])  # (records + 1, features)
    targets = torch.cat([y.long(), torch.zeros(1, dtype=torch.long)])
    with torch_threads(1):
        clipped = clip_per_sample(per_sample_gradients(model, inputs, targets), max_norm)
    grads = torch.cat([clipped["weight"], clipped["bias"][:, :, None]], dim=2)  # (n+1, C, F+1)
    shape = tuple(grads.shape[1:])
    grads = grads.reshape(len(grads), -1)  # (records + 1, params)
    direction = grads[-1] / grads[-1].norm()  # the canary's clipped gradient, unit length
    generator = torch.Generator().manual_seed(seed)
    with torch_threads(1):
        return AuditTable(_audit_one(
            z, grads=grads, direction=direction, x_canary=x_canary, y_canary=0, q=q,
            max_norm=max_norm, lr=lr, trials=trials, score=score, shape=shape, delta=delta,
            confidence=confidence, generator=generator) for z in zs)
