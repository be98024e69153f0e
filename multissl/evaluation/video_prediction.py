"""Video prediction metrics as the field reports them, and the copy-last-frame baseline.

The per-frame MSE of the video-prediction literature (OpenSTL, Tan et al., NeurIPS 2023
Datasets and Benchmarks, https://arxiv.org/abs/2306.11249; the Moving MNIST tables of
PredRNN, SimVP, ...) is **not** a per-pixel mean: with pixels in [0, 1], the squared error is
summed over the C x H x W values of a frame, then averaged over the batch and the predicted
frames. On 64x64 Moving MNIST a frame has 4096 values, so the figures are in the tens
(OpenSTL: ConvLSTM-S 29.80 after 200 epochs on a GPU). The per-frame MAE is defined the same
way with absolute errors.

    >>> pred, true = torch.rand(8, 10, 1, 64, 64), torch.rand(8, 10, 1, 64, 64)  # (B, T, C, H, W)
    >>> per_frame_mse(pred, true)        # scalar tensor
    >>> mse_by_time(pred, true)          # (T,): error of each predicted step
"""
from __future__ import annotations

import torch


def _check(pred: torch.Tensor, target: torch.Tensor) -> None:
    if not isinstance(pred, torch.Tensor) or not isinstance(target, torch.Tensor):
        raise TypeError("per-frame metrics take tensors (B, T, C, H, W)")
    if pred.shape != target.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    if pred.ndim < 3:
        raise ValueError(f"expected frames (B, T, ...) with at least one value per frame, got {tuple(pred.shape)}")


def mse_by_time(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(T,): squared error summed over each frame's values (dims 2...), averaged over the batch."""
    _check(pred, target)
    return (pred.float() - target.float()).pow(2).flatten(2).sum(2).mean(0)


def per_frame_mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """OpenSTL's MSE: squared error summed over C x H x W, averaged over batch and time.

    ``pred`` and ``target`` are (B, T, C, H, W) (or any (B, T, ...)) with pixels in [0, 1].
    """
    return mse_by_time(pred, target).mean()


def per_frame_mae(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """OpenSTL's MAE: absolute error summed over C x H x W, averaged over batch and time."""
    _check(pred, target)
    return (pred.float() - target.float()).abs().flatten(2).sum(2).mean()


def copy_last_frame(context: torch.Tensor, num_future: int) -> torch.Tensor:
    """The trivial predictor: the last context frame repeated ``num_future`` times.

    ``context`` is (B, T, ...); returns (B, num_future, ...).
    """
    if context.ndim < 3 or context.shape[1] < 1:
        raise ValueError(f"expected context frames (B, T >= 1, ...), got {tuple(context.shape)}")
    if num_future < 1:
        raise ValueError(f"num_future must be at least 1, got {num_future}")
    last = context[:, -1:]
    return last.expand(last.shape[0], num_future, *last.shape[2:]).clone()


__all__ = ["per_frame_mse", "per_frame_mae", "mse_by_time", "copy_last_frame"]
