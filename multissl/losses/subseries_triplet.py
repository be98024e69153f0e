"""T-Loss: the triplet loss with time-based negative sampling of Franceschi et al.

Reference: J.-Y. Franceschi, A. Dieuleveut, M. Jaggi, "Unsupervised Scalable Representation
Learning for Multivariate Time Series", NeurIPS 2019, https://arxiv.org/abs/1901.10738, eq. (1):

    L = -log σ(f(x_ref)ᵀ f(x_pos)) - Σ_k log σ(-f(x_ref)ᵀ f(x_neg_k))

``x_pos`` is a sub-series of ``x_ref`` (so their representations should agree) and the ``K``
``x_neg_k`` are sub-series of other series. The representations are compared by a plain dot
product (no normalisation, no temperature). ``average_negatives`` (default True) divides the
negatives' sum by ``K``, as the authors' released code does (``negative_penalty / K``, penalty
1); False gives eq. (1) as printed. Each term is averaged over the batch.

Sampling the sub-series is the method's job (:mod:`multissl.methods.tloss`); the loss only sees
the representations. Computed in float32 even under autocast. Negatives come from the series
of the local batch, so no gathering across processes is needed: each process's loss is the
mean of its own series' terms and DDP's gradient average is the mean over the global batch.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def subseries_triplet_loss(ref: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor,
                           average_negatives: bool = True) -> torch.Tensor:
    """``ref``, ``pos``: (B, D) representations of the anchors and their sub-series; ``neg``:
    (K, B, D), negative ``k`` of anchor ``b`` at ``neg[k, b]``. Returns a scalar."""
    if ref.ndim != 2 or pos.shape != ref.shape or neg.ndim != 3 or neg.shape[1:] != ref.shape:
        raise ValueError(f"subseries_triplet_loss: ref and pos must be (B, D) and neg (K, B, D); got "
                         f"{tuple(ref.shape)}, {tuple(pos.shape)}, {tuple(neg.shape)}")
    ref, pos, neg = ref.float(), pos.float(), neg.float()
    positive = -F.logsigmoid((ref * pos).sum(-1)).mean()
    negatives = -F.logsigmoid(-(ref.unsqueeze(0) * neg).sum(-1)).mean(1)  # (K,): each averaged over the batch
    weight = 1.0 / neg.shape[0] if average_negatives else 1.0
    return positive + weight * negatives.sum()


__all__ = ["subseries_triplet_loss"]
