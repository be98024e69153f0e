"""VIbCReg loss (Lee & Aune 2021, sec. 3): weights 25/25/200, normalised covariance."""
from __future__ import annotations

import math

import pytest
import torch

from multissl.losses import normalised_covariance_penalty, vibcreg_loss, vibcreg_terms


def _variance_by_hand(z, gamma=1.0, eps=1e-4):
    n, d = len(z), len(z[0])
    total = 0.0
    for j in range(d):
        mean = sum(z[i][j] for i in range(n)) / n
        var = sum((z[i][j] - mean) ** 2 for i in range(n)) / (n - 1)
        total += max(0.0, gamma - math.sqrt(var + eps))
    return total / d


def _normalised_cov_by_hand(z):
    # Centre each column, divide it by its L2 norm, C = Zhat^T Zhat, mean of squared
    # off-diagonal entries over all d^2 entries.
    n, d = len(z), len(z[0])
    cols = []
    for j in range(d):
        mean = sum(z[i][j] for i in range(n)) / n
        centred = [z[i][j] - mean for i in range(n)]
        norm = math.sqrt(sum(v * v for v in centred))
        cols.append([v / norm for v in centred])
    total = 0.0
    for a in range(d):
        for b in range(d):
            if a != b:
                total += sum(cols[a][i] * cols[b][i] for i in range(n)) ** 2
    return total / d**2


def _vibcreg_by_hand(z1, z2, lam=25.0, mu=25.0, nu=200.0):
    n, d = len(z1), len(z1[0])
    inv = sum((z1[i][j] - z2[i][j]) ** 2 for i in range(n) for j in range(d)) / (n * d)
    var = _variance_by_hand(z1) + _variance_by_hand(z2)  # summed over branches, not averaged
    cov = _normalised_cov_by_hand(z1) + _normalised_cov_by_hand(z2)
    return lam * inv + mu * var + nu * cov, (inv, var, cov)


Z1 = [[1.0, 2.0], [-1.0, 0.5], [0.3, -2.0]]
Z2 = [[0.5, 1.0], [2.0, 1.0], [-1.0, -1.5]]
SMALL = [[0.1, 0.2], [0.3, -0.1], [-0.2, 0.05]]


@pytest.mark.parametrize("z1, z2", [(Z1, Z2), (SMALL, Z1)])
def test_matches_hand_computation(z1, z2) -> None:
    expected, (inv, var, cov) = _vibcreg_by_hand(z1, z2)
    t1, t2 = torch.tensor(z1), torch.tensor(z2)
    assert vibcreg_loss(t1, t2).item() == pytest.approx(expected, rel=1e-5)
    terms = vibcreg_terms(t1, t2)
    assert terms.invariance.item() == pytest.approx(inv, rel=1e-5)
    assert terms.variance.item() == pytest.approx(var, rel=1e-5, abs=1e-7)
    assert terms.covariance.item() == pytest.approx(cov, rel=1e-5)


def test_perfectly_correlated_dimensions() -> None:
    # Column 1 = 2 * column 0: C_01 = C_10 = 1, so c = 2 / d^2 = 0.5.
    x = torch.tensor([[1.0], [2.0], [4.0]])
    z = torch.cat([x, 2 * x], dim=1)
    assert normalised_covariance_penalty(z).item() == pytest.approx(0.5, rel=1e-6)
    assert normalised_covariance_penalty(torch.cat([x, -3 * x + 1], dim=1)).item() == pytest.approx(0.5, rel=1e-6)


def test_covariance_term_ignores_scale() -> None:
    # The point of the normalised term: unlike VICReg's, it does not grow with the scale.
    z = torch.randn(32, 6, dtype=torch.float64)
    scale = torch.tensor([1.0, 10.0, 0.1, 3.0, 7.0, 0.5], dtype=torch.float64)
    assert normalised_covariance_penalty(z * scale).item() == pytest.approx(normalised_covariance_penalty(z).item(), rel=1e-9)


def test_collapsed_embeddings() -> None:
    z = torch.ones(6, 4)  # variance hinge 0.99 per branch, zero (not NaN) correlation term
    loss = vibcreg_loss(z, z.clone())
    assert loss.item() == pytest.approx(25.0 * 2 * 0.99, rel=1e-6)


def test_gradients_reach_both_views() -> None:
    z1 = torch.randn(8, 4, requires_grad=True)
    z2 = torch.randn(8, 4, requires_grad=True)
    vibcreg_loss(z1, z2).backward()
    for z in (z1, z2):
        assert z.grad is not None and torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0


def test_bad_input_raises() -> None:
    with pytest.raises(ValueError, match="at least 2 samples"):
        vibcreg_loss(torch.randn(1, 4), torch.randn(1, 4))
    with pytest.raises(ValueError, match="same shape"):
        vibcreg_loss(torch.randn(4, 4), torch.randn(4, 3))
