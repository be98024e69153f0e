"""VICReg loss (Bardes et al. 2022, eq. 1-6, official code's term weighting) against loops."""
from __future__ import annotations

import math

import pytest
import torch

from multissl.losses import vicreg_loss, vicreg_terms


def _variance_by_hand(z, gamma=1.0, eps=1e-4):
    n, d = len(z), len(z[0])
    total = 0.0
    for j in range(d):
        mean = sum(z[i][j] for i in range(n)) / n
        var = sum((z[i][j] - mean) ** 2 for i in range(n)) / (n - 1)
        total += max(0.0, gamma - math.sqrt(var + eps))
    return total / d


def _covariance_by_hand(z):
    n, d = len(z), len(z[0])
    means = [sum(z[i][j] for i in range(n)) / n for j in range(d)]
    total = 0.0
    for a in range(d):
        for b in range(d):
            if a != b:
                cov = sum((z[i][a] - means[a]) * (z[i][b] - means[b]) for i in range(n)) / (n - 1)
                total += cov**2
    return total / d


def _vicreg_by_hand(z1, z2, lam=25.0, mu=25.0, nu=1.0):
    n, d = len(z1), len(z1[0])
    inv = sum((z1[i][j] - z2[i][j]) ** 2 for i in range(n) for j in range(d)) / (n * d)
    var = 0.5 * (_variance_by_hand(z1) + _variance_by_hand(z2))
    cov = _covariance_by_hand(z1) + _covariance_by_hand(z2)
    return lam * inv + mu * var + nu * cov, (inv, var, cov)


Z1 = [[1.0, 2.0], [-1.0, 0.5], [0.3, -2.0]]
Z2 = [[0.5, 1.0], [2.0, 1.0], [-1.0, -1.5]]
SMALL = [[0.1, 0.2], [0.3, -0.1], [-0.2, 0.05]]  # std < 1: the variance hinge is active


@pytest.mark.parametrize("z1, z2", [(Z1, Z2), (SMALL, Z1)])
def test_matches_hand_computation(z1, z2) -> None:
    expected, (inv, var, cov) = _vicreg_by_hand(z1, z2)
    t1, t2 = torch.tensor(z1), torch.tensor(z2)
    assert vicreg_loss(t1, t2).item() == pytest.approx(expected, rel=1e-5)
    terms = vicreg_terms(t1, t2)
    assert terms.invariance.item() == pytest.approx(inv, rel=1e-5)
    assert terms.variance.item() == pytest.approx(var, rel=1e-5, abs=1e-7)
    assert terms.covariance.item() == pytest.approx(cov, rel=1e-5)
    weighted, _ = _vicreg_by_hand(z1, z2, 1.0, 2.0, 3.0)
    assert vicreg_loss(t1, t2, 1.0, 2.0, 3.0).item() == pytest.approx(weighted, rel=1e-5)


def test_identical_decorrelated_views_with_unit_std_give_zero() -> None:
    z = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])  # std = sqrt(4/3) > 1
    assert vicreg_loss(z, z.clone()).item() == pytest.approx(0.0, abs=1e-7)


def test_collapsed_embeddings_pay_the_variance_hinge() -> None:
    z = torch.ones(6, 3)  # std 0 -> hinge 1 - sqrt(eps) = 0.99 on every dim
    assert vicreg_loss(z, z.clone()).item() == pytest.approx(25.0 * 0.99, rel=1e-6)


def test_gradients_reach_both_views() -> None:
    z1 = torch.randn(8, 4, requires_grad=True)
    z2 = torch.randn(8, 4, requires_grad=True)
    vicreg_loss(0.1 * z1, 0.1 * z2).backward()
    for z in (z1, z2):
        assert z.grad is not None and torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0


def test_bad_input_raises() -> None:
    with pytest.raises(ValueError, match="at least 2 samples"):
        vicreg_loss(torch.randn(1, 4), torch.randn(1, 4))
    with pytest.raises(ValueError, match="same shape"):
        vicreg_loss(torch.randn(4, 4), torch.randn(5, 4))
    with pytest.raises(ValueError, match=r"\(batch, dim\)"):
        vicreg_loss(torch.randn(4), torch.randn(4))
