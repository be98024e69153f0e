"""Projection and prediction heads of the Siamese methods, all built from :class:`MLPHead`.

Widths in the papers (2048-8192) are for ResNet-50 on ImageNet; the defaults here are scaled
down for the small encoders (64-512 dims) and small datasets this toolkit targets. The
methods in :mod:`multissl.methods` pass their own sizes.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from multissl.iternorm import IterNorm


class MLPHead(nn.Module):
    """Linear layers with BatchNorm + ReLU between them, built from a list of widths.

    ``dims = [in, h1, ..., out]`` gives ``len(dims) - 1`` linear layers. Every hidden layer is
    ``Linear -> BatchNorm1d -> ReLU`` (``batch_norm=False``: ``Linear -> ReLU``); the last layer
    is a plain ``Linear``, or ``Linear -> BatchNorm1d`` with ``last_batch_norm`` (affine unless
    ``last_affine=False``). Linears followed by BatchNorm have no bias: BN's shift replaces it.

    Example::

        >>> head = MLPHead([128, 512, 64])   # Linear-BN-ReLU-Linear
        >>> head(torch.randn(8, 128)).shape
        torch.Size([8, 64])
    """

    def __init__(
        self,
        dims: Sequence[int],
        batch_norm: bool = True,
        last_batch_norm: bool = False,
        last_affine: bool = True,
    ) -> None:
        super().__init__()
        dims = [int(d) for d in dims]
        if len(dims) < 2 or min(dims) < 1:
            raise ValueError(f"MLPHead needs at least an input and an output width, all >= 1; got {dims}")
        self.dims = dims
        layers = []
        n_layers = len(dims) - 1
        for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:])):
            last = i == n_layers - 1
            use_bn = last_batch_norm if last else batch_norm
            layers.append(nn.Linear(d_in, d_out, bias=not use_bn))
            if use_bn:
                layers.append(nn.BatchNorm1d(d_out, affine=last_affine if last else True))
            if not last:
                layers.append(nn.ReLU(inplace=True))
        self.layers = nn.Sequential(*layers)

    @property
    def out_dim(self) -> int:
        return self.dims[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class SimCLRProjectionHead(MLPHead):
    """SimCLR projector ``g(.)``: Linear-BN-ReLU-Linear (Chen et al. 2020; BN as in SimCLR v2)."""

    def __init__(self, in_dim: int, hidden_dim: int = 512, out_dim: int = 128) -> None:
        super().__init__([in_dim, hidden_dim, out_dim])


class MoCoV3ProjectionHead(MLPHead):
    """MoCo v3 projector: 3 layers, BN on every layer, last BN without affine (Chen, Xie & He 2021)."""

    def __init__(self, in_dim: int, hidden_dim: int = 512, out_dim: int = 128) -> None:
        super().__init__([in_dim, hidden_dim, hidden_dim, out_dim], last_batch_norm=True, last_affine=False)


class MoCoV3PredictionHead(MLPHead):
    """MoCo v3 predictor: 2 layers, BN on every layer, last BN without affine."""

    def __init__(self, in_dim: int = 128, hidden_dim: int = 512, out_dim: int = 128) -> None:
        super().__init__([in_dim, hidden_dim, out_dim], last_batch_norm=True, last_affine=False)


class BYOLProjectionHead(MLPHead):
    """BYOL projector: Linear-BN-ReLU-Linear (Grill et al. 2020)."""

    def __init__(self, in_dim: int, hidden_dim: int = 512, out_dim: int = 128) -> None:
        super().__init__([in_dim, hidden_dim, out_dim])


class BYOLPredictionHead(MLPHead):
    """BYOL predictor ``q``: same shape as the projector, projection -> projection."""

    def __init__(self, in_dim: int = 128, hidden_dim: int = 512, out_dim: int = 128) -> None:
        super().__init__([in_dim, hidden_dim, out_dim])


class SimSiamProjectionHead(MLPHead):
    """SimSiam projector: 3 layers with BN on every layer, output BN without affine (Chen & He 2021)."""

    def __init__(self, in_dim: int, hidden_dim: int = 256, out_dim: int = 256) -> None:
        super().__init__([in_dim, hidden_dim, hidden_dim, out_dim], last_batch_norm=True, last_affine=False)


class SimSiamPredictionHead(MLPHead):
    """SimSiam predictor: a bottleneck MLP (hidden = out / 4 in the paper), no BN on the output."""

    def __init__(self, in_dim: int = 256, hidden_dim: int = 64, out_dim: int = 256) -> None:
        super().__init__([in_dim, hidden_dim, out_dim])


class BarlowTwinsProjectionHead(MLPHead):
    """Barlow Twins projector: 3 layers, BN-ReLU between them; the loss standardises the output
    (Zbontar et al. 2021)."""

    def __init__(self, in_dim: int, hidden_dim: int = 512, out_dim: int = 512) -> None:
        super().__init__([in_dim, hidden_dim, hidden_dim, out_dim])


class VICRegProjectionHead(MLPHead):
    """VICReg expander: 3 layers, BN-ReLU between them, plain linear output (Bardes et al. 2022)."""

    def __init__(self, in_dim: int, hidden_dim: int = 512, out_dim: int = 512) -> None:
        super().__init__([in_dim, hidden_dim, hidden_dim, out_dim])


class VIbCRegProjectionHead(MLPHead):
    """VIbCReg projector: VICReg's 3-layer expander followed by IterNorm whitening
    (Lee & Aune 2021; IterNorm with 64 groups and T = 5 as in the official code)."""

    def __init__(
        self,
        in_dim: int,
        hidden_dim: int = 512,
        out_dim: int = 512,
        iternorm_groups: int = 64,
        iternorm_iters: int = 5,
    ) -> None:
        super().__init__([in_dim, hidden_dim, hidden_dim, out_dim])
        self.whiten = IterNorm(out_dim, num_groups=iternorm_groups, T=iternorm_iters)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.whiten(self.layers(x))


__all__ = [
    "MLPHead",
    "SimCLRProjectionHead",
    "MoCoV3ProjectionHead",
    "MoCoV3PredictionHead",
    "BYOLProjectionHead",
    "BYOLPredictionHead",
    "SimSiamProjectionHead",
    "SimSiamPredictionHead",
    "BarlowTwinsProjectionHead",
    "VICRegProjectionHead",
    "VIbCRegProjectionHead",
]
