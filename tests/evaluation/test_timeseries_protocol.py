"""The UCR/UEA protocol's SVM: the T-Loss / TS2Vec rule for C, and what it returns."""
from __future__ import annotations

import numpy as np
import pytest

from multissl.evaluation.timeseries_protocol import SVM_C_GRID, svm_accuracy, svm_classify, too_small_for_cv


def blobs(n_per_class: int, sep: float, seed: int = 0, dim: int = 4):
    """Two Gaussian classes ``sep`` apart along the first axis."""
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1], n_per_class)
    z = rng.normal(size=(2 * n_per_class, dim))
    z[:, 0] += sep * y
    return z, y


def test_tiny_train_sets_get_a_hard_margin_and_larger_ones_a_cv_choice() -> None:
    assert too_small_for_cv(np.repeat([0, 1], 4))          # 4 per class
    assert too_small_for_cv(np.repeat([0, 1, 2, 3], 10))   # 40 in all (BasicMotions)
    assert not too_small_for_cv(np.repeat([0, 1], 25))     # 50 in all (GunPoint)
    z, y = blobs(5, 6.0)
    out = svm_classify(z, y, z, y)
    assert out["C"] == float("inf") and out["cv_accuracy"] is None
    z, y = blobs(30, 6.0)
    out = svm_classify(z, y, z, y)
    assert out["cv_accuracy"] is not None and out["C"] in SVM_C_GRID


def test_accuracy_follows_the_separation_of_the_classes() -> None:
    ztr, ytr = blobs(30, 8.0, seed=1)
    zte, yte = blobs(30, 8.0, seed=2)
    assert svm_accuracy(ztr, ytr, zte, yte) == 1.0
    ntr, _ = blobs(30, 0.0, seed=1)
    nte, _ = blobs(30, 0.0, seed=2)
    assert svm_accuracy(ntr, ytr, nte, yte) < 0.75


def test_one_class_is_a_clear_error() -> None:
    z, _ = blobs(5, 1.0)
    with pytest.raises(ValueError, match="at least two classes"):
        svm_classify(z, np.zeros(len(z)), z, np.zeros(len(z)))
