"""Moving MNIST generator: shapes, determinism, bounce, motion labels, and 3D rotation on clips."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from multissl.adapters.video_moving_mnist import direction_of, moving_mnist
from multissl.errors import ConfigError, DataError
from multissl.methods.rotation import rotate_all


def digit_images(n=10):
    """Small synthetic 'digits': a filled 28x28 square of a distinct gray level each, with a border row."""
    d = np.zeros((n, 28, 28), np.uint8)
    for i in range(n):
        d[i, 4:24, 4:24] = 100 + 15 * i
    return d


def test_shapes_and_value_range():
    mm = moving_mnist(digit_images(), num_sequences=7, seed=0)
    assert mm.videos.shape == (7, 20, 64, 64) and mm.videos.dtype == np.uint8
    assert mm.positions.shape == (7, 20, 2, 2) and mm.velocity.shape == (7, 2, 2)
    assert mm.direction.shape == (7,) and mm.digit_index.shape == (7, 2) and mm.digit_labels is None
    # every frame holds its digits' pixels: max-combined, so the brightest digit value is there
    for n in range(7):
        assert mm.videos[n].reshape(20, -1).max(1).min() == max(100 + 15 * i for i in mm.digit_index[n])


def test_seed_reproduces_and_differs():
    a = moving_mnist(digit_images(), num_sequences=5, seed=1)
    b = moving_mnist(digit_images(), num_sequences=5, seed=1)
    c = moving_mnist(digit_images(), num_sequences=5, seed=2)
    assert np.array_equal(a.videos, b.videos) and np.array_equal(a.direction, b.direction)
    assert not np.array_equal(a.videos, c.videos)


def test_digits_stay_inside_and_bounce():
    mm = moving_mnist(digit_images(), num_sequences=200, num_frames=40, seed=0)
    assert mm.positions.min() >= 0 and mm.positions.max() <= 64 - 28
    steps = np.diff(mm.positions, axis=1)                        # (N, T-1, D, 2)
    assert np.abs(steps).max() <= 4                              # constant speed 3.6 px (rounded)
    flips = (np.sign(steps[:, 1:]) * np.sign(steps[:, :-1]) < 0).sum()
    assert flips > 100                                           # they do bounce off the borders
    # the pixel content agrees with the trajectories: the digit square is where positions say
    one = moving_mnist(digit_images(1), num_sequences=3, num_digits=1, seed=5)
    for n in range(3):
        for t in (0, 10, 19):
            r, c = one.positions[n, t, 0]
            assert one.videos[n, t, r + 4:r + 24, c + 4:c + 24].min() == 100
            assert one.videos[n, t].sum() == 100 * 20 * 20


def test_direction_labels():
    assert direction_of(np.array([[0.0, 1.0], [-1.0, 0.0], [0.0, -1.0], [1.0, 0.0]])).tolist() == [0, 1, 2, 3]
    mm = moving_mnist(digit_images(), num_sequences=400, seed=0, same_direction=True, labels=np.arange(10))
    assert np.allclose(mm.velocity[:, 0], mm.velocity[:, 1])
    assert set(np.bincount(mm.direction, minlength=4) > 60) == {True}   # balanced-ish over 4 quadrants
    # the label matches the first displacement of the digits (before any bounce, mostly)
    first = mm.positions[:, 1, 0] - mm.positions[:, 0, 0]
    agree = (direction_of(first.astype(float)) == mm.direction).mean()
    assert agree > 0.8
    assert np.array_equal(mm.digit_labels, mm.digit_index)


def test_bad_input():
    with pytest.raises(DataError, match="uint8"):
        moving_mnist(digit_images().astype(np.float32), num_sequences=2)
    with pytest.raises(DataError, match="shape"):
        moving_mnist(np.zeros((28, 28), np.uint8), num_sequences=2)
    with pytest.raises(ConfigError, match="num_sequences"):
        moving_mnist(digit_images(), num_sequences=0)


def test_rotate_all_turns_whole_clips():
    clip = torch.arange(2 * 1 * 3 * 4 * 4, dtype=torch.float32).view(2, 1, 3, 4, 4)  # (B, C, T, H, W)
    rotated, labels = rotate_all(clip)
    assert rotated.shape == (8, 1, 3, 4, 4) and labels.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    for k in range(4):
        for t in range(3):  # every frame of the clip turned by the same angle
            assert torch.equal(rotated[2 * k + 1, 0, t], torch.rot90(clip[1, 0, t], k))
