"""Batched time-series augmentations, on the device, with per-series random parameters.

Every function takes a batch ``x`` float (B, C, T) -- channels first, as PyTorch's ``Conv1d``
and aeon store series -- with the real length of each series ``length`` int64 (B,) (values at
``t >= length[b]`` are padding and are zero on output), and a ``torch.Generator`` on the
batch's device from which every random number is drawn, so a seed reproduces a view exactly.
None of them loops over the batch in Python.

References for the individual transforms:

- jitter, scaling, magnitude warp, time warp, window slice, permutation: Um et al., "Data
  Augmentation of Wearable Sensor Data for Parkinson's Disease Monitoring using Convolutional
  Neural Networks", ICMI 2017; Le Guennec et al., "Data Augmentation for Time Series
  Classification using Convolutional Neural Networks", 2016 (window slicing); Iwana and
  Uchida, "An empirical survey of data augmentation for time series classification with
  neural networks", PLOS ONE 2021.
- random cropping of overlapping sub-series and timestamp masking: Yue et al., "TS2Vec:
  Towards Universal Representation of Time Series", AAAI 2022.
- frequency-domain perturbation (removing and adding spectral components): Zhang et al.,
  "Self-Supervised Contrastive Pre-Training for Time Series via Time-Frequency Consistency"
  (TF-C), NeurIPS 2022.
- spectrogram time/frequency masking: Park et al., "SpecAugment", Interspeech 2019 (computed
  here with ``torch.stft`` / ``torch.istft``; torchaudio's ``FrequencyMasking`` draws from the
  global RNG, which would break per-step seeding).
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import torch

Generator = Optional[torch.Generator]


def valid_mask(length: torch.Tensor, t: int) -> torch.Tensor:
    """(B, t) bool: True at the first ``length[b]`` steps of row b."""
    return torch.arange(t, device=length.device).unsqueeze(0) < length.unsqueeze(1)


def _rand(g: Generator, *shape: int, device: torch.device) -> torch.Tensor:
    return torch.rand(shape, generator=g, device=device)


def _randn(g: Generator, *shape: int, device: torch.device) -> torch.Tensor:
    return torch.randn(shape, generator=g, device=device)


def _zero_padding(x: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
    return x * valid_mask(length, x.shape[-1]).unsqueeze(1).to(x.dtype)


def interpolate(x: torch.Tensor, length: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Linear interpolation of each series at fractional source ``positions`` (B, T') ->
    (B, C, T'). Positions are clamped to ``[0, length - 1]`` so padding is never read."""
    b, c, t = x.shape
    last = (length - 1).clamp_min(0).unsqueeze(1).to(positions.dtype)
    pos = positions.clamp_min(0.0).minimum(last)
    i0 = pos.floor().long().clamp(0, t - 1)
    i1 = (i0 + 1).minimum(last.long())
    w = (pos - i0.to(pos.dtype)).unsqueeze(1)
    g0 = torch.gather(x, 2, i0.unsqueeze(1).expand(-1, c, -1))
    g1 = torch.gather(x, 2, i1.unsqueeze(1).expand(-1, c, -1))
    return g0 * (1 - w) + g1 * w


def smooth_curves(g: Generator, b: int, knots: int, t: int, length: torch.Tensor, channels: int,
                  sigma: float) -> torch.Tensor:
    """(B, channels, t) random smooth curves around 1: values N(1, sigma) at ``knots + 1`` evenly
    spaced knots over each series' own length, linear in between (flat after its end)."""
    dev = length.device
    values = 1.0 + sigma * _randn(g, b, channels, knots + 1, device=dev)
    u = torch.arange(t, device=dev).unsqueeze(0) / (length - 1).clamp_min(1).unsqueeze(1)
    u = u.clamp(max=1.0) * knots
    seg = u.floor().long().clamp(0, knots - 1)
    frac = (u - seg).unsqueeze(1)
    idx = seg.unsqueeze(1).expand(-1, channels, -1)
    return torch.gather(values, 2, idx) * (1 - frac) + torch.gather(values, 2, idx + 1) * frac


