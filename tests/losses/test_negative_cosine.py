"""Negative cosine similarity with stop-gradient (BYOL, Grill et al. 2020; SimSiam, Chen & He 2021)."""
from __future__ import annotations

import math

import pytest
import torch

from multissl.losses import negative_cosine_loss


def test_matches_hand_computation() -> None:
    p = [[1.0, 0.0], [1.0, 1.0], [3.0, 4.0]]
    z = [[0.0, 2.0], [2.0, 2.0], [4.0, 3.0]]
    # cosines: 0, 1, (12 + 12) / 25
    expected = -(0.0 + 1.0 + 24.0 / 25.0) / 3
    assert negative_cosine_loss(torch.tensor(p), torch.tensor(z)).item() == pytest.approx(expected, rel=1e-6)


def test_known_values() -> None:
    p = torch.randn(4, 6)
    assert negative_cosine_loss(p, 2.0 * p).item() == pytest.approx(-1.0, abs=1e-6)
    assert negative_cosine_loss(p, -p).item() == pytest.approx(1.0, abs=1e-6)
    e = torch.eye(4)
    assert negative_cosine_loss(e, e.roll(1, dims=1)).item() == pytest.approx(0.0, abs=1e-7)


def test_stop_gradient_on_target() -> None:
    p = torch.randn(5, 3, requires_grad=True)
    z = torch.randn(5, 3, requires_grad=True)
    negative_cosine_loss(p, z).backward()
    assert p.grad is not None and p.grad.abs().sum() > 0
    assert z.grad is None


def test_gradient_matches_formula() -> None:
    # d/dp of -cos(p, z) for a single pair: -(z/|z| - cos * p/|p|) / |p|
    p = torch.tensor([[3.0, 4.0]], requires_grad=True)
    z = torch.tensor([[1.0, 0.0]])
    negative_cosine_loss(p, z).backward()
    cos = 3.0 / 5.0
    expected = [-(1.0 - cos * 3.0 / 5.0) / 5.0, -(0.0 - cos * 4.0 / 5.0) / 5.0]
    assert p.grad[0].tolist() == pytest.approx(expected, rel=1e-5)
    assert math.isfinite(p.grad.sum().item())


def test_bad_input_raises() -> None:
    with pytest.raises(ValueError, match="p and z must have the same shape"):
        negative_cosine_loss(torch.randn(4, 3), torch.randn(3, 3))
    with pytest.raises(TypeError, match="torch.Tensor"):
        negative_cosine_loss([[1.0]], torch.randn(1, 1))
