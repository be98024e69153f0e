"""Time-series augmentations: what each one does to a batch, padding, seeding."""
from __future__ import annotations

import pytest
import torch

from multissl.adapters import timeseries_transforms as T

torch.set_num_threads(1)


@pytest.fixture()
def batch():
    g = torch.Generator().manual_seed(0)
    length = torch.tensor([40, 25, 33, 40])
    x = torch.randn(4, 3, 40, generator=g).cumsum(-1)
    x = x * T.valid_mask(length, 40).unsqueeze(1)
    return x, length


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def padding_is_zero(x, length):
    return bool((x * (~T.valid_mask(length, x.shape[-1])).unsqueeze(1)).abs().max() == 0)


def test_scaling_multiplies_each_channel_by_one_factor(batch):
    x, length = batch
    y = T.scaling(x, length, 0.3, gen())
    ratio = y / x.masked_fill(x == 0, 1.0)
    real = T.valid_mask(length, 40).unsqueeze(1).expand_as(x) & (x != 0)
    for b in range(4):
        for c in range(3):
            r = ratio[b, c][real[b, c]]
            assert torch.allclose(r, r[0].expand_as(r), rtol=1e-5)
    assert not torch.allclose(ratio[0, 0, 0], ratio[0, 1, 0])  # per channel, not per series
    assert padding_is_zero(y, length)


def test_jitter_adds_noise_of_the_given_scale_only_inside_series(batch):
    x, length = batch
    y = T.jitter(x, length, 0.5, gen())
    noise = (y - x)[T.valid_mask(length, 40).unsqueeze(1).expand_as(x)]
    assert 0.4 < float(noise.std()) < 0.6 and abs(float(noise.mean())) < 0.1
    assert padding_is_zero(y, length)


def test_timestamp_mask_zeroes_only_the_masked_steps(batch):
    x, length = batch
    y, hidden = T.timestamp_mask(x, length, 0.5, gen())
    assert hidden.dtype == torch.bool and hidden.shape == (4, 40)
    assert not (hidden & ~T.valid_mask(length, 40)).any()  # padding is never "hidden"
    assert (y.transpose(1, 2)[hidden] == 0).all()  # every channel of a hidden step is 0
    keep = ~hidden
    assert torch.equal(y.transpose(1, 2)[keep], x.transpose(1, 2)[keep])  # the rest untouched
    assert 0.35 < float(hidden.sum()) / float(length.sum()) < 0.65


def test_time_warp_keeps_ends_and_range_and_zero_warp_is_identity(batch):
    x, length = batch
    same = T.time_warp(x, length, 0.0, 4, gen())
    assert torch.allclose(same, x, atol=1e-5)
    y = T.time_warp(x, length, 0.5, 4, gen())
    for b, n in enumerate(length.tolist()):
        assert torch.allclose(y[b, :, 0], x[b, :, 0], atol=1e-5)
        assert torch.allclose(y[b, :, n - 1], x[b, :, n - 1], atol=1e-4)
        assert float(y[b, :, :n].max()) <= float(x[b, :, :n].max()) + 1e-4  # interpolation: no new extremes
    assert padding_is_zero(y, length)
    assert not torch.allclose(y, x)


def test_window_slice_shows_a_stretched_part_of_the_series():
    x = torch.arange(50, dtype=torch.float32).view(1, 1, 50)  # a ramp: slices are ramps with slope <= 1
    length = torch.tensor([50])
    y = T.window_slice(x, length, 0.5, gen(3))
    d = y[0, 0, 1:] - y[0, 0, :-1]
    assert torch.allclose(d, d[0].expand_as(d), atol=1e-4) and 0.5 - 1e-4 <= float(d[0]) <= 1.0 + 1e-4
    assert float(y.min()) >= 0 and float(y.max()) <= 49


