"""NT-Xent (SimCLR, Chen et al. 2020, eq. 1) against hand-written loops."""
from __future__ import annotations

import math

import pytest
import torch

from multissl.losses import nt_xent_loss


def _cos(a, b):
    return sum(x * y for x, y in zip(a, b)) / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def _nt_xent_by_hand(z1, z2, tau):
    # Embeddings 0..N-1 are view 1, N..2N-1 view 2; the positive of k is k +/- N.
    n = len(z1)
    emb = z1 + z2
    total = 0.0
    for i in range(2 * n):
        j = (i + n) % (2 * n)
        denom = sum(math.exp(_cos(emb[i], emb[k]) / tau) for k in range(2 * n) if k != i)
        total += -math.log(math.exp(_cos(emb[i], emb[j]) / tau) / denom)
    return total / (2 * n)


def test_matches_hand_computation() -> None:
    z1 = [[1.0, 2.0], [-1.0, 0.5], [0.3, -2.0]]
    z2 = [[0.5, 1.0], [2.0, 1.0], [-1.0, -1.5]]
    for tau in (0.5, 0.1, 1.0):
        expected = _nt_xent_by_hand(z1, z2, tau)
        got = nt_xent_loss(torch.tensor(z1), torch.tensor(z2), temperature=tau)
        assert got.item() == pytest.approx(expected, rel=1e-5)


def test_identical_orthogonal_views_have_closed_form() -> None:
    # Positive similarity 1, every negative 0: loss = log(1 + (2N - 2) e^{-1/tau}).
    n, tau = 4, 0.5
    z = torch.eye(n)
    expected = math.log(1 + (2 * n - 2) * math.exp(-1 / tau))
    assert nt_xent_loss(z, z.clone(), tau).item() == pytest.approx(expected, rel=1e-6)


def test_invariant_to_embedding_scale() -> None:
    z1, z2 = torch.randn(5, 8), torch.randn(5, 8)
    assert nt_xent_loss(3.0 * z1, 0.1 * z2).item() == pytest.approx(nt_xent_loss(z1, z2).item(), rel=1e-5)


def test_gradients_reach_both_views() -> None:
    z1 = torch.randn(6, 4, requires_grad=True)
    z2 = torch.randn(6, 4, requires_grad=True)
    nt_xent_loss(z1, z2).backward()
    for z in (z1, z2):
        assert z.grad is not None and torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0


def test_gather_flag_is_a_no_op_in_one_process() -> None:
    z1, z2 = torch.randn(5, 3), torch.randn(5, 3)
    assert torch.equal(nt_xent_loss(z1, z2, gather_distributed=True), nt_xent_loss(z1, z2, gather_distributed=False))


def test_float32_under_autocast() -> None:
    z1, z2 = torch.randn(4, 8, dtype=torch.bfloat16), torch.randn(4, 8, dtype=torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert nt_xent_loss(z1, z2).dtype == torch.float32


@pytest.mark.parametrize(
    "z1, z2, match",
    [
        (torch.randn(4), torch.randn(4), r"shape \(batch, dim\)"),
        (torch.randn(4, 3, 2), torch.randn(4, 3, 2), r"shape \(batch, dim\)"),
        (torch.randn(4, 3), torch.randn(5, 3), "same shape"),
        (torch.randn(0, 3), torch.randn(0, 3), "empty"),
    ],
)
def test_bad_shapes_raise(z1: torch.Tensor, z2: torch.Tensor, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        nt_xent_loss(z1, z2)


def test_bad_temperature_raises() -> None:
    with pytest.raises(ValueError, match="temperature"):
        nt_xent_loss(torch.randn(2, 2), torch.randn(2, 2), temperature=0.0)
