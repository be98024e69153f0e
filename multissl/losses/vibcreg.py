"""VIbCReg: variance-invariance-better-covariance regularisation.

Reference: D. Lee, E. Aune, "Computer Vision Self-Supervised Learning Methods on Time Series"
(first version: "VIbCReg: Variance-Invariance-better-Covariance Regularization for
Self-Supervised Learning on Time Series"), 2021, https://arxiv.org/abs/2109.00783
(sec. 3; official code ML4ITS/vibcreg).

VIbCReg is VICReg with two changes: the projector ends in IterNorm whitening
(:class:`multissl.iternorm.IterNorm`, see :class:`multissl.heads.VIbCRegProjectionHead`), and
the covariance term penalises the *normalised* covariance (a correlation-like matrix with
entries in [-1, 1]), so its scale no longer depends on the embedding's magnitude or dimension.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from multissl.distributed import gather
from multissl.losses._common import check_global_batch, check_pair, full_precision, upcast
from multissl.losses.vicreg import RegularisationTerms, variance_hinge


def normalised_covariance_penalty(z: torch.Tensor) -> torch.Tensor:
    """``c(Z) = 1/D^2 * sum_{i != j} C_ij^2`` with ``C = Zhat.T @ Zhat``.

    ``Zhat`` is ``Z`` centred along the batch and each column divided by its L2 norm, so
    ``C`` is the matrix of Pearson correlations between the dimensions.
    """
    d = z.shape[1]
    zhat = F.normalize(z - z.mean(dim=0), p=2, dim=0)
    c = zhat.T @ zhat
    off = c.pow(2).sum() - torch.diagonal(c).pow(2).sum()
    return off / (d * d)


def vibcreg_terms(
    z1: torch.Tensor,
    z2: torch.Tensor,
    gamma: float = 1.0,
    eps: float = 1e-4,
    gather_distributed: bool = True,
) -> RegularisationTerms:
    """Unweighted VIbCReg terms; see :func:`vibcreg_loss`."""
    check_pair("vibcreg_loss", z1, z2)
    with full_precision(z1):
        z1, z2 = upcast(z1), upcast(z2)
        invariance = F.mse_loss(z1, z2)  # per sample: local mean, averaged over ranks by DDP
        if gather_distributed:
            z1, z2 = gather(z1), gather(z2)
        check_global_batch("vibcreg_loss", z1.shape[0])
        # Unlike the official VICReg code, the paper and code of VIbCReg *sum* the two
        # branches' variance terms: l = lambda*s + mu*[v(Z)+v(Z')] + nu*[c(Z)+c(Z')].
        variance = variance_hinge(z1, gamma, eps) + variance_hinge(z2, gamma, eps)
        covariance = normalised_covariance_penalty(z1) + normalised_covariance_penalty(z2)
        return RegularisationTerms(invariance, variance, covariance)


def vibcreg_loss(
    z1: torch.Tensor,
    z2: torch.Tensor,
    sim_weight: float = 25.0,
    var_weight: float = 25.0,
    cov_weight: float = 200.0,
    gamma: float = 1.0,
    eps: float = 1e-4,
    gather_distributed: bool = True,
) -> torch.Tensor:
    """VIbCReg loss ``lambda * s + mu * [v(Z) + v(Z')] + nu * [c(Z) + c(Z')]``.

    * ``s``: mean squared error between the views (invariance);
    * ``v``: VICReg's variance hinge ``mean_j relu(gamma - sqrt(Var(Z_j) + eps))`` per branch;
    * ``c``: :func:`normalised_covariance_penalty`, the mean of the squared off-diagonal
      correlations (over all D^2 entries).

    Defaults are the paper's ``lambda = mu = 25``, ``nu = 200``, ``gamma = 1``, ``eps = 1e-4``.
    With ``gather_distributed`` the variance and covariance use the global batch.

    Args:
        z1, z2: (B, D) IterNorm-whitened projections of the two views.

    Example::

        >>> z1, z2 = torch.randn(16, 64), torch.randn(16, 64)
        >>> loss = vibcreg_loss(z1, z2)
    """
    return vibcreg_terms(z1, z2, gamma, eps, gather_distributed).total(sim_weight, var_weight, cov_weight)
