"""Vectorised DTW against the textbook double loop."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from multissl.errors import ConfigError
from multissl.evaluation.dtw import dtw_cross, dtw_distance, dtw_pairs


def naive_dtw(a: np.ndarray, b: np.ndarray, band: float = math.inf) -> float:
    """O(n m) double loop; with a band, cells with |i/(n-1) - j/(m-1)| > band are forbidden."""
    n, m = len(a), len(b)
    d = np.full((n + 1, m + 1), math.inf)
    d[0, 0] = 0.0
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            if n > 1 and m > 1 and abs((i - 1) / (n - 1) - (j - 1) / (m - 1)) > band + 1e-9:
                continue
            d[i, j] = float(np.linalg.norm(a[i - 1] - b[j - 1])) + min(d[i - 1, j], d[i, j - 1], d[i - 1, j - 1])
    return float(d[n, m])


def random_set(seed: int, count: int, max_len: int = 25, features: int = 3):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, max_len + 1, size=count)
    lengths[:2] = [1, max_len]
    x = torch.zeros(count, max_len, features)
    for i, t in enumerate(lengths):
        x[i, :t] = torch.from_numpy(rng.normal(size=(t, features))).float()
    return x, torch.from_numpy(lengths)


def test_matches_the_double_loop():
    x, n = random_set(0, 6)
    y, m = random_set(1, 5)
    d = dtw_cross(x, n, y, m, max_cells=2000)  # small batches too
    ref = np.array([[naive_dtw(x[i, :n[i]].numpy(), y[j, :m[j]].numpy()) for j in range(5)] for i in range(6)])
    assert d.shape == (6, 5)
    np.testing.assert_allclose(d.numpy(), ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("band", [0.3, 0.1])
def test_band_matches_the_double_loop_with_the_widened_band(band):
    x, n = random_set(2, 5, max_len=20)
    d = dtw_cross(x, n, x, n, band=band)
    for i in range(5):
        for j in range(5):
            a, b = x[i, :n[i]].numpy(), x[j, :n[j]].numpy()
            # the band is widened just enough to connect the corners (see _band_halfwidth)
            w = max(band, 0.5 / max(len(a) - 1, 1) + 0.5 / max(len(b) - 1, 1)) if min(len(a), len(b)) > 1 else math.inf
            assert float(d[i, j]) == pytest.approx(naive_dtw(a, b, w), rel=1e-5, abs=1e-5)
    assert torch.isfinite(d).all()


def test_band_never_lowers_the_distance_and_a_wide_band_changes_nothing():
    x, n = random_set(3, 6)
    free = dtw_cross(x, n, x, n)
    assert (dtw_cross(x, n, x, n, band=0.05) >= free - 1e-5).all()
    assert torch.allclose(dtw_cross(x, n, x, n, band=1.0), free)


def test_properties_identity_symmetry_padding_and_normalisation():
    x, n = random_set(4, 5)
    d = dtw_cross(x, n, x, n)
    assert torch.allclose(d, d.T, atol=1e-5) and torch.all(d.diagonal() == 0)
    noisy = x.clone()
    noisy[~torch.arange(x.shape[1]).lt(n[:, None])] = 1e3  # padding content is never read
    assert torch.allclose(dtw_cross(noisy, n, noisy, n), d)
    first, second = torch.tensor([0, 3]), torch.tensor([2, 4])
    normed = dtw_pairs(x, n, first, second, normalize=True)
    assert torch.allclose(normed, d[first, second] / (n[first] + n[second]))


def test_time_warped_copy_is_closer_than_a_different_sequence():
    t = torch.linspace(0, 6.28, 50)
    a = torch.stack([torch.sin(t), torch.cos(t)], 1)
    warped = torch.stack([torch.sin(t ** 1.2 / 6.28 ** 0.2), torch.cos(t ** 1.2 / 6.28 ** 0.2)], 1)
    other = torch.stack([torch.cos(2 * t), torch.sin(3 * t)], 1)
    d = dtw_distance(torch.stack([a, a]), torch.tensor([50, 50]), torch.stack([warped, other]), torch.tensor([50, 50]))
    assert d[0] < 0.25 * d[1]


def test_bad_arguments():
    x, n = random_set(5, 2)
    with pytest.raises(ConfigError, match="band"):
        dtw_cross(x, n, x, n, band=-0.1)
    with pytest.raises(ConfigError, match="same length"):
        dtw_pairs(x, n, torch.tensor([0, 1]), torch.tensor([0]))
    with pytest.raises(ConfigError, match="same pairs and F"):
        dtw_distance(x, n, x[:, :, :2], n)
