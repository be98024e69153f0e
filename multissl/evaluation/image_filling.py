"""Filling masked image regions: PSNR on the hidden pixels and the classic baselines a learned
inpainter must beat.

- :func:`mean_fill`: every hidden pixel gets the mean of the image's visible pixels (per channel);
- :func:`mean_image_fill`: the hidden pixels of the training set's mean image (the "average
  digit" -- strong on centred data such as MNIST);
- :func:`diffusion_fill`: harmonic (diffusion) inpainting -- hidden pixels repeatedly replaced by
  the average of their four neighbours until the values settle, the visible ones held fixed:
  the smooth, blur-like interpolation of the surrounding context that classic inpainting
  (e.g. OpenCV's Navier-Stokes/Telea methods) refines.

Every function works on whole batches (B, C, H, W) of pixels in [0, 1] with a (B, H, W) or
(B, 1, H, W) bool ``hidden`` mask, on any device.
"""
from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F


def _mask4(hidden: torch.Tensor) -> torch.Tensor:
    return hidden if hidden.ndim == 4 else hidden.unsqueeze(1)


def psnr(filled: torch.Tensor, truth: torch.Tensor, hidden: torch.Tensor, max_value: float = 1.0) -> torch.Tensor:
    """Per-image PSNR (dB) over the hidden pixels only: ``10 log10(max^2 / MSE)`` (B,).

    The MSE averages over hidden pixels and channels; a perfect fill is capped at 100 dB."""
    m = _mask4(hidden).to(truth.dtype).expand_as(truth)
    mse = ((filled - truth).pow(2) * m).sum(dim=(1, 2, 3)) / m.sum(dim=(1, 2, 3)).clamp(min=1.0)
    return 10.0 * torch.log10(max_value ** 2 / mse.clamp(min=max_value ** 2 * 1e-10))


def mean_fill(images: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
    """Hidden pixels := the mean of the visible pixels of the same image and channel."""
    m = _mask4(hidden).to(images.dtype)
    visible = 1.0 - m
    mean = (images * visible).sum(dim=(2, 3), keepdim=True) / visible.sum(dim=(2, 3), keepdim=True).clamp(min=1.0)
    return images * visible + mean * m


def mean_image_fill(images: torch.Tensor, hidden: torch.Tensor, mean_image: torch.Tensor) -> torch.Tensor:
    """Hidden pixels := those of ``mean_image`` (C, H, W), e.g. the training images' mean."""
    m = _mask4(hidden).to(images.dtype)
    return images * (1.0 - m) + mean_image.to(images).unsqueeze(0) * m


def diffusion_fill(images: torch.Tensor, hidden: torch.Tensor, iterations: int = 500) -> torch.Tensor:
    """Harmonic inpainting by Jacobi iterations of the discrete Laplace equation.

    Starts from :func:`mean_fill`; each iteration sets every hidden pixel to the mean of its
    four neighbours (replicated borders), visible pixels stay fixed. 500 iterations settle a
    hole of ~15 px across (the error shrinks by ~(1 - (pi/L)^2 / 4) per iteration for a hole of side L).
    """
    m = _mask4(hidden).to(images.dtype)
    x = mean_fill(images, hidden)
    c = images.shape[1]
    kernel = torch.tensor([[0.0, 0.25, 0.0], [0.25, 0.0, 0.25], [0.0, 0.25, 0.0]], dtype=images.dtype,
                          device=images.device).expand(c, 1, 3, 3)
    for _ in range(iterations):
        avg = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernel, groups=c)
        x = images * (1.0 - m) + avg * m
    return x


def patch_mask_to_pixels(token_mask: torch.Tensor, grid: Tuple[int, int], patch: int) -> torch.Tensor:
    """(B, N) hidden tokens of a ViT grid (row-major) -> (B, H, W) hidden pixels."""
    gh, gw = grid
    m = token_mask.view(-1, gh, gw)
    return m.repeat_interleave(patch, dim=1).repeat_interleave(patch, dim=2)


def center_block_mask(batch_size: int, grid: Tuple[int, int], fraction: float = 0.45,
                      device: torch.device = torch.device("cpu")) -> torch.Tensor:
    """(B, N) token mask hiding a central block of ``round(fraction * side)`` patches per side."""
    gh, gw = grid
    bh, bw = max(1, round(fraction * gh)), max(1, round(fraction * gw))
    m = torch.zeros(gh, gw, dtype=torch.bool, device=device)
    top, left = (gh - bh) // 2, (gw - bw) // 2
    m[top:top + bh, left:left + bw] = True
    return m.flatten().expand(batch_size, -1).clone()


__all__ = ["psnr", "mean_fill", "mean_image_fill", "diffusion_fill", "patch_mask_to_pixels", "center_block_mask"]
