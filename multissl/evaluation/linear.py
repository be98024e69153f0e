"""Linear probe: logistic regression on frozen embeddings.

Features are standardised with statistics of the *training* rows only, then scikit-learn's
L-BFGS logistic regression is fit (a well-tested solver; the same protocol is used for every
representation compared, raw pixels included, so the comparison is fair).
"""
from __future__ import annotations

from typing import Union

import numpy as np
import torch

Array = Union[np.ndarray, torch.Tensor]


def _np(x: Array) -> np.ndarray:
    return x.detach().cpu().numpy() if torch.is_tensor(x) else np.asarray(x)


def linear_probe(train_z: Array, train_y: Array, test_z: Array, test_y: Array, C: float = 1.0,
                 max_iter: int = 2000) -> float:
    """Test accuracy of a logistic-regression probe trained on (train_z, train_y)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    xtr, xte = _np(train_z).reshape(len(train_z), -1), _np(test_z).reshape(len(test_z), -1)
    ytr, yte = _np(train_y), _np(test_y)
    if len(np.unique(ytr)) < 2:
        raise ValueError("a linear probe needs at least two classes in the training labels")
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter))
    clf.fit(xtr, ytr)
    return float((clf.predict(xte) == yte).mean())
