"""Weighted k-nearest-neighbour classification on embeddings.

The protocol of Wu et al. 2018 ("Unsupervised Feature Learning via Non-Parametric Instance
Discrimination"), used by lightly and solo-learn as the online monitor: cosine similarity to
the training embeddings, the top-k neighbours vote with weight ``exp(sim / temperature)``.

    >>> acc = knn_accuracy(z_train, y_train, z_test, y_test, k=20, temperature=0.1)
"""
from __future__ import annotations

from typing import Union

import numpy as np
import torch
import torch.nn.functional as F

Array = Union[np.ndarray, torch.Tensor]


def _t(x: Array, dtype: torch.dtype) -> torch.Tensor:
    return x.to(dtype) if torch.is_tensor(x) else torch.as_tensor(np.asarray(x), dtype=dtype)


@torch.no_grad()
def knn_predict(train_z: Array, train_y: Array, test_z: Array, k: int = 20, temperature: float = 0.1,
                chunk: int = 1024) -> torch.Tensor:
    """Predicted labels (M,) for ``test_z`` (M, D) from ``train_z`` (N, D) and labels (N,)."""
    train = F.normalize(_t(train_z, torch.float32), dim=1)
    test = F.normalize(_t(test_z, torch.float32), dim=1)
    labels = _t(train_y, torch.long)
    if train.shape[0] != labels.shape[0]:
        raise ValueError(f"train_z has {train.shape[0]} rows but train_y has {labels.shape[0]}")
    num_classes = int(labels.max()) + 1
    k = min(k, train.shape[0])
    preds = []
    for start in range(0, test.shape[0], chunk):
        sim = test[start:start + chunk] @ train.T
        top_sim, top_idx = sim.topk(k, dim=1)
        weights = (top_sim / temperature).exp()
        votes = torch.zeros(sim.shape[0], num_classes)
        votes.scatter_add_(1, labels[top_idx], weights)
        preds.append(votes.argmax(dim=1))
    return torch.cat(preds) if preds else torch.empty(0, dtype=torch.long)


def knn_accuracy(train_z: Array, train_y: Array, test_z: Array, test_y: Array, k: int = 20,
                 temperature: float = 0.1) -> float:
    pred = knn_predict(train_z, train_y, test_z, k=k, temperature=temperature)
    return float((pred == _t(test_y, torch.long)).float().mean())
