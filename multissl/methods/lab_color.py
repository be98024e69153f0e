"""sRGB <-> CIE L*a*b* (D65) in torch, batched on the tensor's device.

The colorization method needs Lab on the training device every step, so the conversion is
written with tensor operations rather than taken from an image library working on numpy. It
follows the standard definitions (IEC 61966-2-1 for sRGB, CIE 1976 for L*a*b*):

1. sRGB in [0, 1] -> linear RGB: ``c / 12.92`` up to 0.04045, else ``((c + 0.055) / 1.055) ** 2.4``;
2. linear RGB -> XYZ with the sRGB (D65) primaries matrix;
3. XYZ / reference white (D65: 0.95047, 1, 1.08883) -> ``f(t) = t ** (1/3)`` above
   ``(6/29) ** 3``, else the linear segment ``t / (3 (6/29)^2) + 4/29``;
4. ``L = 116 f(Y) - 16``, ``a = 500 (f(X) - f(Y))``, ``b = 200 (f(Y) - f(Z))``.

L is in [0, 100]; a and b lie roughly in [-128, 128] (sRGB reaches about -86..98 in a and
-108..95 in b). Pure red (1, 0, 0) is (53.24, 80.09, 67.20); white is (100, 0, 0).

Example::

    >>> lab = rgb_to_lab(images)          # float (B, 3, H, W) in [0, 1] -> (B, 3, H, W) L, a, b
    >>> rgb = lab_to_rgb(lab)             # back, clipped to [0, 1]
"""
from __future__ import annotations

import torch

#: linear sRGB -> XYZ (D65), rows X, Y, Z
RGB_TO_XYZ = (
    (0.4124564, 0.3575761, 0.1804375),
    (0.2126729, 0.7151522, 0.0721750),
    (0.0193339, 0.1191920, 0.9503041),
)
#: D65 reference white (X, Y, Z)
D65_WHITE = (0.95047, 1.0, 1.08883)
_EPS = (6.0 / 29.0) ** 3
_SLOPE = 1.0 / (3.0 * (6.0 / 29.0) ** 2)


def _mix(x: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """``matrix`` (3, 3) applied to the channel dimension (1) of ``x`` (B, 3, ...)."""
    return torch.einsum("ij,bj...->bi...", matrix, x)


def _check(x: torch.Tensor, what: str) -> None:
    if x.ndim < 2 or x.shape[1] != 3 or not x.is_floating_point():
        raise ValueError(f"{what} needs a float tensor (B, 3, ...), got {x.dtype} of shape {tuple(x.shape)}")


def srgb_to_linear(c: torch.Tensor) -> torch.Tensor:
    """Inverse sRGB companding of values in [0, 1]."""
    return torch.where(c <= 0.04045, c / 12.92, ((c.clamp(min=0.04045) + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(c: torch.Tensor) -> torch.Tensor:
    """sRGB companding of linear values in [0, 1]."""
    return torch.where(c <= 0.0031308, 12.92 * c, 1.055 * c.clamp(min=0.0031308) ** (1.0 / 2.4) - 0.055)


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB (B, 3, ...) in [0, 1] -> L*a*b* (B, 3, ...) under D65, in float32 or wider.

    Inputs outside [0, 1] are clipped first (the conversion is defined on the sRGB cube).
    """
    _check(rgb, "rgb_to_lab")
    rgb = rgb.float() if rgb.dtype in (torch.float16, torch.bfloat16) else rgb
    lin = srgb_to_linear(rgb.clamp(0.0, 1.0))
    xyz = _mix(lin, lin.new_tensor(RGB_TO_XYZ)) / lin.new_tensor(D65_WHITE).view(1, 3, *([1] * (rgb.ndim - 2)))
    f = torch.where(xyz > _EPS, xyz.clamp(min=_EPS) ** (1.0 / 3.0), xyz * _SLOPE + 4.0 / 29.0)
    fx, fy, fz = f[:, 0], f[:, 1], f[:, 2]
    return torch.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], dim=1)


def lab_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    """L*a*b* (B, 3, ...) under D65 -> sRGB (B, 3, ...) clipped to [0, 1] (colours outside the
    sRGB gamut, e.g. a predicted ab too saturated for its L, are clipped per channel)."""
    _check(lab, "lab_to_rgb")
    lab = lab.float() if lab.dtype in (torch.float16, torch.bfloat16) else lab
    fy = (lab[:, 0] + 16.0) / 116.0
    f = torch.stack([fy + lab[:, 1] / 500.0, fy, fy - lab[:, 2] / 200.0], dim=1)
    xyz = torch.where(f > 6.0 / 29.0, f ** 3, (f - 4.0 / 29.0) / _SLOPE)
    xyz = xyz * lab.new_tensor(D65_WHITE).view(1, 3, *([1] * (lab.ndim - 2)))
    lin = _mix(xyz, torch.linalg.inv(lab.new_tensor(RGB_TO_XYZ)))
    return linear_to_srgb(lin.clamp(0.0, 1.0))


__all__ = ["D65_WHITE", "RGB_TO_XYZ", "lab_to_rgb", "linear_to_srgb", "rgb_to_lab", "srgb_to_linear"]
