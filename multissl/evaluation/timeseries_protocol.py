"""The UCR/UEA classification protocol of the time-series representation literature.

As in T-Loss (Franceschi, Dieuleveut, Jaggi, "Unsupervised Scalable Representation Learning for
Multivariate Time Series", NeurIPS 2019) and TS2Vec (Yue et al., AAAI 2022): the encoder is
trained on the official train split without its labels, every series of both splits becomes
one fixed-size vector, and an RBF support vector machine is fit on the train vectors and
scored on the test vectors. The SVM's penalty C is chosen by 5-fold stratified
cross-validation on the train split over ``10^-4 .. 10^4`` plus an unbounded C (a hard
margin); when the train split is too small for that (fewer than 5 series per class, or fewer
than 50 series -- the same rule as both papers' code) the hard-margin SVM is fit directly.

A linear probe (logistic regression on standardised vectors, :func:`linear_probe`) is reported
next to it.
"""
from __future__ import annotations

from typing import Any, Dict, Union

import numpy as np
import torch

Array = Union[np.ndarray, torch.Tensor]

#: the C grid of T-Loss and TS2Vec: 10^-4 .. 10^4, plus an unbounded C (hard margin)
SVM_C_GRID = tuple(10.0 ** e for e in range(-4, 5)) + (float("inf"),)


def _np(x: Array) -> np.ndarray:
    return x.detach().cpu().numpy() if torch.is_tensor(x) else np.asarray(x)


def too_small_for_cv(y: np.ndarray) -> bool:
    """T-Loss / TS2Vec rule: no grid search below 5 series per class or 50 series in all."""
    classes = len(np.unique(y))
    return len(y) // classes < 5 or len(y) < 50


def svm_classify(train_z: Array, train_y: Array, test_z: Array, test_y: Array, seed: int = 0) -> Dict[str, Any]:
    """Test accuracy of an RBF SVM (``gamma="scale"``) with C chosen as described above.

    Returns ``{"accuracy": float, "C": float, "cv_accuracy": float | None}``.
    """
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.svm import SVC

    xtr, xte = _np(train_z).reshape(len(train_z), -1), _np(test_z).reshape(len(test_z), -1)
    ytr, yte = _np(train_y), _np(test_y)
    if len(np.unique(ytr)) < 2:
        raise ValueError("an SVM needs at least two classes in the training labels")
    if too_small_for_cv(ytr):
        clf = SVC(C=float("inf"), kernel="rbf", gamma="scale").fit(xtr, ytr)
        return {"accuracy": float((clf.predict(xte) == yte).mean()), "C": float("inf"), "cv_accuracy": None}
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=seed)
    search = GridSearchCV(SVC(kernel="rbf", gamma="scale"), {"C": list(SVM_C_GRID)}, cv=folds, n_jobs=1)
    search.fit(xtr, ytr)
    return {"accuracy": float((search.predict(xte) == yte).mean()), "C": float(search.best_params_["C"]),
            "cv_accuracy": float(search.best_score_)}


def svm_accuracy(train_z: Array, train_y: Array, test_z: Array, test_y: Array, seed: int = 0) -> float:
    """Just the test accuracy of :func:`svm_classify`."""
    return svm_classify(train_z, train_y, test_z, test_y, seed=seed)["accuracy"]


__all__ = ["SVM_C_GRID", "svm_classify", "svm_accuracy", "too_small_for_cv"]
