"""Differential privacy: from its definition to DP-SGD, DP-FedAvg and an audit.

- :mod:`~course_lib.dp.definition`   neighbouring datasets, L2 sensitivity, the Gaussian
  mechanism calibrated by hand (classical and analytic), one step against the accountant
- :mod:`~course_lib.dp.composition`  simple, advanced and Renyi-DP composition; subsampling
- :mod:`~course_lib.dp.accounting`   epsilon from Opacus's Renyi-DP accountant (one path), and
  the noise a target epsilon needs
- :mod:`~course_lib.dp.mechanisms`   DP-FedAvg's pieces: ``DPConfig``, clipping, Gaussian
  noise, the private mean of client updates
- :mod:`~course_lib.dp.dpsgd`        DP-SGD, written once: per-sample gradients, clipping,
  noise, Poisson batches
- :mod:`~course_lib.dp.audit`        an empirical lower bound on epsilon from a canary attack
"""

from course_lib.dp.accounting import epsilon, epsilon_after, noise_for_epsilon
from course_lib.dp.mechanisms import (
    DPConfig,
    add_gaussian_noise,
    apply_update,
    clip_stacked,
    clip_update,
    private_mean,
    state_delta,
    update_norm,
)

__all__ = ["DPConfig", "update_norm", "clip_update", "clip_stacked", "add_gaussian_noise",
           "private_mean", "state_delta", "apply_update", "epsilon", "epsilon_after",
           "noise_for_epsilon"]
