"""Batched, on-device image augmentations for self-supervised learning.

Every op works on a whole batch ``x`` of float images (B, C, H, W) in [0, 1] and takes its
per-sample parameters as tensors of shape (B,), so one call augments every image differently
without a Python loop over samples. Each op reproduces the matching
``torchvision.transforms.v2.functional`` kernel applied to one image with the same parameter
(see ``tests/adapters/test_image_transforms.py``):

=========================  ==============================================================
op here                    torchvision.transforms.v2.functional reference (per sample)
=========================  ==============================================================
:func:`resized_crop`       ``resized_crop(img, top, left, h, w, size)`` (+ ``horizontal_flip``)
:func:`adjust_brightness`  ``adjust_brightness(img, f)``
:func:`adjust_contrast`    ``adjust_contrast(img, f)``
:func:`adjust_saturation`  ``adjust_saturation(img, f)``
:func:`adjust_hue`         ``adjust_hue(img, f)`` (HSV round trip)
:func:`rgb_to_grayscale`   ``rgb_to_grayscale(img, num_output_channels=C)``
:func:`gaussian_blur`      ``gaussian_blur(img, [k, k], [sigma, sigma])``
:func:`solarize`           ``solarize(img, threshold)``
=========================  ==============================================================

The random parameters come from :func:`sample_params`, which draws everything for a batch
from one ``torch.Generator`` in a fixed order, so a seed reproduces a view exactly.
:func:`augment` chains the ops into the SimCLR pipeline (Chen et al., 2020, "A Simple
Framework for Contrastive Learning of Visual Representations", appendix A):
random resized crop + horizontal flip, colour jitter (brightness, contrast, saturation, hue
in a random order per sample, applied with probability ``cj_prob``), random grayscale,
Gaussian blur, solarisation.

    >>> x = torch.rand(8, 3, 32, 32)
    >>> g = torch.Generator().manual_seed(0)
    >>> p = sample_params(x, AugmentParams(crop_scale=(0.2, 1.0)), generator=g)
    >>> augment(x, p).shape
    torch.Size([8, 3, 32, 32])
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F

Size = Union[int, Tuple[int, int], Sequence[int]]

#: ITU-R 601-2 luma weights, as torchvision uses for float images
GRAY_WEIGHTS = (0.2989, 0.587, 0.114)


def _size2(size: Size) -> Tuple[int, int]:
    if isinstance(size, int):
        return (size, size)
    h, w = size
    return (int(h), int(w))


def _col(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A (B,) parameter as (B, 1, 1, 1) in ``x``'s dtype/device, ready to broadcast."""
    return v.to(device=x.device, dtype=x.dtype).view(-1, 1, 1, 1)


# ---------------------------------------------------------------------------------------
# geometry
# ---------------------------------------------------------------------------------------
def _crop_coords(start: torch.Tensor, length: torch.Tensor, out: int, dtype: torch.dtype) -> torch.Tensor:
    """Source pixel coordinates (B, out) sampled by a bilinear resize of [start, start+length)
    to ``out`` pixels, half-pixel centred and clamped inside the crop like
    ``torch.nn.functional.interpolate(mode="bilinear", align_corners=False)`` on the crop."""
    i = torch.arange(out, device=start.device, dtype=dtype).unsqueeze(0) + 0.5
    length = length.to(dtype).unsqueeze(1)
    src = i * (length / out) - 0.5
    src = torch.minimum(src.clamp(min=0.0), length - 1)
    return src + start.to(dtype).unsqueeze(1)


