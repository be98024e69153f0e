"""T-Loss (Franceschi et al. 2019, eq. 1): triplet loss with sub-series positives."""
from __future__ import annotations

import math

import pytest
import torch

from multissl.losses import subseries_triplet_loss


def _log_sigmoid(v: float) -> float:
    return -math.log1p(math.exp(-v))


def test_matches_hand_computation() -> None:
    ref = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    pos = torch.tensor([[2.0, 0.0], [0.0, 1.0]])            # dots 2, 2
    neg = torch.tensor([[[1.0, 1.0], [1.0, -1.0]],           # k = 0: dots 1, -2
                        [[-1.0, 0.0], [0.0, 0.5]]])          # k = 1: dots -1, 1
    positive = -(_log_sigmoid(2.0) + _log_sigmoid(2.0)) / 2
    neg0 = -(_log_sigmoid(-1.0) + _log_sigmoid(2.0)) / 2
    neg1 = -(_log_sigmoid(1.0) + _log_sigmoid(-1.0)) / 2
    # eq. (1) as printed: the negatives summed
    assert subseries_triplet_loss(ref, pos, neg, average_negatives=False).item() == pytest.approx(
        positive + neg0 + neg1, rel=1e-6)
    # the authors' code: the negatives' sum divided by K
    assert subseries_triplet_loss(ref, pos, neg).item() == pytest.approx(positive + (neg0 + neg1) / 2, rel=1e-6)


def test_lower_when_positives_agree_and_negatives_disagree() -> None:
    ref = 2 * torch.nn.functional.normalize(torch.randn(6, 4, generator=torch.Generator().manual_seed(0)), dim=1)
    good = subseries_triplet_loss(ref, 3 * ref, -3 * ref.unsqueeze(0).expand(5, -1, -1))
    bad = subseries_triplet_loss(ref, -3 * ref, 3 * ref.unsqueeze(0).expand(5, -1, -1))
    assert good.item() < 0.1 < bad.item()


def test_gradient_flows_to_every_input() -> None:
    ref, pos, neg = (torch.randn(*s, requires_grad=True) for s in ((4, 3), (4, 3), (2, 4, 3)))
    subseries_triplet_loss(ref, pos, neg).backward()
    assert all(t.grad is not None and t.grad.abs().sum() > 0 for t in (ref, pos, neg))


def test_float32_under_reduced_precision() -> None:
    ref, pos, neg = torch.randn(4, 3).bfloat16(), torch.randn(4, 3).bfloat16(), torch.randn(2, 4, 3).bfloat16()
    assert subseries_triplet_loss(ref, pos, neg).dtype == torch.float32


def test_bad_shapes_raise() -> None:
    with pytest.raises(ValueError, match=r"\(K, B, D\)"):
        subseries_triplet_loss(torch.randn(4, 3), torch.randn(4, 3), torch.randn(4, 3))
