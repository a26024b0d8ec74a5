"""Differential privacy for federated learning and for training.

- :mod:`~course_lib.dp.mechanisms`  DP-FedAvg's pieces: ``DPConfig``, clipping, Gaussian noise,
  the private mean of client updates
- :mod:`~course_lib.dp.accounting`  epsilon from Opacus's Renyi-DP accountant, and the noise a
  target epsilon needs
"""

from course_lib.dp.accounting import epsilon, noise_for_epsilon
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
           "private_mean", "state_delta", "apply_update", "epsilon", "noise_for_epsilon"]
