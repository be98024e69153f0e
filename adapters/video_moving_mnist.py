"""Moving MNIST: bouncing digits on a black canvas (Srivastava et al., "Unsupervised Learning of
Video Representations using LSTMs", ICML 2015), generated from any digit images you supply.

The standard construction: a 64x64 canvas, 20 frames, 2 digits of 28x28 pixels, each starting
at a uniformly random position with a uniformly random direction and a constant speed; a digit
that would leave the canvas bounces (the velocity component across that border flips); digits
are combined with a pixel-wise maximum. Everything is drawn from ``numpy.random.default_rng(seed)``,
so a seed reproduces the data set exactly.

    >>> from multissl.io import read_idx
    >>> digits = read_idx(Path("mnist_test/t10k-images-idx3-ubyte.gz"))        # (10000, 28, 28) uint8
    >>> mm = moving_mnist(digits, num_sequences=1000, seed=0)
    >>> mm.videos.shape, mm.direction[:5]                                    # (1000, 20, 64, 64)

Besides the videos it returns each digit's trajectory and a motion label per sequence:
``direction``, the compass quadrant (0 right, 1 up, 2 left, 3 down) of the summed initial
velocity of the digits -- with ``same_direction=True`` every digit of a sequence starts in the
same direction, so the label is the motion itself rather than a vote between two digits.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from multissl.errors import ConfigError, DataError

DIRECTIONS = ("right", "up", "left", "down")


@dataclass
class MovingMNIST:
    """A generated data set; arrays share their first dimension (one row per sequence)."""

    videos: np.ndarray        #: uint8 (N, T, S, S)
    positions: np.ndarray     #: int64 (N, T, D, 2): (row, column) of each digit's top-left corner per frame
    velocity: np.ndarray      #: float64 (N, D, 2): initial (d_row, d_column) per frame, in pixels
    direction: np.ndarray     #: int64 (N,): quadrant of the summed initial velocity, see DIRECTIONS
    digit_index: np.ndarray   #: int64 (N, D): which source image each digit is
    digit_labels: Optional[np.ndarray] = None  #: int64 (N, D): their classes, when labels were given


def direction_of(velocity: np.ndarray) -> np.ndarray:
    """Compass quadrant of (d_row, d_column) vectors (..., 2): 0 right, 1 up, 2 left, 3 down
    (rows grow downwards, so "up" is a negative d_row)."""
    angle = np.arctan2(-velocity[..., 0], velocity[..., 1])  # counter-clockwise from "right"
    return (np.round(angle / (np.pi / 2)).astype(np.int64)) % 4


def moving_mnist(digits: np.ndarray, num_sequences: int = 10000, num_frames: int = 20, num_digits: int = 2,
                 canvas: int = 64, speed: float = 3.6, seed: int = 0, labels: Optional[np.ndarray] = None,
                 same_direction: bool = False) -> MovingMNIST:
    """Generate ``num_sequences`` bouncing-digit videos from ``digits`` (N, h, w) uint8 images.

    ``speed`` is in pixels per frame (3.6 = the reference script's 0.1 of the free range
    64 - 28). With ``same_direction`` all digits of a sequence share one direction (each with
    its own start position).
    """
    d = np.asarray(digits)
    if d.ndim == 4 and d.shape[-1] == 1:
        d = d[..., 0]
    elif d.ndim == 4 and d.shape[1] == 1:
        d = d[:, 0]
    if d.ndim != 3 or len(d) == 0:
        raise DataError(f"digits: expected grayscale images (N, h, w), got shape {d.shape}")
    if d.dtype != np.uint8:
        raise DataError(f"digits: expected uint8 images, got dtype {d.dtype}")
    h, w = d.shape[1:]
    for key, v in (("num_sequences", num_sequences), ("num_frames", num_frames), ("num_digits", num_digits)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ConfigError(f"{key} must be a positive integer, got {v!r}")
    if canvas < max(h, w):
        raise ConfigError(f"canvas {canvas} is smaller than the digits ({h}x{w})")
    if labels is not None and len(labels) != len(d):
        raise DataError(f"labels: {len(labels)} labels for {len(d)} digit images")
    rng = np.random.default_rng(seed)
    limit = np.array([canvas - h, canvas - w], dtype=np.float64)  # largest top-left corner

    index = rng.integers(0, len(d), (num_sequences, num_digits))
    start = rng.uniform(0.0, 1.0, (num_sequences, num_digits, 2)) * limit
    theta = rng.uniform(0.0, 2 * np.pi, (num_sequences, 1 if same_direction else num_digits))
    theta = np.broadcast_to(theta, (num_sequences, num_digits))
    velocity = speed * np.stack([-np.sin(theta), np.cos(theta)], axis=-1)  # (d_row, d_col)

    positions = np.zeros((num_sequences, num_frames, num_digits, 2), dtype=np.int64)
    pos, vel = start.copy(), velocity.copy()
    for t in range(num_frames):
        positions[:, t] = np.round(pos).astype(np.int64)
        pos = pos + vel
        # bounce: reflect the overshoot back inside and flip the velocity across that border
        low, high = pos < 0, pos > limit
        pos = np.where(low, -pos, np.where(high, 2 * limit - pos, pos))
        vel = np.where(low | high, -vel, vel)

    videos = np.zeros((num_sequences, num_frames, canvas, canvas), dtype=np.uint8)
    for k in range(num_digits):
        images = d[index[:, k]]
        for t in range(num_frames):
            rows, cols = positions[:, t, k, 0], positions[:, t, k, 1]
            for n in range(num_sequences):
                r, c = rows[n], cols[n]
                window = videos[n, t, r:r + h, c:c + w]
                np.maximum(window, images[n], out=window)

    return MovingMNIST(
        videos=videos, positions=positions, velocity=velocity.copy(), direction=direction_of(velocity.sum(axis=1)),
        digit_index=index, digit_labels=None if labels is None else np.asarray(labels)[index].astype(np.int64),
    )


__all__ = ["MovingMNIST", "moving_mnist", "direction_of", "DIRECTIONS"]
