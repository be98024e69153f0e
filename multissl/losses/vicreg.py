"""VICReg: variance-invariance-covariance regularisation.

Reference: A. Bardes, J. Ponce, Y. LeCun, "VICReg: Variance-Invariance-Covariance
Regularization for Self-Supervised Learning", ICLR 2022, https://arxiv.org/abs/2105.04906
(eq. 1-6 and Algorithm 1; official code facebookresearch/vicreg).
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from multissl.distributed import gather
from multissl.losses._common import check_global_batch, check_pair, full_precision, upcast


class RegularisationTerms(NamedTuple):
    """The three terms of a VICReg-style loss (unweighted), for logging and weighting."""

    invariance: torch.Tensor
    variance: torch.Tensor
    covariance: torch.Tensor

    def total(self, sim_weight: float, var_weight: float, cov_weight: float) -> torch.Tensor:
        return sim_weight * self.invariance + var_weight * self.variance + cov_weight * self.covariance


def variance_hinge(z: torch.Tensor, gamma: float = 1.0, eps: float = 1e-4) -> torch.Tensor:
    """``mean_j relu(gamma - sqrt(Var(z_j) + eps))`` over the D dimensions (unbiased variance).

    Keeps every dimension's standard deviation at ``gamma`` or above, which rules out the
    collapse to a constant embedding; ``eps`` keeps the square root's gradient finite.
    """
    std = torch.sqrt(z.var(dim=0) + eps)
    return F.relu(gamma - std).mean()


def _off_diagonal_squared_sum(m: torch.Tensor) -> torch.Tensor:
    return m.pow(2).sum() - torch.diagonal(m).pow(2).sum()


def vicreg_terms(
    z1: torch.Tensor,
    z2: torch.Tensor,
    gamma: float = 1.0,
    eps: float = 1e-4,
    gather_distributed: bool = True,
) -> RegularisationTerms:
    """Unweighted VICReg terms; see :func:`vicreg_loss`."""
    check_pair("vicreg_loss", z1, z2)
    with full_precision(z1):
        z1, z2 = upcast(z1), upcast(z2)
        # Invariance is per sample: the local mean, averaged over ranks by DDP, is global.
        invariance = F.mse_loss(z1, z2)
        if gather_distributed:
            z1, z2 = gather(z1), gather(z2)
        n, d = z1.shape
        check_global_batch("vicreg_loss", n)
        # The official code halves the variance term (mean of the two branches) but sums the
        # covariance terms; the weights 25/25/1 were tuned with exactly that form.
        variance = 0.5 * (variance_hinge(z1, gamma, eps) + variance_hinge(z2, gamma, eps))
        covariance = z1.new_zeros(())
        for z in (z1, z2):
            zc = z - z.mean(dim=0)
            cov = zc.T @ zc / (n - 1)
            covariance = covariance + _off_diagonal_squared_sum(cov) / d
        return RegularisationTerms(invariance, variance, covariance)


def vicreg_loss(
    z1: torch.Tensor,
    z2: torch.Tensor,
    sim_weight: float = 25.0,
    var_weight: float = 25.0,
    cov_weight: float = 1.0,
    gamma: float = 1.0,
    eps: float = 1e-4,
    gather_distributed: bool = True,
) -> torch.Tensor:
    """VICReg loss ``sim_weight * s + var_weight * v + cov_weight * c``.

    * invariance ``s``: mean squared error between the two views' embeddings;
    * variance ``v``: hinge ``relu(gamma - sqrt(Var + eps))`` on each dimension's standard
      deviation, averaged over dimensions and over the two branches;
    * covariance ``c``: sum of the squared off-diagonal entries of each branch's covariance
      matrix, divided by D, summed over the two branches.

    With ``gather_distributed`` the variance and covariance use the global batch gathered from
    every process (as the official implementation); the invariance term stays local.

    Args:
        z1, z2: (B, D) expander outputs of the two views.
        sim_weight, var_weight, cov_weight: the paper's lambda, mu, nu (25, 25, 1).
        gamma: target standard deviation (1).
        eps: numerical stabiliser inside the square root (1e-4).
        gather_distributed: variance/covariance over the global batch.

    Example::

        >>> z1, z2 = torch.randn(16, 64), torch.randn(16, 64)
        >>> loss = vicreg_loss(z1, z2)
    """
    return vicreg_terms(z1, z2, gamma, eps, gather_distributed).total(sim_weight, var_weight, cov_weight)
