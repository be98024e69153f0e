"""TS2Vec's hierarchical contrastive loss (Yue et al. 2022, eqs. 2-4) against hand-written loops."""
from __future__ import annotations

import math

import pytest
import torch

from multissl.losses import hierarchical_contrastive_loss
from multissl.losses.hierarchical_contrastive import instance_contrastive_loss, temporal_contrastive_loss


def _dot(a, b):
    return sum(x * y for x, y in zip(a, b))


def _temporal_by_hand(r, rp):
    """Eq. 2 for every series i and step t, both views as anchors, averaged."""
    b, t = len(r), len(r[0])
    total, count = 0.0, 0
    for i in range(b):
        for a, other in ((r[i], rp[i]), (rp[i], r[i])):
            for s in range(t):
                num = math.exp(_dot(a[s], other[s]))
                den = sum(math.exp(_dot(a[s], other[u])) + (u != s) * math.exp(_dot(a[s], a[u])) for u in range(t))
                total += -math.log(num / den)
                count += 1
    return total / count


def _instance_by_hand(r, rp):
    """Eq. 3 for every step t and series i, both views as anchors, averaged."""
    b, t = len(r), len(r[0])
    total, count = 0.0, 0
    for s in range(t):
        for i in range(b):
            for a, other in ((r, rp), (rp, r)):
                num = math.exp(_dot(a[i][s], other[i][s]))
                den = sum(math.exp(_dot(a[i][s], other[j][s])) + (j != i) * math.exp(_dot(a[i][s], a[j][s]))
                          for j in range(b))
                total += -math.log(num / den)
                count += 1
    return total / count


def _maxpool(r):
    return [[[max(a, b) for a, b in zip(seq[2 * k], seq[2 * k + 1])] for k in range(len(seq) // 2)] for seq in r]


def _hierarchical_by_hand(r, rp, alpha):
    total, levels = 0.0, 0
    while len(r[0]) > 1:
        total += alpha * _instance_by_hand(r, rp) + (1 - alpha) * _temporal_by_hand(r, rp)
        levels += 1
        r, rp = _maxpool(r), _maxpool(rp)
    total += alpha * _instance_by_hand(r, rp)
    return total / (levels + 1)


@pytest.fixture()
def pair():
    g = torch.Generator().manual_seed(0)
    return torch.randn(3, 4, 2, generator=g) * 0.7, torch.randn(3, 4, 2, generator=g) * 0.7


def test_temporal_and_instance_terms_match_the_paper(pair):
    z1, z2 = pair
    assert temporal_contrastive_loss(z1, z2).item() == pytest.approx(_temporal_by_hand(z1.tolist(), z2.tolist()), rel=1e-5)
    assert instance_contrastive_loss(z1, z2).item() == pytest.approx(_instance_by_hand(z1.tolist(), z2.tolist()), rel=1e-5)


@pytest.mark.parametrize("alpha", [0.5, 0.0, 1.0, 0.3])
def test_hierarchical_loss_matches_the_paper(pair, alpha):
    z1, z2 = pair
    expected = _hierarchical_by_hand(z1.tolist(), z2.tolist(), alpha)
    assert hierarchical_contrastive_loss(z1, z2, alpha=alpha).item() == pytest.approx(expected, rel=1e-5)


def test_odd_lengths_drop_the_last_step_when_pooling():
    z1, z2 = torch.randn(2, 5, 3), torch.randn(2, 5, 3)
    expected = _hierarchical_by_hand(z1.tolist(), z2.tolist(), 0.5)
    assert hierarchical_contrastive_loss(z1, z2).item() == pytest.approx(expected, rel=1e-5)


def test_one_series_has_no_instance_negatives():
    z = torch.randn(1, 4, 3)
    assert instance_contrastive_loss(z, z).item() == 0.0
    assert torch.isfinite(hierarchical_contrastive_loss(z, z + 0.1))


def test_gradients_flow_and_aligned_views_score_lower():
    z1 = torch.randn(4, 16, 8, requires_grad=True)
    z2 = torch.randn(4, 16, 8, requires_grad=True)
    hierarchical_contrastive_loss(z1, z2).backward()
    assert z1.grad.abs().sum() > 0 and z2.grad.abs().sum() > 0
    base = torch.randn(4, 16, 8) * 3
    assert hierarchical_contrastive_loss(base, base + 0.01 * torch.randn_like(base)) < \
        hierarchical_contrastive_loss(base, torch.randn_like(base) * 3)


def test_shape_and_alpha_errors():
    with pytest.raises(ValueError, match="one shape"):
        hierarchical_contrastive_loss(torch.randn(2, 4, 3), torch.randn(2, 5, 3))
    with pytest.raises(ValueError, match="alpha"):
        hierarchical_contrastive_loss(torch.randn(2, 4, 3), torch.randn(2, 4, 3), alpha=2.0)
