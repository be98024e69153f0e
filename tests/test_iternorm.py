"""IterNorm (Huang et al. 2019): group whitening by Newton's iterations."""
from __future__ import annotations

import pytest
import torch

from multissl.iternorm import IterNorm


def _group_covariances(y: torch.Tensor, group_size: int) -> list:
    yc = y - y.mean(dim=0)
    covs = []
    for g in range(y.shape[1] // group_size):
        block = yc[:, g * group_size : (g + 1) * group_size]
        covs.append(block.T @ block / y.shape[0])
    return covs


def _correlated(n: int, d: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    mixing = torch.eye(d) + 0.3 * torch.randn(d, d, generator=g)  # condition number ~ 10
    return torch.randn(n, d, generator=g) @ mixing + 5.0


def test_train_mode_whitens_each_group() -> None:
    x = _correlated(2048, 8)
    norm = IterNorm(8, num_groups=2, T=5, affine=False)
    for cov in _group_covariances(norm(x), group_size=4):
        assert torch.allclose(cov, torch.eye(4), atol=0.05), cov


def test_more_iterations_whiten_exactly_and_stay_stable() -> None:
    # Ill-conditioned input: the paper's single-matrix iteration diverges in float32 for
    # large T; the coupled form used here converges and stays at the identity.
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1024, 4, generator=g) @ torch.diag(torch.tensor([10.0, 3.0, 1.0, 0.2]))
    for T in (20, 60):
        (cov,) = _group_covariances(IterNorm(4, T=T, affine=False)(x), group_size=4)
        assert torch.allclose(cov, torch.eye(4), atol=1e-3), (T, cov)


def test_groups_are_independent() -> None:
    x = _correlated(256, 8)
    norm = IterNorm(8, num_groups=2, affine=False)
    y = norm(x)
    x2 = x.clone()
    x2[:, 4:] = torch.randn(256, 4)
    assert torch.allclose(norm(x2)[:, :4], y[:, :4], atol=1e-6)


def test_eval_mode_uses_running_statistics() -> None:
    norm = IterNorm(4, T=5, momentum=0.2, affine=False)
    for seed in range(40):
        norm(_correlated(512, 4, seed=0)[torch.randperm(512, generator=torch.Generator().manual_seed(seed))])
    norm.eval()
    x = _correlated(512, 4, seed=0)
    y = norm(x)
    (cov,) = _group_covariances(y, group_size=4)
    assert torch.allclose(cov, torch.eye(4), atol=0.1)
    # per-sample and deterministic in eval mode
    assert torch.allclose(norm(x[:1]), y[:1], atol=1e-5)


def test_affine_and_gradients() -> None:
    norm = IterNorm(6, num_groups=3)
    x = torch.randn(32, 6, requires_grad=True)
    norm(x).pow(2).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert norm.weight.grad is not None and norm.bias.grad is not None


def test_float32_under_autocast() -> None:
    norm = IterNorm(4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert norm(torch.randn(16, 4).bfloat16()).dtype == torch.float32
    assert norm(torch.randn(16, 4, dtype=torch.float64)).dtype == torch.float64


def test_bad_configuration_and_input() -> None:
    with pytest.raises(ValueError, match="divide num_features"):
        IterNorm(10, num_groups=3)
    with pytest.raises(ValueError, match="T must be"):
        IterNorm(4, T=0)
    norm = IterNorm(4)
    with pytest.raises(ValueError, match=r"\(batch, 4\)"):
        norm(torch.randn(8, 5))
    with pytest.raises(ValueError, match="at least 2 samples"):
        norm(torch.randn(1, 4))