# ------------------------------------------------------------------------------ magnitude
def jitter(x: torch.Tensor, length: torch.Tensor, sigma: float, g: Generator = None) -> torch.Tensor:
    """Add Gaussian noise of std ``sigma`` to every real step (sensor noise)."""
    return _zero_padding(x + sigma * _randn(g, *x.shape, device=x.device), length)


def scaling(x: torch.Tensor, length: torch.Tensor, sigma: float, g: Generator = None) -> torch.Tensor:
    """Multiply each channel of each series by one factor drawn from N(1, sigma^2) (gain)."""
    factor = 1.0 + sigma * _randn(g, x.shape[0], x.shape[1], 1, device=x.device)
    return x * factor


def magnitude_warp(x: torch.Tensor, length: torch.Tensor, sigma: float, knots: int = 4,
                   g: Generator = None) -> torch.Tensor:
    """Multiply each channel by a smooth random curve around 1 (slow gain drift)."""
    curve = smooth_curves(g, x.shape[0], knots, x.shape[2], length, x.shape[1], sigma)
    return _zero_padding(x * curve, length)


# ------------------------------------------------------------------------------ time
def time_warp(x: torch.Tensor, length: torch.Tensor, sigma: float, knots: int = 4,
              g: Generator = None) -> torch.Tensor:
    """Resample each series along a smooth, monotone random time map (local speed changes;
    both ends stay fixed, the length is kept). Segment speeds are log-normal with std ``sigma``."""
    b, _, t = x.shape
    dev = x.device
    speeds = torch.exp(sigma * _randn(g, b, knots, device=dev))
    cum = torch.cat([torch.zeros(b, 1, device=dev), speeds.cumsum(1) / speeds.sum(1, keepdim=True)], 1)
    u = torch.arange(t, device=dev).unsqueeze(0) / (length - 1).clamp_min(1).unsqueeze(1)
    u = u.clamp(max=1.0) * knots
    seg = u.floor().long().clamp(0, knots - 1)
    frac = u - seg
    src = torch.gather(cum, 1, seg) * (1 - frac) + torch.gather(cum, 1, seg + 1) * frac
    return _zero_padding(interpolate(x, length, src * (length - 1).unsqueeze(1)), length)


def window_slice(x: torch.Tensor, length: torch.Tensor, min_fraction: float, g: Generator = None) -> torch.Tensor:
    """Take a random window of each series (a fraction in [min_fraction, 1] of its length)
    and stretch it back to the full length (Le Guennec et al. 2016)."""
    b, _, t = x.shape
    dev = x.device
    frac = min_fraction + (1.0 - min_fraction) * _rand(g, b, device=dev)
    span = (length - 1).to(frac.dtype) * frac
    start = _rand(g, b, device=dev) * ((length - 1).to(frac.dtype) - span)
    u = torch.arange(t, device=dev).unsqueeze(0) / (length - 1).clamp_min(1).unsqueeze(1)
    src = start.unsqueeze(1) + u.clamp(max=1.0) * span.unsqueeze(1)
    return _zero_padding(interpolate(x, length, src), length)


