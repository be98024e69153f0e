"""Signature encoders: padded feature sequences -> embeddings (B, embed_dim).

Input is what :meth:`SignatureAdapter.eval_transform` and :meth:`SignatureAdapter.views`
return, a dict ``{"x": float (B, T, C), "mask": bool (B, T)}`` with ``mask`` True at real
points. Both encoders are built so that **padded positions never change an embedding**: every
layer's output is zeroed outside the mask, normalisation is per time step (LayerNorm, no
batch statistics over time) and pooling only sees real points. A signature therefore embeds
the same alone or in a batch with longer ones.

- ``cnn`` (default): a temporal convolutional network (Bai, Kolter, Koltun, "An Empirical
  Evaluation of Generic Convolutional and Recurrent Networks for Sequence Modeling", 2018):
  residual blocks of dilated 1D convolutions, dilation doubling per block so the receptive
  field covers a whole signature (~2^depth samples), then masked mean + max pooling, the
  means of ``segments`` consecutive parts of the signature, and a linear layer. Mean pooling
  summarises the global dynamics, max pooling keeps salient local events (a sharp turn, a
  pressure peak) that averaging would wash out, and the segment means keep their order.
- ``transformer``: non-overlapping patches of ``patch`` points (4: 4x fewer tokens), each
  linearly embedded (:class:`SignaturePatchStem`), then the shared pre-norm Transformer
  :class:`multissl.transformer.TokenEncoder` (learned positions started from sine-cosine codes,
  a key-padding mask, masked mean pooling). It is the encoder of the masked methods (``mae``
  reconstructs hidden patches, ``data2vec`` predicts their latent features): a patch whose first
  point is padding is a padding token, and a patch that runs past a signature's end reads zeros
  there, so padding never changes an embedding here either.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Tuple

import torch
from torch import nn

from multissl.errors import ConfigError

SignatureBatch = Dict[str, torch.Tensor]


def masked_mean(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``h`` (B, T, D) over the positions where ``mask`` (B, T) is True -> (B, D)."""
    m = mask.unsqueeze(-1).to(h.dtype)
    return (h * m).sum(1) / m.sum(1).clamp_min(1.0)


