"""MoCo v3 InfoNCE (Chen, Xie & He 2021, Algorithm 1) against hand-written loops."""
from __future__ import annotations

import math

import pytest
import torch

from multissl.losses import info_nce_loss


def _cos(a, b):
    return sum(x * y for x, y in zip(a, b)) / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def _info_nce_by_hand(q, k, tau):
    total = 0.0
    for i in range(len(q)):
        denom = sum(math.exp(_cos(q[i], k[j]) / tau) for j in range(len(k)))
        total += -math.log(math.exp(_cos(q[i], k[i]) / tau) / denom)
    return 2 * tau * total / len(q)  # MoCo v3 scales the cross-entropy by 2 * tau


def test_matches_hand_computation() -> None:
    q = [[1.0, 0.0], [0.6, 0.8], [-1.0, 2.0]]
    k = [[0.8, 0.6], [0.0, 1.0], [-0.5, 1.5]]
    for tau in (0.2, 1.0):
        got = info_nce_loss(torch.tensor(q), torch.tensor(k), temperature=tau)
        assert got.item() == pytest.approx(_info_nce_by_hand(q, k, tau), rel=1e-5)


def test_orthogonal_matching_keys_have_closed_form() -> None:
    n, tau = 3, 0.2
    eye = torch.eye(n)
    expected = 2 * tau * math.log(1 + (n - 1) * math.exp(-1 / tau))
    assert info_nce_loss(eye, eye.clone(), tau).item() == pytest.approx(expected, rel=1e-6)


def test_symmetric_use_and_gradients() -> None:
    q1, q2 = torch.randn(5, 4, requires_grad=True), torch.randn(5, 4, requires_grad=True)
    k1, k2 = torch.randn(5, 4), torch.randn(5, 4)
    loss = info_nce_loss(q1, k2) + info_nce_loss(q2, k1)
    loss.backward()
    assert q1.grad is not None and q2.grad is not None
    assert torch.isfinite(q1.grad).all() and q1.grad.abs().sum() > 0


def test_keys_with_gradients_receive_them() -> None:
    q, k = torch.randn(4, 3, requires_grad=True), torch.randn(4, 3, requires_grad=True)
    info_nce_loss(q, k).backward()
    assert k.grad is not None and k.grad.abs().sum() > 0


def test_bad_input_raises() -> None:
    with pytest.raises(ValueError, match="q and k must have the same shape"):
        info_nce_loss(torch.randn(4, 3), torch.randn(4, 2))
    with pytest.raises(ValueError, match=r"k must have shape \(batch, dim\)"):
        info_nce_loss(torch.randn(4, 3), torch.randn(4))
    with pytest.raises(ValueError, match="temperature"):
        info_nce_loss(torch.randn(4, 3), torch.randn(4, 3), temperature=-1.0)
