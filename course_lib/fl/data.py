"""Offline data for the federated-learning chapters: scikit-learn's handwritten digits.

The digits ship inside scikit-learn (1,797 images of 8x8 pixels, 10 classes), so nothing is
downloaded. :func:`load_digits` splits them into a stratified train and test set, then
standardises every pixel with the mean and standard deviation of the *training* images only,
so that no statistic of the test set leaks into training.

Examples
--------
>>> from course_lib.fl.data import load_digits
>>> data = load_digits(seed=0)
>>> data
Dataset(name='digits', train=1347, test=450, features=64, classes=10)
>>> data.X_train.dtype, data.y_train.dtype
(torch.float32, torch.int64)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from sklearn.datasets import load_digits as _sklearn_digits
from sklearn.model_selection import train_test_split

from course_lib._validation import require_int

__all__ = ["Dataset", "load_digits"]


@dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """A train/test split as tensors, with the standardisation statistics that produced it.

    Attributes
    ----------
    X_train, X_test : torch.Tensor
        Standardised features, float32, shape ``(samples, features)``.
    y_train, y_test : torch.Tensor
        Class labels, int64, shape ``(samples,)``.
    mean, std : torch.Tensor
        Per-feature training mean and standard deviation, shape ``(features,)``;
        ``X * std + mean`` recovers the raw pixels (0-16 for digits).
    name : str
        Where the data came from.
    """

    X_train: torch.Tensor
    y_train: torch.Tensor
    X_test: torch.Tensor
    y_test: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor
    name: str = "digits"

    @property
    def num_features(self) -> int:
        """Number of input features (64 for 8x8 digits)."""
        return int(self.X_train.shape[1])

    @property
    def num_classes(self) -> int:
        """Number of classes (10 for digits)."""
        return int(max(self.y_train.max(), self.y_test.max()).item()) + 1

    def __repr__(self) -> str:
        return (f"Dataset(name={self.name!r}, train={len(self.y_train)}, test={len(self.y_test)}, "
                f"features={self.num_features}, classes={self.num_classes})")


def load_digits(*, test_size: float = 0.25, seed: int = 0) -> Dataset:
    """Load scikit-learn's bundled digits, split stratified by class, standardised.

    Parameters
    ----------
    test_size : float
        Fraction of the 1,797 images held out for testing, in (0, 1). The default 0.25
        gives 1,347 training and 450 test images.
    seed : int
        Seed of the split; the same seed always gives the same split.

    Returns
    -------
    Dataset
        Float32 features and int64 labels. Pixels that are constant in the training set
        (a few border pixels are always 0) get ``std = 1`` so they stay 0 after scaling.
    """
    if isinstance(test_size, bool) or not isinstance(test_size, (int, float)) \
            or not 0.0 < test_size < 1.0:
        raise ValueError(f"`test_size` must be a float in (0, 1), got {test_size!r}")
    require_int("seed", seed, minimum=0)
    bunch = _sklearn_digits()
    X = bunch.data.astype(np.float64)  # (1797, 64), raw pixel intensities 0..16
    y = bunch.target.astype(np.int64)  # (1797,)
    X_tr, X_te, y_tr, y_te = train_test_split(
        X, y, test_size=test_size, stratify=y, random_state=seed)
    mean = X_tr.mean(axis=0)
    std = X_tr.std(axis=0)
    std[std == 0.0] = 1.0  # constant pixels: leave them at 0 instead of dividing by 0

    def scale(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(((a - mean) / std).astype(np.float32))

    return Dataset(
        X_train=scale(X_tr), y_train=torch.from_numpy(y_tr),
        X_test=scale(X_te), y_test=torch.from_numpy(y_te),
        mean=torch.from_numpy(mean.astype(np.float32)),
        std=torch.from_numpy(std.astype(np.float32)),
    )