def test_random_crop_returns_contiguous_windows_and_their_offsets(batch):
    x, length = batch
    y, new_len, offset = T.random_crop(x, length, 0.5, gen())
    for b in range(4):
        n, o = int(new_len[b]), int(offset[b])
        assert n >= round(0.5 * int(length[b])) - 1 and o + n <= int(length[b])
        assert torch.equal(y[b, :, :n], x[b, :, o:o + n])
    assert padding_is_zero(y, new_len)


def test_overlapping_crops_share_a_segment_of_equal_length(batch):
    x = torch.randn(6, 2, 60, generator=gen())
    length = torch.full((6,), 60)
    (x1, l1, o1), (x2, l2, o2) = T.overlapping_crops(x, length, 0.3, gen(1))
    overlap = torch.minimum(o1 + l1, o2 + l2) - torch.maximum(o1, o2)
    assert (overlap == overlap[0]).all() and int(overlap[0]) >= 18
    for b in range(6):
        assert torch.equal(x1[b, :, : int(l1[b])], x[b, :, int(o1[b]): int(o1[b] + l1[b])])
        assert torch.equal(x2[b, :, : int(l2[b])], x[b, :, int(o2[b]): int(o2[b] + l2[b])])


def test_permute_segments_rearranges_the_same_values(batch):
    x, length = batch
    y = T.permute_segments(x, length, 5, gen())
    for b, n in enumerate(length.tolist()):
        a = x[b, 0, :n].sort().values
        assert torch.equal(y[b, 0, :n].sort().values, a)  # a permutation of the steps
    assert padding_is_zero(y, length)
    assert not torch.equal(y, x)
    assert torch.equal(T.permute_segments(x, length, 1, gen()), x)


def test_magnitude_warp_is_a_smooth_positive_gain(batch):
    x, length = batch
    ones = torch.ones_like(x) * T.valid_mask(length, 40).unsqueeze(1)
    curve = T.magnitude_warp(ones, length, 0.1, 4, gen())
    real = T.valid_mask(length, 40).unsqueeze(1).expand_as(x)
    assert float(curve[real].min()) > 0.5 and float(curve[real].max()) < 1.5
    steps = (curve[..., 1:] - curve[..., :-1]).abs()[real[..., 1:] & real[..., :-1]]
    assert float(steps.max()) < 0.1  # piecewise linear over 4 knots: small steps
    assert padding_is_zero(curve, length)


def test_frequency_perturb_changes_the_spectrum_not_the_level(batch):
    x, length = batch
    y = T.frequency_perturb(x, length, 0.2, gen())
    assert not torch.allclose(y, x) and torch.isfinite(y).all()
    full = torch.full((4,), 40)
    z = T.frequency_perturb(x, full, 0.0, gen())
    assert torch.allclose(z, x, atol=1e-4)  # ratio 0: the FFT round trip is exact
    assert padding_is_zero(y, length)


def test_spectrogram_mask_round_trip_and_masking(batch):
    x, length = batch
    full = torch.full((4,), 40)
    same = T.spectrogram_mask(x, full, 0.0, 0.0, g=gen())
    assert torch.allclose(same, x, atol=1e-4)
    y = T.spectrogram_mask(x, length, 0.5, 0.5, g=gen())
    assert not torch.allclose(y, x) and padding_is_zero(y, length)


def test_every_transform_is_reproducible_from_the_generator(batch):
    x, length = batch
    for fn in (lambda g: T.jitter(x, length, 0.1, g), lambda g: T.time_warp(x, length, 0.3, 4, g),
               lambda g: T.permute_segments(x, length, 4, g), lambda g: T.frequency_perturb(x, length, 0.1, g),
               lambda g: T.window_slice(x, length, 0.5, g), lambda g: T.timestamp_mask(x, length, 0.3, g)[0]):
        assert torch.equal(fn(gen(7)), fn(gen(7)))
        assert not torch.equal(fn(gen(7)), fn(gen(8)))