def masked_max(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Max of ``h`` (B, T, D) over the positions where ``mask`` is True -> (B, D)."""
    return h.masked_fill(~mask.unsqueeze(-1), torch.finfo(h.dtype).min).amax(1)


def segment_means(h: torch.Tensor, mask: torch.Tensor, segments: int) -> torch.Tensor:
    """Masked means of ``h`` (B, T, D) over ``segments`` consecutive equal parts of each
    sequence's real points -> (B, segments * D). Keeps the coarse order of events that a
    global pool discards; the parts follow each sequence's own length, so they line up
    between two signings of one signature at different speeds."""
    b, t, d = h.shape
    length = mask.sum(1, keepdim=True).clamp_min(1)
    part = (torch.arange(t, device=h.device).unsqueeze(0) * segments) // length  # (B, T)
    onehot = nn.functional.one_hot(part.clamp(max=segments - 1), segments).to(h.dtype) * mask.unsqueeze(-1).to(h.dtype)
    sums = torch.einsum("bts,btd->bsd", onehot, h)
    return (sums / onehot.sum(1).clamp_min(1.0).unsqueeze(-1)).reshape(b, segments * d)


def _unpack(batch: Any) -> tuple:
    if not isinstance(batch, dict) or "x" not in batch or "mask" not in batch:
        raise ConfigError("signature encoders take the adapter's transformed batch, a dict with 'x' (B, T, C) "
                          "and 'mask' (B, T); call adapter.eval_transform(batch) first")
    return batch["x"], batch["mask"]


class _DilatedBlock(nn.Module):
    """Pre-norm residual block: LayerNorm -> dilated conv -> GELU -> 1x1 conv, masked."""

    def __init__(self, width: int, kernel_size: int, dilation: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.conv = nn.Conv1d(width, width, kernel_size, dilation=dilation, padding=dilation * (kernel_size - 1) // 2)
        self.act = nn.GELU()
        self.mix = nn.Conv1d(width, width, 1)
        self.drop = nn.Dropout(dropout)

    def forward(self, h: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        # h: (B, T, W); keep: (B, T, 1) float. Zeroing the input to the convolution makes the
        # padded positions read as zeros, whatever the data held there.
        y = self.norm(h) * keep
        y = self.mix(self.act(self.conv(y.transpose(1, 2)))).transpose(1, 2)
        return (h + self.drop(y)) * keep


class SignatureCNN(nn.Module):
    """Dilated residual 1D CNN with masked mean + max pooling and segment means.

    Args:
        in_channels: feature channels C of the input.
        width: channels of every residual block.
        depth: number of blocks; block ``i`` has dilation ``2 ** i`` (receptive field about
            ``(kernel_size - 1) * 2 ** depth`` samples).
        kernel_size: odd temporal kernel size.
        embed_dim: output width (a linear layer after pooling).
        dropout: dropout on each block's residual branch.
        segments: also pool the means of this many consecutive parts of each signature
            (:func:`segment_means`; 0: global pooling only).

    Example::

        >>> enc = SignatureCNN(in_channels=9, embed_dim=128)
        >>> enc({"x": torch.randn(4, 128, 9), "mask": torch.ones(4, 128, dtype=torch.bool)}).shape
        torch.Size([4, 128])
    """

    def __init__(self, in_channels: int, width: int = 32, depth: int = 7, kernel_size: int = 5,
                 embed_dim: int = 128, dropout: float = 0.0, segments: int = 8) -> None:
        super().__init__()
        self.segments = int(segments)
        if kernel_size % 2 == 0 or kernel_size < 1:
            raise ConfigError(f"kernel_size must be a positive odd number (centred convolutions), got {kernel_size}")
        if min(in_channels, width, depth, embed_dim) < 1:
            raise ConfigError("in_channels, width, depth and embed_dim must be positive")
        self.in_channels = int(in_channels)
        self.embed_dim = int(embed_dim)
        self.stem = nn.Linear(in_channels, width)
        self.blocks = nn.ModuleList(_DilatedBlock(width, kernel_size, 2 ** i, dropout) for i in range(depth))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear((2 + self.segments) * width, embed_dim)

    def forward_tokens(self, batch: SignatureBatch) -> torch.Tensor:
        """Per-point features (B, T, width), zero at padded positions."""
        x, mask = _unpack(batch)
        keep = mask.unsqueeze(-1).to(x.dtype)
        h = self.stem(x * keep) * keep
        for block in self.blocks:
            h = block(h, keep)
        return self.norm(h) * keep

    def forward(self, batch: SignatureBatch) -> torch.Tensor:
        h = self.forward_tokens(batch)
        mask = batch["mask"]
        pooled = [masked_mean(h, mask), masked_max(h, mask)]
        if self.segments:
            pooled.append(segment_means(h, mask, self.segments))
        return self.head(torch.cat(pooled, dim=1))


def patchify_points(x: torch.Tensor, mask: torch.Tensor, patch: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Feature sequences (B, T, C) -> non-overlapping patches (B, N, patch * C) and the token
    padding mask (B, N) (True = padding), N = ceil(T / patch). Points past a signature's end
    read as zeros; inside a patch the values are point-major, ``(point, feature)``. A patch
    whose first point is padding is a padding token."""
    b, t, c = x.shape
    pad = (-t) % patch
    x = nn.functional.pad(x * mask.unsqueeze(-1).to(x.dtype), (0, 0, 0, pad))
    first_real = nn.functional.pad(mask, (0, pad))[:, ::patch]
    return x.reshape(b, -1, patch * c), ~first_real


class SignaturePatchStem(nn.Module):
    """Linear embedding of non-overlapping patches of ``patch`` points (all features of a patch
    form one token); ``forward(batch) -> (tokens (B, N, dim), padding_mask (B, N))``.
    ``target_dim`` = values per patch, the size of the masked methods' reconstruction targets
    (:meth:`SignatureAdapter.tokens`)."""

    def __init__(self, in_channels: int, patch: int, dim: int) -> None:
        super().__init__()
        if min(in_channels, patch, dim) < 1:
            raise ConfigError("in_channels, patch and dim must be positive")
        self.in_channels = int(in_channels)
        self.patch = int(patch)
        self.target_dim = self.patch * self.in_channels
        self.proj = nn.Linear(self.target_dim, dim)

    def forward(self, batch: SignatureBatch) -> Tuple[torch.Tensor, torch.Tensor]:
        x, mask = _unpack(batch)
        if x.shape[-1] != self.in_channels:
            raise ConfigError(f"encoder built for {self.in_channels} feature(s), got a batch with {x.shape[-1]}")
        patches, padding = patchify_points(x, mask, self.patch)
        return self.proj(patches), padding


def build_signature_transformer(in_channels: int, dim: int = 64, depth: int = 3, heads: int = 4, patch: int = 4,
                                max_tokens: int = 512, dropout: float = 0.0, pool: str = "mean") -> nn.Module:
    """``TokenEncoder(SignaturePatchStem(in_channels, patch, dim), ...)``: the shared pre-norm
    Transformer (:class:`multissl.transformer.TokenEncoder`) on patches of ``patch`` points, so
    the masked methods (``mae``, ``data2vec``) train on signatures; embedding width ``dim``.
    Signatures of up to ``max_tokens * patch`` points."""
    from multissl.transformer import TokenEncoder

    return TokenEncoder(SignaturePatchStem(in_channels, patch, dim), dim=dim, depth=depth, heads=heads,
                        max_tokens=max_tokens, dropout=dropout, pool=pool)


SIGNATURE_ENCODERS: Dict[str, Callable[..., nn.Module]] = {
    "cnn": SignatureCNN,
    "transformer": build_signature_transformer,
}


def build_signature_encoder(name: str, **kwargs: Any) -> nn.Module:
    """A signature encoder by name (``SIGNATURE_ENCODERS``); ``kwargs`` go to its constructor."""
    if name not in SIGNATURE_ENCODERS:
        raise ConfigError(f"unknown signature encoder {name!r}; available: {', '.join(SIGNATURE_ENCODERS)}")
    try:
        return SIGNATURE_ENCODERS[name](**kwargs)
    except TypeError as exc:
        raise ConfigError(f"signature encoder {name!r}: {exc}") from None


__all__ = ["SignatureCNN", "SignaturePatchStem", "build_signature_transformer", "patchify_points",
           "SIGNATURE_ENCODERS", "build_signature_encoder", "masked_mean", "masked_max", "segment_means"]