def random_crop(x: torch.Tensor, length: torch.Tensor, min_fraction: float,
                g: Generator = None) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A random contiguous sub-series of each series, not stretched (T-Loss / TS2Vec).

    Returns ``(x_crop, new_length, offset)``: ``offset[b]`` is the source index of the crop's
    first step, so step ``i`` of the crop is step ``offset + i`` of the series.
    """
    b, c, t = x.shape
    dev = x.device
    frac = min_fraction + (1.0 - min_fraction) * _rand(g, b, device=dev)
    new_len = (length.to(frac.dtype) * frac).round().long().clamp(min=1).minimum(length)
    offset = (_rand(g, b, device=dev) * (length - new_len + 1).to(frac.dtype)).floor().long()
    offset = offset.minimum(length - new_len)
    return take_window(x, offset, new_len) + (new_len, offset)


def take_window(x: torch.Tensor, offset: torch.Tensor, new_len: torch.Tensor) -> Tuple[torch.Tensor]:
    """Steps ``offset[b] .. offset[b] + new_len[b] - 1`` of each series, left-aligned and
    zero-padded to the longest window -> a 1-tuple (B, C, max(new_len))."""
    c, t = x.shape[1], x.shape[2]
    t_out = int(new_len.max())
    idx = (offset.unsqueeze(1) + torch.arange(t_out, device=x.device).unsqueeze(0)).clamp(max=t - 1)
    out = torch.gather(x, 2, idx.unsqueeze(1).expand(-1, c, -1))
    return (_zero_padding(out, new_len),)


def overlapping_crops(x: torch.Tensor, length: torch.Tensor, min_overlap: float,
                      g: Generator = None) -> Tuple[Tuple[torch.Tensor, torch.Tensor, torch.Tensor], ...]:
    """Two crops of each series that share a common segment (TS2Vec's "random cropping").

    As in TS2Vec the overlap's fraction of the series and the fractions by which each crop
    extends it are drawn once per batch (so a batch of equal-length series shares one overlap
    length), the position per series. Returns two ``(x_crop, new_length, offset)`` triples.
    """
    b = x.shape[0]
    dev = x.device
    lf = length.to(torch.float32)
    u = _rand(g, 3, device=dev)
    overlap = (lf * (min_overlap + (1 - min_overlap) * u[0])).round().clamp(min=1).minimum(lf)
    left_room = _rand(g, b, device=dev)
    start = (left_room * (lf - overlap + 1)).floor().clamp(max=lf - overlap)  # overlap start
    end = start + overlap
    ext_left = (u[1] * start).floor()                    # view 1 starts this far before the overlap
    ext_right = (u[2] * (lf - end)).floor()              # view 2 ends this far after it
    o1, l1 = (start - ext_left).long(), (overlap + ext_left).long()
    o2, l2 = start.long(), (overlap + ext_right).long()
    return (take_window(x, o1, l1) + (l1, o1), take_window(x, o2, l2) + (l2, o2))


def permute_segments(x: torch.Tensor, length: torch.Tensor, max_segments: int, g: Generator = None) -> torch.Tensor:
    """Cut each series into 1..``max_segments`` pieces at random points and shuffle the pieces
    (Um et al. 2017). Padding stays at the end."""
    b, c, t = x.shape
    dev = x.device
    if max_segments < 2:
        return x
    n_seg = 1 + (_rand(g, b, device=dev) * max_segments).floor().long().clamp(max=max_segments - 1)
    # cut points: n_seg - 1 distinct-ish positions inside each series (unused cuts go past the end)
    cuts = (_rand(g, b, max_segments - 1, device=dev) * (length - 1).unsqueeze(1).clamp_min(1)).floor().long() + 1
    used = torch.arange(max_segments - 1, device=dev).unsqueeze(0) < (n_seg - 1).unsqueeze(1)
    cuts = torch.where(used, cuts, torch.full_like(cuts, t + 1)).sort(1).values
    pos = torch.arange(t, device=dev).unsqueeze(0)
    seg = (pos.unsqueeze(-1) >= cuts.unsqueeze(1)).sum(-1)  # (B, T) segment id of each step
    rank = torch.argsort(_rand(g, b, max_segments, device=dev), dim=1).argsort(1)  # random position of each segment
    key = torch.gather(rank, 1, seg) * (t + 1) + pos
    key = torch.where(valid_mask(length, t), key, key + max_segments * (t + 1))  # padding last
    order = key.argsort(1)
    return torch.gather(x, 2, order.unsqueeze(1).expand(-1, c, -1))


def timestamp_mask(x: torch.Tensor, length: torch.Tensor, p: float,
                   g: Generator = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """Hide each real step with probability ``p`` (TS2Vec's timestamp masking).

    Returns ``(x with hidden steps set to 0, hidden (B, T) bool)``; the TS2Vec encoder also
    zeroes its latent vectors at hidden steps, so the value 0 is not mistaken for data.
    """
    hidden = (_rand(g, x.shape[0], x.shape[2], device=x.device) < p) & valid_mask(length, x.shape[2])
    return x.masked_fill(hidden.unsqueeze(1), 0.0), hidden


# ------------------------------------------------------------------------------ frequency
def frequency_perturb(x: torch.Tensor, length: torch.Tensor, ratio: float, g: Generator = None) -> torch.Tensor:
    """Remove a fraction ``ratio`` of the spectral components of each series and add energy to
    another ``ratio`` of them (TF-C's frequency augmentation), via ``torch.fft.rfft``.

    Added components get up to a fifth of the series' largest amplitude with a random phase.
    The DC component is left alone, so the level of a series is kept.
    """
    b, c, t = x.shape
    dev = x.device
    spec = torch.fft.rfft(x.float(), dim=-1)
    f = spec.shape[-1]
    remove = _rand(g, b, c, f, device=dev) < ratio
    add = _rand(g, b, c, f, device=dev) < ratio
    remove[..., 0] = False
    add[..., 0] = False
    peak = spec.abs().amax(-1, keepdim=True)
    amp = _rand(g, b, c, f, device=dev) * 0.2 * peak
    phase = _rand(g, b, c, f, device=dev) * (2 * math.pi)
    spec = torch.where(remove, torch.zeros_like(spec), spec)
    spec = spec + torch.where(add, torch.polar(amp, phase), torch.zeros_like(spec))
    return _zero_padding(torch.fft.irfft(spec, n=t, dim=-1).to(x.dtype), length)


def spectrogram_mask(x: torch.Tensor, length: torch.Tensor, freq_fraction: float, time_fraction: float,
                     n_fft: int = 16, g: Generator = None) -> torch.Tensor:
    """SpecAugment-style masking: one band of frequencies (up to ``freq_fraction`` of them) and
    one span of frames (up to ``time_fraction``) of each channel's short-time Fourier transform
    are zeroed, then the series is resynthesised with the inverse STFT."""
    b, c, t = x.shape
    dev = x.device
    n_fft = max(4, min(n_fft, t))
    hop = max(1, n_fft // 4)
    window = torch.hann_window(n_fft, device=dev)
    flat = x.float().reshape(b * c, t)
    spec = torch.stft(flat, n_fft, hop_length=hop, window=window, center=True, return_complex=True)
    nf, nt = spec.shape[-2], spec.shape[-1]
    spec = spec.reshape(b, c, nf, nt)

    def band(size: int, fraction: float) -> torch.Tensor:
        width = (_rand(g, b, device=dev) * fraction * size).floor()
        start = (_rand(g, b, device=dev) * (size - width + 1)).floor()
        pos = torch.arange(size, device=dev).unsqueeze(0)
        return (pos >= start.unsqueeze(1)) & (pos < (start + width).unsqueeze(1))  # (B, size)

    hide = band(nf, freq_fraction).unsqueeze(-1) | band(nt, time_fraction).unsqueeze(1)  # (B, F, frames)
    spec = spec.masked_fill(hide.unsqueeze(1), 0)
    out = torch.istft(spec.reshape(b * c, nf, nt), n_fft, hop_length=hop, window=window, center=True, length=t)
    return _zero_padding(out.reshape(b, c, t).to(x.dtype), length)


__all__ = ["valid_mask", "interpolate", "smooth_curves", "jitter", "scaling", "magnitude_warp", "time_warp",
           "window_slice", "random_crop", "take_window", "overlapping_crops", "permute_segments",
           "timestamp_mask", "frequency_perturb", "spectrogram_mask"]
