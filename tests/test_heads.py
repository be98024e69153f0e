"""Projection / prediction heads built on MLPHead."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from multissl import heads
from multissl.iternorm import IterNorm


def test_mlp_head_structure() -> None:
    head = heads.MLPHead([8, 16, 16, 4], last_batch_norm=True, last_affine=False)
    layers = list(head.layers)
    kinds = [type(m) for m in layers]
    assert kinds == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear, nn.BatchNorm1d]
    assert all(m.bias is None for m in layers if isinstance(m, nn.Linear))  # BN follows every linear
    assert layers[-1].affine is False and layers[1].affine is True
    assert head(torch.randn(5, 8)).shape == (5, 4) and head.out_dim == 4


def test_mlp_head_plain_output_keeps_bias() -> None:
    head = heads.MLPHead([8, 4], batch_norm=False)
    assert [type(m) for m in head.layers] == [nn.Linear] and head.layers[0].bias is not None


@pytest.mark.parametrize("dims", [[8], [8, 0], []])
def test_mlp_head_rejects_bad_dims(dims) -> None:
    with pytest.raises(ValueError, match="MLPHead"):
        heads.MLPHead(dims)


@pytest.mark.parametrize(
    "head, out",
    [
        (heads.SimCLRProjectionHead(16, 32, 8), 8),
        (heads.MoCoV3ProjectionHead(16, 32, 8), 8),
        (heads.MoCoV3PredictionHead(8, 32, 8), 8),
        (heads.BYOLProjectionHead(16, 32, 8), 8),
        (heads.BYOLPredictionHead(8, 32, 8), 8),
        (heads.SimSiamProjectionHead(16, 32, 8), 8),
        (heads.SimSiamPredictionHead(8, 4, 8), 8),
        (heads.BarlowTwinsProjectionHead(16, 32, 8), 8),
        (heads.VICRegProjectionHead(16, 32, 8), 8),
        (heads.VIbCRegProjectionHead(16, 32, 8, iternorm_groups=2), 8),
    ],
)
def test_method_heads(head: heads.MLPHead, out: int) -> None:
    assert isinstance(head, heads.MLPHead)
    y = head(torch.randn(6, head.dims[0]))
    assert y.shape == (6, out) and torch.isfinite(y).all()


def test_vibcreg_head_ends_in_iternorm() -> None:
    head = heads.VIbCRegProjectionHead(16, 32, 8, iternorm_groups=4, iternorm_iters=3)
    assert isinstance(head.whiten, IterNorm) and head.whiten.num_groups == 4 and head.whiten.T == 3
