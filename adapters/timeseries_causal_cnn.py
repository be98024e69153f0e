"""T-Loss's encoder: a causal dilated CNN, max pooled over time, then a linear layer.

Reference: J.-Y. Franceschi, A. Dieuleveut, M. Jaggi, "Unsupervised Scalable Representation
Learning for Multivariate Time Series", NeurIPS 2019, sec. 3.2 and appendix (UEA / UCR
settings: 40 channels, depth 10, reduced size 160, 320-d output, kernel 3).

Each block is two causal convolutions (weight-normalised, LeakyReLU after each) with dilation
``2 ** i`` in block ``i``, plus a residual connection (1x1 convolution when the widths differ);
a last block maps to ``reduced_size`` channels. The per-step outputs are max pooled over the
real steps and a linear layer gives the ``embed_dim`` representation -- the difference from the
TS2Vec encoder (:class:`~multissl.adapters.timeseries_encoders.TS2VecEncoder`), whose pooled
per-step features are the representation themselves.

Causal convolutions only look back, so the steps after a series' end (padding) never reach its
real steps, and pooling skips them: a series embeds the same alone or in a padded batch. The
left padding is applied explicitly, so a block with a dilation far beyond the series length
costs less than one with a small dilation (the taps that would only read the padding are
skipped).

    >>> enc = CausalCNNEncoder(in_channels=3)                      # the paper's sizes
    >>> batch = {"x": torch.randn(4, 3, 100), "mask": torch.ones(4, 100, dtype=torch.bool)}
    >>> enc(batch).shape, enc.forward_tokens(batch).shape
    (torch.Size([4, 320]), torch.Size([4, 100, 160]))
"""
from __future__ import annotations

from typing import Dict

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from multissl.adapters.timeseries_encoders import masked_max, unpack_series
from multissl.errors import ConfigError

SeriesBatch = Dict[str, torch.Tensor]


class CausalConv1d(nn.Module):
    """A weight-normalised convolution that sees only the present and the past."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, dilation: int) -> None:
        super().__init__()
        self.conv = weight_norm(nn.Conv1d(c_in, c_out, kernel_size, dilation=dilation))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        k, d = self.conv.kernel_size[0], self.conv.dilation[0]
        # taps reaching back further than the series only ever read the zero padding: drop them
        taps = min(k, (h.shape[-1] - 1) // d + 1)
        weight = self.conv.weight[..., k - taps:]
        return F.conv1d(F.pad(h, ((taps - 1) * d, 0)), weight, self.conv.bias, dilation=d)


class CausalBlock(nn.Module):
    """causal conv -> LeakyReLU -> causal conv -> LeakyReLU, plus a residual."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, dilation: int) -> None:
        super().__init__()
        self.conv1 = CausalConv1d(c_in, c_out, kernel_size, dilation)
        self.conv2 = CausalConv1d(c_out, c_out, kernel_size, dilation)
        self.residual = nn.Conv1d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        y = F.leaky_relu(self.conv2(F.leaky_relu(self.conv1(h))))
        return y + self.residual(h)


class CausalCNNEncoder(nn.Module):
    """T-Loss's causal CNN encoder for ``{"x": (B, C, T), "mask": (B, T)}`` series batches.

    Args:
        in_channels: channels C of the series.
        channels: width of the hidden blocks (paper: 40).
        depth: number of hidden blocks, block ``i`` with dilation ``2 ** i`` (paper: 10).
        reduced_size: channels of the last block, i.e. of the per-step features (paper: 160).
        embed_dim: width of the representation after the linear layer (paper: 320).
        kernel_size: temporal kernel size (paper: 3).
    """

    def __init__(self, in_channels: int, channels: int = 40, depth: int = 10, reduced_size: int = 160,
                 embed_dim: int = 320, kernel_size: int = 3) -> None:
        super().__init__()
        if min(in_channels, channels, depth, reduced_size, embed_dim, kernel_size) < 1:
            raise ConfigError("in_channels, channels, depth, reduced_size, embed_dim and kernel_size must be positive")
        self.in_channels = int(in_channels)
        self.token_dim = int(reduced_size)
        self.embed_dim = int(embed_dim)
        widths = [in_channels] + [channels] * depth + [reduced_size]
        self.blocks = nn.Sequential(*(CausalBlock(widths[i], widths[i + 1], kernel_size, 2 ** i)
                                      for i in range(depth + 1)))
        self.linear = nn.Linear(reduced_size, embed_dim)

    def forward_tokens(self, batch: SeriesBatch) -> torch.Tensor:
        """Per-step features (B, T, reduced_size) of the last block, zero at padded steps."""
        x, mask = unpack_series(batch)
        mask = mask.bool()
        if x.dim() != 3 or x.shape[1] != self.in_channels:
            raise ConfigError(f"encoder built for (B, {self.in_channels}, T) series, got a batch of shape "
                              f"{tuple(x.shape)}")
        keep = mask.to(x.dtype).unsqueeze(1)
        h = self.blocks(x * keep)
        return (h * keep).transpose(1, 2)

    def forward(self, batch: SeriesBatch) -> torch.Tensor:
        return self.linear(masked_max(self.forward_tokens(batch), unpack_series(batch)[1]))


__all__ = ["CausalCNNEncoder", "CausalBlock", "CausalConv1d"]
