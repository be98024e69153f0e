"""Time-series encoders: a transformed batch -> embeddings (B, embed_dim).

Input is what :meth:`TimeSeriesAdapter.eval_transform` and :meth:`TimeSeriesAdapter.views`
return: a dict ``{"x": float (B, C, T), "mask": bool (B, T)}`` (``mask`` True at real steps),
optionally with ``"hidden"`` (B, T) bool, the steps hidden by timestamp masking.

- ``ts2vec`` (default): the dilated convolutional encoder of TS2Vec (Yue et al., "TS2Vec:
  Towards Universal Representation of Time Series", AAAI 2022): a linear input projection per
  time step, then residual blocks of two dilated ``kernel_size``-wide convolutions with GELU,
  dilation ``2 ** i`` in block ``i``, and a last block to ``embed_dim`` channels. It yields a
  representation per time step (:meth:`TS2VecEncoder.forward_tokens`), max- (or mean-) pooled
  over the real steps to one vector per series (:meth:`TS2VecEncoder.forward`), as TS2Vec does
  for instance-level tasks. With ``channel_independent=True`` every channel goes through the same
  network alone and the per-channel representations are concatenated (PatchTST's channel
  independence; the embedding is then ``C`` times wider). Padding never changes an embedding: every convolution's input is
  zeroed outside the mask (so a series reads zeros after its end, exactly as a convolution's
  own zero padding would give it alone), there is no batch normalisation, and pooling only sees
  real steps. A series therefore embeds the same alone or in a batch with longer ones.
- ``patchtst``: PatchTST-style patch tokens (Nie et al., "A Time Series is Worth 64 Words:
  Long-term Forecasting with Transformers", ICLR 2023): the series is cut into non-overlapping
  patches of ``patch_len`` steps (all channels of a patch form one token), each linearly
  embedded (:class:`PatchStem`), then the shared :class:`multissl.transformer.TokenEncoder`.
  This is the encoder of the masked methods (``mae``, ``data2vec``); a patch whose first step is
  padding is a padding token.
- ``causal_cnn``: T-Loss's encoder (Franceschi et al. 2019): causal dilated convolutions, max
  pooling, then a linear layer (:mod:`multissl.adapters.timeseries_causal_cnn`).
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from multissl.errors import ConfigError

SeriesBatch = Dict[str, torch.Tensor]
POOLING = ("max", "mean", "maxmean")


def masked_mean(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``h`` (B, T, D) over the steps where ``mask`` (B, T) is True -> (B, D)."""
    m = mask.unsqueeze(-1).to(h.dtype)
    return (h * m).sum(1) / m.sum(1).clamp_min(1.0)


