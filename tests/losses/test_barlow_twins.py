"""Barlow Twins loss (Zbontar et al. 2021, eq. 1-2) against hand-written loops."""
from __future__ import annotations

import math

import pytest
import torch

from multissl.losses import barlow_twins_loss


def _standardise_columns(z, eps):
    n, d = len(z), len(z[0])
    out = [[0.0] * d for _ in range(n)]
    for j in range(d):
        mean = sum(z[i][j] for i in range(n)) / n
        var = sum((z[i][j] - mean) ** 2 for i in range(n)) / n  # biased, as BatchNorm
        for i in range(n):
            out[i][j] = (z[i][j] - mean) / math.sqrt(var + eps)
    return out


def _barlow_by_hand(z1, z2, lam, eps=1e-5):
    a, b = _standardise_columns(z1, eps), _standardise_columns(z2, eps)
    n, d = len(z1), len(z1[0])
    loss = 0.0
    for i in range(d):
        for j in range(d):
            c = sum(a[k][i] * b[k][j] for k in range(n)) / n
            loss += (1 - c) ** 2 if i == j else lam * c**2
    return loss


def test_matches_hand_computation() -> None:
    z1 = [[1.0, 2.0], [-1.0, 0.5], [0.3, -2.0]]
    z2 = [[0.5, 1.0], [2.0, 1.0], [-1.0, -1.5]]
    for lam in (5e-3, 0.5):
        got = barlow_twins_loss(torch.tensor(z1), torch.tensor(z2), lambda_=lam)
        assert got.item() == pytest.approx(_barlow_by_hand(z1, z2, lam), rel=1e-5)


def test_identical_decorrelated_views_reach_the_minimum() -> None:
    # Columns are uncorrelated with equal variance: C = I / (1 + eps), loss ~ D * eps^2.
    z = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])
    assert barlow_twins_loss(z, z.clone()).item() == pytest.approx(0.0, abs=1e-8)


def test_invariant_to_per_dimension_affine_maps() -> None:
    z1, z2 = torch.randn(16, 4, dtype=torch.float64), torch.randn(16, 4, dtype=torch.float64)
    scale, shift = torch.tensor([2.0, 0.5, 3.0, 1.0], dtype=torch.float64), 7.0
    # eps = 0: the stabiliser is the only thing that is not scale-invariant
    a = barlow_twins_loss(z1, z2, eps=0.0).item()
    b = barlow_twins_loss(z1 * scale + shift, z2 * scale - shift, eps=0.0).item()
    assert b == pytest.approx(a, rel=1e-9)


def test_gradients_reach_both_views() -> None:
    z1 = torch.randn(8, 4, requires_grad=True)
    z2 = torch.randn(8, 4, requires_grad=True)
    barlow_twins_loss(z1, z2).backward()
    for z in (z1, z2):
        assert z.grad is not None and torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0


def test_float32_under_autocast() -> None:
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = barlow_twins_loss(torch.randn(8, 4).bfloat16(), torch.randn(8, 4).bfloat16())
    assert loss.dtype == torch.float32


def test_bad_input_raises() -> None:
    with pytest.raises(ValueError, match="at least 2 samples"):
        barlow_twins_loss(torch.randn(1, 4), torch.randn(1, 4))
    with pytest.raises(ValueError, match="same shape"):
        barlow_twins_loss(torch.randn(4, 4), torch.randn(4, 3))
    with pytest.raises(ValueError, match="lambda_"):
        barlow_twins_loss(torch.randn(4, 4), torch.randn(4, 4), lambda_=-1.0)
