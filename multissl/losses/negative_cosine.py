"""Negative cosine similarity with a stop-gradient on the target (BYOL, SimSiam).

References:
    J.-B. Grill et al., "Bootstrap Your Own Latent: A New Approach to Self-Supervised
    Learning", NeurIPS 2020, https://arxiv.org/abs/2006.07733 (eq. 2).
    X. Chen, K. He, "Exploring Simple Siamese Representation Learning", CVPR 2021,
    https://arxiv.org/abs/2011.10566 (eq. 1-3).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from multissl.losses._common import check_pair, full_precision, upcast


def negative_cosine_loss(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """``-mean_i cos(p_i, stopgrad(z_i))``, in [-1, 1] (-1: prediction matches the target).

    SimSiam's ``D(p, z)`` exactly. BYOL writes its loss as ``||p/|p| - z/|z|||^2 = 2 - 2 cos``;
    that is the same objective up to an affine map (same minimiser, gradient scaled by 2).
    The target ``z`` is detached here, so no gradient can reach the target branch -- this
    stop-gradient is what keeps SimSiam from collapsing. Per-sample loss: under DDP the mean
    of the per-rank values is the global loss and no gather is needed.

    Args:
        p: (B, D) predictions of the online branch.
        z: (B, D) targets (other view's projection, or the EMA teacher's).

    Example (symmetrised as in both papers)::

        >>> p1, p2, z1, z2 = (torch.randn(8, 32) for _ in range(4))
        >>> loss = 0.5 * (negative_cosine_loss(p1, z2) + negative_cosine_loss(p2, z1))
    """
    check_pair("negative_cosine_loss", p, z, names="p, z")
    with full_precision(p):
        return -F.cosine_similarity(upcast(p), upcast(z.detach()), dim=1).mean()
