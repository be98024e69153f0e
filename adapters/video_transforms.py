"""Batched clip sampling and augmentation for the video adapter, on the batch's device.

Clips are float (B, T, C, H, W) in [0, 1] here (frames next to the batch dimension, so the
frames of all clips fold into one image batch). Augmentations reuse the image pipeline
(:mod:`multissl.adapters.image_transforms`) with **one set of random parameters per clip**,
repeated for each of its frames: every frame gets the same crop box, flip and colour change, so
motion is not confused with augmentation (as in CVRL, Qian et al. 2021, "temporally consistent
spatial augmentation").
"""
from __future__ import annotations

from dataclasses import fields
from typing import Optional, Tuple

import torch

from multissl.adapters.image_transforms import AugmentParams, BatchParams, augment, sample_params


def clip_starts(length: torch.Tensor, span: int, jitter: bool, generator: Optional[torch.Generator]) -> torch.Tensor:
    """First frame of each clip (B,): uniformly random in ``[0, length - span]`` with ``jitter``
    (temporal jitter), else centred; 0 for videos shorter than ``span``."""
    room = (length - span).clamp_min(0)
    if not jitter:
        return room // 2
    dev = generator.device if generator is not None else length.device
    u = torch.rand(length.shape[0], generator=generator, device=dev).to(length.device)
    return (u * (room + 1).to(u.dtype)).long().clamp_max(room)


def gather_clips(video: torch.Tensor, length: torch.Tensor, starts: torch.Tensor, clip_length: int,
                 stride: int) -> torch.Tensor:
    """Frames ``start, start + stride, ...`` (``clip_length`` of them) of every video (B, T, ...).

    Indices past a video's last real frame repeat its last frame (a short video is held still
    rather than padded with black frames that look like a scene cut).
    """
    idx = starts.view(-1, 1) + stride * torch.arange(clip_length, device=video.device).view(1, -1)
    idx = torch.minimum(idx, (length - 1).clamp_min(0).view(-1, 1))
    batch = torch.arange(video.shape[0], device=video.device).view(-1, 1)
    return video[batch, idx]


def repeat_params(p: BatchParams, frames: int) -> BatchParams:
    """Per-clip parameters (length B) repeated for every frame (length B * frames, clip-major)."""
    kw = {}
    for f in fields(p):
        v = getattr(p, f.name)
        kw[f.name] = v.repeat_interleave(frames, dim=0) if isinstance(v, torch.Tensor) else v
    return BatchParams(**kw)


def augment_clips(x: torch.Tensor, settings: AugmentParams, generator: Optional[torch.Generator],
                  size: Optional[Tuple[int, int]] = None) -> torch.Tensor:
    """Augment float clips (B, T, C, H, W) in [0, 1] with one random draw per clip: random
    resized crop, flip, colour jitter, grayscale (whichever ``settings`` enable). Returns
    (B, T, C, h, w) in [0, 1]; ``size`` (h, w) defaults to the input size."""
    B, T, C, H, W = x.shape
    frames = x.reshape(B * T, C, H, W)
    per_clip = sample_params(x[:, 0], settings, generator=generator, size=size)
    out = augment(frames, repeat_params(per_clip, T))
    return out.reshape(B, T, C, *out.shape[-2:])


__all__ = ["augment_clips", "clip_starts", "gather_clips", "repeat_params"]
