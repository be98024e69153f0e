"""TS2Vec's hierarchical contrastive loss over per-time-step representations.

Reference: Z. Yue, Y. Wang, J. Duan, T. Yang, C. Huang, Y. Tong, B. Xu, "TS2Vec: Towards
Universal Representation of Time Series", AAAI 2022, https://arxiv.org/abs/2106.10466
(section 3.3, eqs. 2-4 and Algorithm 1).

With ``r`` and ``r'`` the representations (B, T, D) of the same time steps in two views:

- temporal contrast (eq. 2), per series ``i`` and step ``t``: the positive of ``r_{i,t}`` is
  ``r'_{i,t}``; the negatives are every other step of both views of that series,
  ``-log exp(r_{i,t} . r'_{i,t}) / sum_{t'} (exp(r_{i,t} . r'_{i,t'}) + 1[t != t'] exp(r_{i,t} . r_{i,t'}))``;
- instance contrast (eq. 3), per step ``t`` and series ``i``: the positive is ``r'_{i,t}``, the
  negatives every other series of both views at that step;
- both averaged over anchors of both views, summed with weights ``alpha`` and ``1 - alpha``
  (eq. 4), then again after max pooling the time axis by 2, level after level until one step
  is left (where only the instance term applies); the total is divided by the number of levels.

Similarities are plain dot products (no normalisation, no temperature), as in the paper.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from multissl.losses._common import full_precision, upcast


def _paired_contrast(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean InfoNCE inside each of G groups of N paired items: ``a``, ``b`` (G, N, D); the
    positive of ``a[g, n]`` is ``b[g, n]`` (and vice versa), every other item of the group in
    either view is a negative. 0 when N == 1 (no negatives)."""
    n = a.shape[1]
    if n < 2:
        return a.new_zeros(())
    z = torch.cat([a, b], dim=1).contiguous()  # (G, 2N, D); contiguous: bmm on strided views is slow
    sim = z @ z.transpose(1, 2)  # (G, 2N, 2N)
    eye = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    logp = F.log_softmax(sim.masked_fill(eye, float("-inf")), dim=-1)
    i = torch.arange(n, device=z.device)
    return -(logp[:, i, n + i].mean() + logp[:, n + i, i].mean()) / 2


def instance_contrastive_loss(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """Eq. 3: at every time step, series contrasted against the other series of the batch."""
    return _paired_contrast(z1.transpose(0, 1), z2.transpose(0, 1))


def temporal_contrastive_loss(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """Eq. 2: within every series, a time step contrasted against its other time steps."""
    return _paired_contrast(z1, z2)


def hierarchical_contrastive_loss(z1: torch.Tensor, z2: torch.Tensor, alpha: float = 0.5,
                                  temporal_unit: int = 0) -> torch.Tensor:
    """TS2Vec's loss of two aligned views ``z1``, ``z2`` (B, T, D) of the same steps.

    Args:
        alpha: weight of the instance term (1 - alpha: temporal term); 0.5 in the paper.
        temporal_unit: skip the temporal term on the first ``temporal_unit`` levels (0: none).

    Example::

        >>> z1, z2 = torch.randn(8, 32, 16), torch.randn(8, 32, 16)
        >>> loss = hierarchical_contrastive_loss(z1, z2)
    """
    if z1.shape != z2.shape or z1.ndim != 3:
        raise ValueError(f"hierarchical_contrastive_loss needs two (B, T, D) tensors of one shape, "
                         f"got {tuple(z1.shape)} and {tuple(z2.shape)}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    with full_precision(z1):
        z1, z2 = upcast(z1), upcast(z2)
        loss = z1.new_zeros(())
        level = 0
        while z1.shape[1] > 1:
            if alpha > 0:
                loss = loss + alpha * instance_contrastive_loss(z1, z2)
            if level >= temporal_unit and alpha < 1:
                loss = loss + (1 - alpha) * temporal_contrastive_loss(z1, z2)
            level += 1
            z1 = F.max_pool1d(z1.transpose(1, 2), kernel_size=2).transpose(1, 2)
            z2 = F.max_pool1d(z2.transpose(1, 2), kernel_size=2).transpose(1, 2)
        if alpha > 0:
            loss = loss + alpha * instance_contrastive_loss(z1, z2)
        level += 1
        return loss / level