def resized_crop(
    x: torch.Tensor,
    top: torch.Tensor,
    left: torch.Tensor,
    height: torch.Tensor,
    width: torch.Tensor,
    size: Size,
    flip: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Crop box ``(top, left, height, width)`` of every image (per-sample (B,) tensors,
    integers or fractional) resized bilinearly to ``size``, then mirrored left-right where
    ``flip`` (bool (B,)) is set. One ``grid_sample`` call for the whole batch.

    Matches ``torchvision.transforms.v2.functional.resized_crop(..., antialias=False)``
    (and the antialiased version whenever the crop is upscaled, as in RandomResizedCrop
    with the output size equal to the image size) followed by ``horizontal_flip``.
    """
    B, _, H, W = x.shape
    oh, ow = _size2(size)
    ys = _crop_coords(top.to(x.device), height.to(x.device), oh, x.dtype)  # (B, oh) in pixels
    xs = _crop_coords(left.to(x.device), width.to(x.device), ow, x.dtype)  # (B, ow)
    if flip is not None:
        xs = torch.where(flip.to(x.device).view(-1, 1), xs.flip(1), xs)
    # align_corners=True: -1 and +1 are the centres of the first and last pixel
    gx = xs * (2.0 / (W - 1)) - 1.0 if W > 1 else torch.zeros_like(xs)
    gy = ys * (2.0 / (H - 1)) - 1.0 if H > 1 else torch.zeros_like(ys)
    grid = torch.stack((gx.unsqueeze(1).expand(B, oh, ow), gy.unsqueeze(2).expand(B, oh, ow)), dim=-1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=True)


def horizontal_flip(x: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Mirror the images where ``flip`` (bool (B,)) is set."""
    return torch.where(flip.to(x.device).view(-1, 1, 1, 1), x.flip(-1), x)


def resize(x: torch.Tensor, size: Size) -> torch.Tensor:
    """Deterministic resize of a batch to ``size`` without distortion: scale so the image
    covers the target (shorter side matched), then centre-crop. Bilinear with antialiasing
    for float batches; uint8 batches stay uint8 (rounded)."""
    oh, ow = _size2(size)
    H, W = x.shape[-2:]
    if (H, W) == (oh, ow):
        return x
    scale = max(oh / H, ow / W)
    nh, nw = max(oh, int(round(H * scale))), max(ow, int(round(W * scale)))
    if x.dtype == torch.uint8:
        y = F.interpolate(x.float(), size=(nh, nw), mode="bilinear", align_corners=False, antialias=True)
        y = y.round_().clamp_(0, 255).to(torch.uint8)
    else:
        y = F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False, antialias=True)
    t, l = (nh - oh) // 2, (nw - ow) // 2
    return y[..., t:t + oh, l:l + ow]


# ---------------------------------------------------------------------------------------
# colour
# ---------------------------------------------------------------------------------------
def _gray(x: torch.Tensor) -> torch.Tensor:
    """Luma (B, 1, H, W) of RGB images (the input itself when single-channel)."""
    if x.shape[1] == 1:
        return x
    r, g, b = x.unbind(1)
    return (r * GRAY_WEIGHTS[0] + g * GRAY_WEIGHTS[1] + b * GRAY_WEIGHTS[2]).unsqueeze(1)


