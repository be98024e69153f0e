"""Input checks and float32 handling shared by the loss functions."""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch


def check_pair(loss: str, a: torch.Tensor, b: torch.Tensor, names: str = "z1, z2") -> None:
    """Raise a clear ``ValueError`` unless ``a`` and ``b`` are (B, D) tensors of one shape."""
    first, second = (n.strip() for n in names.split(","))
    for name, t in ((first, a), (second, b)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{loss}: {name} must be a torch.Tensor, got {type(t).__name__}")
        if t.ndim != 2:
            raise ValueError(f"{loss}: {name} must have shape (batch, dim), got {tuple(t.shape)}")
        if t.shape[0] == 0 or t.shape[1] == 0:
            raise ValueError(f"{loss}: {name} is empty, shape {tuple(t.shape)}")
    if a.shape != b.shape:
        raise ValueError(f"{loss}: {first} and {second} must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")


def check_positive(loss: str, name: str, value: float) -> None:
    if not value > 0:
        raise ValueError(f"{loss}: {name} must be > 0, got {value}")


@contextlib.contextmanager
def full_precision(t: torch.Tensor) -> Iterator[None]:
    """Disable autocast on ``t``'s device: similarity logits, exponentials and covariance
    sums lose too much in float16/bfloat16, so losses run in float32 (inputs cast with
    :func:`upcast`) even inside a mixed-precision training step."""
    with torch.autocast(device_type=t.device.type, enabled=False):
        yield


def upcast(t: torch.Tensor) -> torch.Tensor:
    """``t`` in float32, or float64 if it already is (never lose precision)."""
    return t if t.dtype in (torch.float32, torch.float64) else t.float()


def check_global_batch(loss: str, n: int) -> None:
    """Variances and correlations need at least two samples (after gathering)."""
    if n < 2:
        raise ValueError(f"{loss} needs a (global) batch of at least 2 samples to estimate variances, got {n}")
