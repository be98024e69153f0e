"""Encoders for clips (B, C, T, H, W): a small 3D CNN for tiny inputs, torchvision's R3D-18 for
larger ones, and a small video ViT on tubelet tokens for the masked methods.

    >>> enc = build_video_encoder("c3d_small", in_channels=1)   # (B, 1, 20, 64, 64) -> (B, 256)
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Tuple

import torch
from torch import nn

from multissl.errors import ConfigError
from multissl.transformer import TokenEncoder


class SmallC3D(nn.Module):
    """Four 3x3x3 conv blocks (BatchNorm, ReLU) widening 32 -> ``width * 8``, global average pool.

    The first block pools space only: on 10-20 frame clips, halving time early would leave too
    few steps to see motion in the later blocks (C3D, Tran et al. 2015, does the same).
    """

    def __init__(self, in_channels: int = 3, width: int = 32) -> None:
        super().__init__()
        chans = [in_channels, width, width * 2, width * 4, width * 8]
        pools = [(1, 2, 2), (2, 2, 2), (2, 2, 2), None]
        layers = []
        for cin, cout, pool in zip(chans[:-1], chans[1:], pools):
            layers += [nn.Conv3d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm3d(cout), nn.ReLU(inplace=True)]
            if pool is not None:
                layers.append(nn.MaxPool3d(pool, ceil_mode=True))
        self.features = nn.Sequential(*layers)
        self.embed_dim = chans[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).mean(dim=(2, 3, 4))


def _r3d_18(in_channels: int = 3, **kwargs: Any) -> nn.Module:
    from torchvision.models.video import r3d_18

    model = r3d_18(weights=None, **kwargs)
    if in_channels != 3:  # the stem is the only layer that sees the channels
        old = model.stem[0]
        model.stem[0] = nn.Conv3d(in_channels, old.out_channels, old.kernel_size, old.stride, old.padding, bias=False)
    model.fc = nn.Identity()
    model.embed_dim = 512
    return model


class TubeletStem(nn.Module):
    """Non-overlapping tubelets (``tubelet`` frames x ``patch`` x ``patch`` pixels) linearly
    embedded (VideoMAE, Tong et al. 2022): (B, C, T, H, W) -> (B, N, dim) in (time, row, column)
    order, no padding. ``target_dim`` is the number of values per tubelet (the MAE targets)."""

    def __init__(self, in_channels: int, tubelet: int, patch: int, dim: int) -> None:
        super().__init__()
        self.tubelet, self.patch = int(tubelet), int(patch)
        self.proj = nn.Conv3d(in_channels, dim, (self.tubelet, self.patch, self.patch),
                              stride=(self.tubelet, self.patch, self.patch))
        self.target_dim = in_channels * self.tubelet * self.patch * self.patch

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, None]:
        T, H, W = x.shape[-3:]
        if T % self.tubelet or H % self.patch or W % self.patch:
            raise ConfigError(f"video ViT: clips of {T}x{H}x{W} (frames x height x width) do not divide into "
                              f"tubelets of {self.tubelet}x{self.patch}x{self.patch}; change clip_length, "
                              "frame_size or the adapter's tubelet/patch_size")
        return self.proj(x).flatten(2).transpose(1, 2), None


def patchify_clips(x: torch.Tensor, tubelet: int, patch: int) -> torch.Tensor:
    """(B, C, T, H, W) -> (B, N, tubelet * patch * patch * C) in :class:`TubeletStem`'s token order."""
    B, C, T, H, W = x.shape
    x = x.reshape(B, C, T // tubelet, tubelet, H // patch, patch, W // patch, patch)
    x = x.permute(0, 2, 4, 6, 3, 5, 7, 1)  # b, t', h', w', tubelet, patch, patch, c
    return x.reshape(B, (T // tubelet) * (H // patch) * (W // patch), -1)


def tube_groups(batch: int, frames: int, rows: int, cols: int, device: torch.device) -> torch.Tensor:
    """Mask group of each tubelet token (B, N): its spatial position, so masking hides whole tubes
    through time (VideoMAE's tube masking; a frame-wise mask would be solved by copying)."""
    spatial = torch.arange(rows * cols, device=device).repeat(frames)
    return spatial.unsqueeze(0).expand(batch, -1)


def _video_vit(in_channels: int = 3, tubelet: int = 2, patch: int = 16, dim: int = 128, depth: int = 4,
               heads: int = 4, max_tokens: int = 1024, dropout: float = 0.0, pool: str = "mean") -> nn.Module:
    return TokenEncoder(TubeletStem(in_channels, tubelet, patch, dim), dim=dim, depth=depth, heads=heads,
                        max_tokens=max_tokens, dropout=dropout, pool=pool)


VIDEO_ENCODERS: Dict[str, Callable[..., nn.Module]] = {
    "c3d_small": lambda in_channels=3, width=32: SmallC3D(in_channels, width),
    "r3d_18": _r3d_18,
    "video_vit_tiny": _video_vit,
}
TOKEN_ENCODERS = ("video_vit_tiny",)


def build_video_encoder(name: str, **kwargs: Any) -> nn.Module:
    if name not in VIDEO_ENCODERS:
        raise ConfigError(f"unknown video encoder {name!r}; available: {', '.join(VIDEO_ENCODERS)}")
    try:
        return VIDEO_ENCODERS[name](**kwargs)
    except TypeError as e:
        raise ConfigError(f"video encoder {name!r}: {e}") from None


__all__ = ["SmallC3D", "TubeletStem", "VIDEO_ENCODERS", "TOKEN_ENCODERS", "build_video_encoder", "patchify_clips",
           "tube_groups"]