def _blend(x: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    f = _col(factor, x)
    return (x * f + other * (1.0 - f)).clamp_(0.0, 1.0)


def adjust_brightness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Multiply by ``factor`` (B,) and clamp to [0, 1]."""
    return (x * _col(factor, x)).clamp_(0.0, 1.0)


def adjust_contrast(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend each image with the mean of its grayscale version."""
    mean = _gray(x).mean(dim=(-3, -2, -1), keepdim=True)
    return _blend(x, mean, factor)


def adjust_saturation(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend each image with its grayscale version (no-op for single-channel images)."""
    if x.shape[1] == 1:
        return x
    return _blend(x, _gray(x), factor)


def adjust_hue(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Rotate the hue by ``factor`` (B,) in [-0.5, 0.5] turns (no-op for single-channel).

    Same result as torchvision's RGB -> HSV -> RGB round trip, written without building
    the HSV image: a hue rotation keeps the max (V) and the chroma (max - min) of every
    pixel, so each channel is ``max - chroma * clamp(min(k, 4 - k), 0, 1)`` with
    ``k = (n + 6 h) mod 6`` and n = 5, 3, 1 for R, G, B.
    """
    if x.shape[1] == 1:
        return x
    r, g, b = x.unbind(1)
    maxc = torch.amax(x, dim=1)
    minc = torch.amin(x, dim=1)
    chroma = maxc - minc
    safe = torch.where(chroma > 0, chroma, torch.ones_like(chroma))
    # which channel holds the max decides the hue sector (ties: red, then green, as torchvision)
    is_r, is_g = maxc == r, maxc == g
    num = torch.where(is_r, g - b, torch.where(is_g, b - r, r - g))
    offset = torch.where(is_r, 0.0, torch.where(is_g, 2.0, 4.0)).to(x.dtype)
    h = num.div_(safe).add_(offset)  # in [-1, 5): hue in sixths of a turn, before wrapping
    h = h.add_(6.0 * factor.to(device=x.device, dtype=x.dtype).view(-1, 1, 1)).remainder_(6.0)
    n = torch.tensor([5.0, 3.0, 1.0], device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    k = (n + h.unsqueeze(1)).remainder_(6.0)
    ramp = torch.minimum(k, 4.0 - k).clamp_(0.0, 1.0)
    return (maxc.unsqueeze(1) - chroma.unsqueeze(1) * ramp).clamp_(0.0, 1.0)


def rgb_to_grayscale(x: torch.Tensor) -> torch.Tensor:
    """Grayscale with as many channels as the input (RGB images get three equal channels)."""
    return _gray(x).expand_as(x).contiguous()


def solarize(x: torch.Tensor, threshold: Union[float, torch.Tensor]) -> torch.Tensor:
    """Invert the pixels at or above ``threshold`` (a float or per-sample (B,) tensor)."""
    t = _col(threshold, x) if isinstance(threshold, torch.Tensor) else threshold
    return torch.where(x >= t, 1.0 - x, x)


def gaussian_kernels(sigma: torch.Tensor, kernel_size: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Normalised 1-D Gaussian kernels (B, kernel_size), one per sigma."""
    half = (kernel_size - 1) / 2.0
    t = torch.linspace(-half, half, kernel_size, device=sigma.device, dtype=dtype)
    s = sigma.to(dtype).view(-1, 1)
    return torch.softmax(-0.5 * (t / s) ** 2, dim=1)


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Blur every image with its own sigma (B,): a separable grouped convolution with
    reflect padding (one group per image channel), like torchvision's gaussian_blur."""
    if kernel_size % 2 != 1 or kernel_size < 1:
        raise ValueError(f"kernel_size must be odd and positive, got {kernel_size}")
    B, C, H, W = x.shape
    if B == 0 or kernel_size == 1:
        return x
    k = gaussian_kernels(sigma.to(x.device), kernel_size, x.dtype).repeat_interleave(C, dim=0)  # (B*C, k)
    pad = kernel_size // 2
    y = F.pad(x.reshape(1, B * C, H, W), (pad, pad, pad, pad), mode="reflect")
    y = F.conv2d(y, k.view(B * C, 1, kernel_size, 1), groups=B * C)
    y = F.conv2d(y, k.view(B * C, 1, 1, kernel_size), groups=B * C)
    return y.view(B, C, H, W)


def normalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    m = torch.as_tensor(mean, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
    inv = 1.0 / torch.as_tensor(std, device=x.device, dtype=torch.float64)
    return (x - m).mul_(inv.to(x.dtype).view(1, -1, 1, 1))


# ---------------------------------------------------------------------------------------
# random parameters and the pipeline
# ---------------------------------------------------------------------------------------
@dataclass
class AugmentParams:
    """Strengths and probabilities of the pipeline (names follow lightly's SimCLRTransform).

    ``brightness``/``contrast``/``saturation`` ``b`` draw a factor uniformly in
    ``[max(0, 1 - b), 1 + b]``; ``hue`` ``h`` a shift in ``[-h, h]``; 0 turns an op off.
    """

    crop_scale: Tuple[float, float] = (0.08, 1.0)
    crop_ratio: Tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0)
    hflip_prob: float = 0.5
    cj_prob: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1
    gray_prob: float = 0.2
    blur_prob: float = 0.0
    blur_sigma: Tuple[float, float] = (0.1, 2.0)
    blur_kernel_size: int = 3
    solarize_prob: float = 0.0
    solarize_threshold: float = 0.5
    #: False: skip the crop (the output keeps the input size) -- e.g. the "none" preset
    crop: bool = True

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def field_names(cls) -> Tuple[str, ...]:
        return tuple(f.name for f in fields(cls))


@dataclass
class BatchParams:
    """Per-sample random parameters for one view of a batch (all tensors of length B)."""

    top: torch.Tensor
    left: torch.Tensor
    height: torch.Tensor
    width: torch.Tensor
    flip: torch.Tensor
    cj_apply: torch.Tensor
    brightness: torch.Tensor
    contrast: torch.Tensor
    saturation: torch.Tensor
    hue: torch.Tensor
    cj_order: torch.Tensor  # (B, 4) permutation of [brightness, contrast, saturation, hue]
    gray: torch.Tensor
    blur: torch.Tensor
    sigma: torch.Tensor
    solarize: torch.Tensor
    settings: AugmentParams = field(default_factory=AugmentParams)
    size: Tuple[int, int] = (0, 0)

    def to(self, device: Union[str, torch.device]) -> "BatchParams":
        kw = {f.name: getattr(self, f.name) for f in fields(self)}
        for k, v in kw.items():
            if isinstance(v, torch.Tensor):
                kw[k] = v.to(device)
        return BatchParams(**kw)


def sample_crop_boxes(
    n: int,
    height: int,
    width: int,
    scale: Tuple[float, float],
    ratio: Tuple[float, float],
    generator: Optional[torch.Generator] = None,
    device: Union[str, torch.device, None] = None,
    attempts: int = 10,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """RandomResizedCrop boxes (top, left, h, w) as int64 (n,) tensors, vectorised:
    ``attempts`` tries per sample of area fraction ~ U(scale) and log aspect ratio
    ~ U(log ratio); the first box that fits wins, else the central fallback crop
    (torchvision's rule)."""
    if device is None:
        device = generator.device if generator is not None else "cpu"
    u = torch.rand(n, attempts, 2, generator=generator, device=device, dtype=torch.float64)
    area = height * width * (scale[0] + (scale[1] - scale[0]) * u[..., 0])
    lo, hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(lo + (hi - lo) * u[..., 1])
    w = torch.sqrt(area * aspect).round().long()
    h = torch.sqrt(area / aspect).round().long()
    ok = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = torch.argmax(ok.to(torch.int8), dim=1, keepdim=True)  # first fitting attempt
    any_ok = ok.any(dim=1)
    h = h.gather(1, first).squeeze(1)
    w = w.gather(1, first).squeeze(1)
    # central fallback crop (a box at the edge of the allowed aspect ratios)
    in_ratio = width / height
    if in_ratio < min(ratio):
        fw, fh = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        fh, fw = height, int(round(height * max(ratio)))
    else:
        fw, fh = width, height
    h = torch.where(any_ok, h, torch.full_like(h, fh))
    w = torch.where(any_ok, w, torch.full_like(w, fw))
    pos = torch.rand(n, 2, generator=generator, device=device, dtype=torch.float64)
    top = torch.floor(pos[:, 0] * (height - h + 1)).long().clamp_(max=height - h)
    left = torch.floor(pos[:, 1] * (width - w + 1)).long().clamp_(max=width - w)
    top = torch.where(any_ok, top, (height - h) // 2)
    left = torch.where(any_ok, left, (width - w) // 2)
    return top, left, h, w


def sample_params(
    x: torch.Tensor,
    settings: AugmentParams,
    generator: Optional[torch.Generator] = None,
    size: Optional[Size] = None,
) -> BatchParams:
    """Draw every random parameter of one view of batch ``x`` (B, C, H, W).

    All draws come from ``generator`` (on its own device; the result is moved to ``x``'s
    device) in a fixed order and regardless of which ops are enabled, so the same seed
    gives the same parameters. ``size`` is the output size (default: the input size).
    """
    B, _, H, W = x.shape
    dev = generator.device if generator is not None else x.device
    top, left, h, w = sample_crop_boxes(B, H, W, tuple(settings.crop_scale), tuple(settings.crop_ratio), generator, dev)
    u = torch.rand(B, 11, generator=generator, device=dev)

    def factor(col: int, strength: float) -> torch.Tensor:
        lo = max(0.0, 1.0 - strength)
        return lo + (1.0 + strength - lo) * u[:, col]

    params = BatchParams(
        top=top, left=left, height=h, width=w,
        flip=u[:, 0] < settings.hflip_prob,
        cj_apply=u[:, 1] < settings.cj_prob,
        brightness=factor(2, settings.brightness),
        contrast=factor(3, settings.contrast),
        saturation=factor(4, settings.saturation),
        hue=(2.0 * u[:, 5] - 1.0) * settings.hue,
        cj_order=torch.rand(B, 4, generator=generator, device=dev).argsort(dim=1),
        gray=u[:, 6] < settings.gray_prob,
        blur=u[:, 7] < settings.blur_prob,
        sigma=settings.blur_sigma[0] + (settings.blur_sigma[1] - settings.blur_sigma[0]) * u[:, 8],
        solarize=u[:, 9] < settings.solarize_prob,
        settings=settings,
        size=_size2(size) if size is not None else (H, W),
    )
    return params.to(x.device) if dev != x.device else params


def _apply_subset(x: torch.Tensor, mask: torch.Tensor, fn, *args: torch.Tensor) -> torch.Tensor:
    """``x`` with ``fn`` applied to the samples where ``mask`` is set (in place)."""
    idx = mask.nonzero().squeeze(1)
    if idx.numel() == 0:
        return x
    if idx.numel() == x.shape[0]:
        return fn(x, *args)
    # index_select/index_copy_ rather than x[idx]: advanced indexing on CPU can be
    # orders of magnitude slower for small index sets (thread-pool overhead)
    out = fn(x.index_select(0, idx), *(a.index_select(0, idx) for a in args))
    return x.index_copy_(0, idx, out)


def color_jitter(x: torch.Tensor, p: BatchParams) -> torch.Tensor:
    """Brightness, contrast, saturation and hue in a random order per sample (each sample's
    ``cj_order``), on the samples with ``cj_apply`` set. Ops whose strength is 0 are skipped,
    and saturation/hue are skipped for single-channel images."""
    s = p.settings
    ops = [
        (adjust_brightness, p.brightness, s.brightness > 0),
        (adjust_contrast, p.contrast, s.contrast > 0),
        (adjust_saturation, p.saturation, s.saturation > 0 and x.shape[1] == 3),
        (adjust_hue, p.hue, s.hue > 0 and x.shape[1] == 3),
    ]
    if not p.cj_apply.any():
        return x
    for step in range(4):
        op_here = p.cj_order[:, step]
        for j, (fn, factor, enabled) in enumerate(ops):
            if enabled:
                x = _apply_subset(x, p.cj_apply & (op_here == j), fn, factor)
    return x


def augment(x: torch.Tensor, p: BatchParams) -> torch.Tensor:
    """The SimCLR pipeline on a float batch in [0, 1] with parameters from :func:`sample_params`:
    resized crop + flip -> colour jitter -> grayscale -> blur -> solarize. Returns [0, 1]
    floats (normalisation is the caller's last step)."""
    s = p.settings
    orig = x
    if s.crop:
        x = resized_crop(x, p.top, p.left, p.height, p.width, p.size, p.flip if s.hflip_prob > 0 else None)
    else:
        if s.hflip_prob > 0:
            x = horizontal_flip(x, p.flip)
        if tuple(x.shape[-2:]) != tuple(p.size):
            x = resize(x, p.size)
    # the colour ops below write into x; never into the caller's tensor
    x = x.clone() if x is orig else x.contiguous()
    if s.cj_prob > 0:
        x = color_jitter(x, p)
    if s.gray_prob > 0 and x.shape[1] == 3:
        x = torch.where(p.gray.view(-1, 1, 1, 1), _gray(x).expand_as(x), x)
    if s.blur_prob > 0 and s.blur_kernel_size > 1:
        x = _apply_subset(x, p.blur, lambda t, sig: gaussian_blur(t, sig, s.blur_kernel_size), p.sigma)
    if s.solarize_prob > 0:
        x = torch.where(p.solarize.view(-1, 1, 1, 1), solarize(x, s.solarize_threshold), x)
    return x


__all__ = [
    "AugmentParams", "BatchParams", "GRAY_WEIGHTS", "adjust_brightness", "adjust_contrast", "adjust_hue",
    "adjust_saturation", "augment", "color_jitter", "gaussian_blur", "gaussian_kernels", "horizontal_flip",
    "normalize", "resize", "resized_crop", "rgb_to_grayscale", "sample_crop_boxes", "sample_params", "solarize",
]
