"""Barlow Twins redundancy-reduction loss.

Reference: J. Zbontar, L. Jing, I. Misra, Y. LeCun, S. Deny, "Barlow Twins: Self-Supervised
Learning via Redundancy Reduction", ICML 2021, https://arxiv.org/abs/2103.03230 (eq. 1-2).
"""
from __future__ import annotations

import torch

from multissl.distributed import gather
from multissl.losses._common import check_global_batch, check_pair, full_precision, upcast


def _batch_standardise(z: torch.Tensor, eps: float) -> torch.Tensor:
    # Same as nn.BatchNorm1d(affine=False) in training mode (the paper's choice): biased
    # variance over the batch, eps inside the square root.
    return (z - z.mean(dim=0)) / torch.sqrt(z.var(dim=0, unbiased=False) + eps)


def barlow_twins_loss(
    z1: torch.Tensor,
    z2: torch.Tensor,
    lambda_: float = 5e-3,
    gather_distributed: bool = True,
    eps: float = 1e-5,
) -> torch.Tensor:
    """``sum_i (1 - C_ii)^2 + lambda * sum_{i != j} C_ij^2`` with ``C`` the cross-correlation.

    Each embedding dimension is standardised along the batch, then
    ``C = z1_std.T @ z2_std / N`` (D x D). The on-diagonal term makes the two views agree,
    the off-diagonal term decorrelates the dimensions (redundancy reduction).

    With ``gather_distributed`` the standardisation and ``C`` use the global batch gathered
    from every process, so every rank computes the identical global loss; the gradient is
    made correct by :func:`multissl.distributed.gather` (lightly issue #1977 was this loss
    reduced with a non-differentiable all_reduce, off by 1/world_size).

    Args:
        z1, z2: (B, D) projections of the two views (global batch of at least 2 samples).
        lambda_: weight of the off-diagonal term; the paper's 5e-3 (for D = 8192).
        gather_distributed: compute statistics over the global batch.
        eps: added to the variance before the square root (as nn.BatchNorm1d).

    Example::

        >>> z1, z2 = torch.randn(16, 64), torch.randn(16, 64)
        >>> loss = barlow_twins_loss(z1, z2, lambda_=5e-3)
    """
    check_pair("barlow_twins_loss", z1, z2)
    if lambda_ < 0:
        raise ValueError(f"barlow_twins_loss: lambda_ must be >= 0, got {lambda_}")
    with full_precision(z1):
        z1, z2 = upcast(z1), upcast(z2)
        if gather_distributed:
            z1, z2 = gather(z1), gather(z2)
        n = z1.shape[0]
        check_global_batch("barlow_twins_loss", n)
        c = _batch_standardise(z1, eps).T @ _batch_standardise(z2, eps) / n
        on_diag = torch.diagonal(c)
        on = (1.0 - on_diag).pow(2).sum()
        off = c.pow(2).sum() - on_diag.pow(2).sum()
        return on + lambda_ * off