def masked_max(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Max of ``h`` (B, T, D) over the steps where ``mask`` is True -> (B, D)."""
    return h.masked_fill(~mask.unsqueeze(-1), torch.finfo(h.dtype).min).amax(1)


def unpack_series(batch: Any) -> Tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(batch, dict) or "x" not in batch or "mask" not in batch:
        raise ConfigError("time-series encoders take the adapter's transformed batch, a dict with 'x' (B, C, T) "
                          "and 'mask' (B, T); call adapter.eval_transform(batch) first")
    return batch["x"], batch["mask"]


def dilated_conv(conv: nn.Conv1d, h: torch.Tensor) -> torch.Tensor:
    """``conv(h)`` for a centred dilated convolution, cheaper when the dilation reaches past the
    series: then every tap but the centre one reads the zero padding, so the result equals a
    1x1 convolution with the centre weights -- without convolving ``2 * dilation`` zeros per
    side (TS2Vec's last blocks have dilations up to 1024 on series of ~100 steps)."""
    dilation, k = conv.dilation[0], conv.kernel_size[0]
    if dilation < h.shape[-1]:
        return conv(h)
    centre = k // 2
    return F.conv1d(h, conv.weight[:, :, centre:centre + 1], conv.bias)


class _DilatedConvBlock(nn.Module):
    """GELU -> dilated conv -> GELU -> dilated conv, plus a residual (1x1 conv when widths differ)."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, dilation: int) -> None:
        super().__init__()
        pad = dilation * (kernel_size - 1) // 2
        self.conv1 = nn.Conv1d(c_in, c_out, kernel_size, dilation=dilation, padding=pad)
        self.conv2 = nn.Conv1d(c_out, c_out, kernel_size, dilation=dilation, padding=pad)
        self.project = nn.Conv1d(c_in, c_out, 1) if c_in != c_out else None

    def forward(self, h: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        # h: (B, C, T); keep: (B, 1, T) float. Zeroing before each convolution: padded steps read 0.
        residual = h if self.project is None else self.project(h)
        y = dilated_conv(self.conv1, F.gelu(h) * keep)
        y = dilated_conv(self.conv2, F.gelu(y) * keep)
        return (y + residual) * keep


class TS2VecEncoder(nn.Module):
    """Dilated CNN with per-time-step outputs (TS2Vec), pooled to one vector per series.

    Args:
        in_channels: channels C of the series.
        width: hidden channels of the residual blocks (TS2Vec: 64).
        depth: number of hidden blocks; block ``i`` has dilation ``2 ** i`` (TS2Vec: 10). With
            kernel 3 the receptive field is about ``2 ** (depth + 2)`` steps.
        embed_dim: channels of the per-step representation and width of the pooled embedding
            (TS2Vec: 320).
        kernel_size: odd temporal kernel size.
        pooling: ``"max"`` (TS2Vec), ``"mean"`` or ``"maxmean"`` (both, concatenated: then the
            embedding is ``2 * embed_dim`` wide).
        dropout: dropout on the per-step representation during training (TS2Vec: 0.1).
        channel_independent: encode every channel alone with the same weights (an input
            projection from one channel) and concatenate the channels' per-step representations,
            channel-major, as PatchTST does (Nie et al. 2023): then ``forward_tokens`` is
            ``(B, T, C * embed_dim)``, the pooled embedding ``C`` times as wide, and a channel
            whose values stand out can only move its own part of the vector. Identical to the
            default for univariate series.

    Example::

        >>> enc = TS2VecEncoder(in_channels=3, embed_dim=64)
        >>> batch = {"x": torch.randn(4, 3, 100), "mask": torch.ones(4, 100, dtype=torch.bool)}
        >>> enc(batch).shape, enc.forward_tokens(batch).shape
        (torch.Size([4, 64]), torch.Size([4, 100, 64]))
        >>> TS2VecEncoder(in_channels=3, embed_dim=64, channel_independent=True)(batch).shape
        torch.Size([4, 192])
    """

    def __init__(self, in_channels: int, width: int = 64, depth: int = 8, embed_dim: int = 128,
                 kernel_size: int = 3, pooling: str = "max", dropout: float = 0.1,
                 channel_independent: bool = False) -> None:
        super().__init__()
        if kernel_size % 2 == 0 or kernel_size < 1:
            raise ConfigError(f"kernel_size must be a positive odd number (centred convolutions), got {kernel_size}")
        if min(in_channels, width, depth, embed_dim) < 1:
            raise ConfigError("in_channels, width, depth and embed_dim must be positive")
        if pooling not in POOLING:
            raise ConfigError(f"pooling must be one of {', '.join(POOLING)}, got {pooling!r}")
        self.in_channels = int(in_channels)
        self.channel_independent = bool(channel_independent)
        #: width of the per-step representation: the channels' side by side when channel-independent
        self.token_dim = int(embed_dim) * (self.in_channels if self.channel_independent else 1)
        self.pooling = pooling
        self.embed_dim = self.token_dim * (2 if pooling == "maxmean" else 1)
        self.input_fc = nn.Linear(1 if self.channel_independent else in_channels, width)
        widths = [width] * depth + [embed_dim]
        self.blocks = nn.ModuleList(
            _DilatedConvBlock(widths[i - 1] if i > 0 else width, widths[i], kernel_size, 2 ** i)
            for i in range(len(widths)))
        self.dropout = nn.Dropout(dropout)

    def forward_tokens(self, batch: SeriesBatch) -> torch.Tensor:
        """Per-step representations (B, T, token_dim), zero at padded steps."""
        x, mask = unpack_series(batch)
        if x.shape[1] != self.in_channels:
            raise ConfigError(f"encoder built for {self.in_channels} channel(s), got a batch with {x.shape[1]}")
        hidden = batch.get("hidden")
        if self.channel_independent and self.in_channels > 1:
            b, c, t = x.shape  # every channel a series of its own: (B * C, 1, T), channel-major per series
            h = self._steps(x.reshape(b * c, 1, t), mask.repeat_interleave(c, 0),
                            None if hidden is None else hidden.repeat_interleave(c, 0))
            return h.reshape(b, c, t, -1).permute(0, 2, 1, 3).reshape(b, t, -1)
        return self._steps(x, mask, hidden)

    def _steps(self, x: torch.Tensor, mask: torch.Tensor, hidden: torch.Tensor | None) -> torch.Tensor:
        keep = mask.to(x.dtype)
        h = self.input_fc(x.transpose(1, 2))  # (B, T, W)
        if hidden is not None:
            # TS2Vec masks the latent vectors, not the raw values: a hidden step is then "no
            # information", never a plausible measurement of 0
            keep_latent = (~hidden).to(h.dtype) * keep
        else:
            keep_latent = keep
        h = (h * keep_latent.unsqueeze(-1)).transpose(1, 2)  # (B, W, T)
        k = keep.unsqueeze(1)
        for block in self.blocks:
            h = block(h, k)
        return self.dropout(h.transpose(1, 2)) * keep.unsqueeze(-1)

    def pool(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.pooling == "max":
            return masked_max(h, mask)
        if self.pooling == "mean":
            return masked_mean(h, mask)
        return torch.cat([masked_max(h, mask), masked_mean(h, mask)], dim=1)

    def forward(self, batch: SeriesBatch) -> torch.Tensor:
        return self.pool(self.forward_tokens(batch), batch["mask"])


def patchify_series(x: torch.Tensor, mask: torch.Tensor, patch_len: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Series (B, C, T) -> non-overlapping patches (B, N, patch_len * C) and the token padding
    mask (B, N) (True = padding), N = ceil(T / patch_len). Steps past the end are zero; inside a
    patch the values are ordered step-major, ``(step, channel)``."""
    b, c, t = x.shape
    pad = (-t) % patch_len
    x = F.pad(x * mask.unsqueeze(1).to(x.dtype), (0, pad))
    patches = x.reshape(b, c, -1, patch_len).permute(0, 2, 3, 1).reshape(b, -1, patch_len * c)
    first_real = F.pad(mask, (0, pad))[:, ::patch_len]
    return patches, ~first_real


class PatchStem(nn.Module):
    """Linear embedding of non-overlapping series patches (PatchTST); ``forward(batch) ->
    (tokens (B, N, dim), padding_mask (B, N))``. ``target_dim`` = values per patch, the size of
    the masked methods' reconstruction targets (:meth:`TimeSeriesAdapter.tokens`)."""

    def __init__(self, in_channels: int, patch_len: int, dim: int) -> None:
        super().__init__()
        if min(in_channels, patch_len, dim) < 1:
            raise ConfigError("in_channels, patch_len and dim must be positive")
        self.in_channels = int(in_channels)
        self.patch_len = int(patch_len)
        self.target_dim = self.patch_len * self.in_channels
        self.proj = nn.Linear(self.target_dim, dim)

    def forward(self, batch: SeriesBatch) -> Tuple[torch.Tensor, torch.Tensor]:
        x, mask = unpack_series(batch)
        if x.shape[1] != self.in_channels:
            raise ConfigError(f"encoder built for {self.in_channels} channel(s), got a batch with {x.shape[1]}")
        patches, padding = patchify_series(x, mask, self.patch_len)
        return self.proj(patches), padding


def build_patchtst(in_channels: int, patch_len: int = 16, dim: int = 64, depth: int = 3, heads: int = 4,
                   max_tokens: int = 256, dropout: float = 0.0, pool: str = "mean") -> nn.Module:
    """``TokenEncoder(PatchStem(in_channels, patch_len, dim), ...)``: series up to
    ``max_tokens * patch_len`` steps."""
    from multissl.transformer import TokenEncoder

    return TokenEncoder(PatchStem(in_channels, patch_len, dim), dim=dim, depth=depth, heads=heads,
                        max_tokens=max_tokens, dropout=dropout, pool=pool)


def build_causal_cnn(in_channels: int, **kwargs: Any) -> nn.Module:
    """T-Loss's encoder (:class:`multissl.adapters.timeseries_causal_cnn.CausalCNNEncoder`)."""
    from multissl.adapters.timeseries_causal_cnn import CausalCNNEncoder

    return CausalCNNEncoder(in_channels, **kwargs)


TIMESERIES_ENCODERS: Dict[str, Callable[..., nn.Module]] = {
    "ts2vec": TS2VecEncoder,
    "patchtst": build_patchtst,
    "causal_cnn": build_causal_cnn,
}


def build_timeseries_encoder(name: str, **kwargs: Any) -> nn.Module:
    """A time-series encoder by name (:data:`TIMESERIES_ENCODERS`); ``kwargs`` go to its constructor."""
    if name not in TIMESERIES_ENCODERS:
        raise ConfigError(f"unknown time-series encoder {name!r}; available: {', '.join(TIMESERIES_ENCODERS)}")
    try:
        return TIMESERIES_ENCODERS[name](**kwargs)
    except TypeError as exc:
        raise ConfigError(f"time-series encoder {name!r}: {exc}") from None


__all__ = ["TS2VecEncoder", "PatchStem", "build_patchtst", "patchify_series", "TIMESERIES_ENCODERS", "build_timeseries_encoder", "masked_mean", "masked_max",
           "POOLING"]
