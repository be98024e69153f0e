"""Synchronized BatchNorm for data-parallel SSL, on any device (CPU/gloo included).

Why it matters for self-supervised learning
-------------------------------------------
Under DDP every process normalises its *local* slice of the batch. With ``W`` processes of
``B`` samples, a BatchNorm layer sees statistics of ``B`` samples, not of the global ``W * B``:
a 2-process run is then a different model from the 1-process run on the same global batch, and
the contrastive methods can even "cheat" through per-device statistics (the shuffling-BN
discussion of MoCo, He et al. 2020, sec. 3.3; SimCLR, Chen et al. 2020, sec. B.3, uses global
BN). :class:`SyncBatchNorm` computes mean and variance over the global batch.

How
---
Each process computes its per-channel ``(count, mean, M2)`` (``M2`` = sum of squared
deviations from the *local* mean, numerically safer than a raw sum of squares); the rows of all
processes are gathered with :func:`multissl.distributed.gather` -- whose backward pass
all-reduces, so each process receives the gradient every other process's loss sends to its
statistics -- and combined with the parallel-variance formula (Chan et al. 1979)::

    N = sum n_i,   mean = sum n_i mean_i / N,   M2 = sum [M2_i + n_i (mean_i - mean)^2]

The output is ``(x - mean) / sqrt(M2 / N + eps) * weight + bias`` (the biased variance, as
BatchNorm); the running statistics are updated like torch's, with the *unbiased* global
variance ``M2 / (N - 1)`` and ``momentum`` (or the cumulative average when ``momentum=None``).
Gradients flow through the combination by ordinary autograd, so they are the single-process
gradients of the global batch once DDP averages them (the argument of
:mod:`multissl.distributed`).

:func:`convert_sync_batchnorm` replaces every BatchNorm of a model (sharing its parameters and
buffers): with torch's fused :class:`torch.nn.SyncBatchNorm` when the model will run on CUDA
(the fast path there; torch's refuses CPU tensors), with :class:`SyncBatchNorm` otherwise. It
also switches :class:`~multissl.iternorm.IterNorm` (VIbCReg's whitening, another layer with
batch statistics) to whitening with the global batch. :func:`revert_sync_batchnorm` undoes
both, so a saved or exported model holds plain ``nn.BatchNorm`` layers.

Example::

    >>> model = convert_sync_batchnorm(model, device=accelerator.device)  # before prepare()
    >>> model = accelerator.prepare(model)
"""
from __future__ import annotations

from typing import Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from multissl import distributed as msd
from multissl.iternorm import IterNorm


def local_moments(x: torch.Tensor) -> torch.Tensor:
    """Per-channel ``[count, mean_1..C, M2_1..C]`` (a (1 + 2C,) float tensor) of ``x`` (N, C, ...)."""
    dims = [0] + list(range(2, x.ndim))
    count = x.numel() // x.shape[1]
    mean = x.mean(dim=dims)
    m2 = (x - mean.reshape(1, -1, *([1] * (x.ndim - 2)))).pow(2).sum(dim=dims)
    return torch.cat([mean.new_full((1,), float(count)), mean, m2])


def combine_moments(moments: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rows of :func:`local_moments` (W, 1 + 2C) -> global ``(count, mean, M2)`` (Chan et al.)."""
    c = (moments.shape[1] - 1) // 2
    n, means, m2s = moments[:, :1], moments[:, 1 : 1 + c], moments[:, 1 + c :]
    total = n.sum()
    mean = (n * means).sum(dim=0) / total
    m2 = (m2s + n * (means - mean).pow(2)).sum(dim=0)
    return total, mean, m2


def _gather_moments(moments: torch.Tensor) -> torch.Tensor:
    """(1 + 2C,) per process -> (W, 1 + 2C), with the all-reduce backward of
    :func:`multissl.distributed.gather`; one collective (every process sends one row, so the
    row counts need not be exchanged first)."""
    if not msd.is_distributed():
        return moments.unsqueeze(0)
    return msd._GatherWithGrad.apply(moments.unsqueeze(0), [1] * msd.world_size(), msd.rank())


class SyncBatchNorm(_BatchNorm):
    """BatchNorm over the batch of *every* process, in pure PyTorch (any device, any backend).

    Same constructor, parameters and buffers as ``nn.BatchNorm{1,2,3}d``; accepts (N, C) and
    (N, C, *) inputs. In training mode the statistics are those of the global batch (the local
    batch when no process group runs, then it equals ``nn.BatchNorm``); in eval mode it uses the
    running statistics and communicates nothing. Every process must call it the same number of
    times per step (as with torch's SyncBatchNorm). Statistics are computed in float32 at least
    (bf16/fp16 inputs), the output has the input's dtype.
    """

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.ndim < 2:
            raise ValueError(f"SyncBatchNorm expects (N, C) or (N, C, ...) input, got {x.ndim}D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(x)
        if x.shape[1] != self.num_features:
            raise ValueError(f"SyncBatchNorm({self.num_features}) got {x.shape[1]} channels")
        momentum = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:  # cumulative moving average, as nn.BatchNorm
                momentum = 1.0 / float(self.num_batches_tracked)
        use_batch_stats = self.training or self.running_mean is None
        if not (use_batch_stats and self.training):
            # eval mode: running statistics, or (no running stats) this process's batch, as torch
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                                use_batch_stats, momentum, self.eps)

        dtype = torch.promote_types(x.dtype, torch.float32)
        xf = x.to(dtype)
        moments = _gather_moments(local_moments(xf))
        count, mean, m2 = combine_moments(moments)
        if count <= 1:
            raise ValueError(f"SyncBatchNorm needs more than 1 value per channel in training mode, got {int(count)}")
        var = m2 / count
        shape = (1, -1) + (1,) * (x.ndim - 2)
        y = (xf - mean.reshape(shape)) * torch.rsqrt(var + self.eps).reshape(shape)
        if self.weight is not None:
            y = y * self.weight.to(dtype).reshape(shape) + self.bias.to(dtype).reshape(shape)
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), momentum)
                unbiased = (m2 / (count - 1)).detach().to(self.running_var.dtype)
                self.running_var.lerp_(unbiased, momentum)
        return y.to(x.dtype)


def _copy_batchnorm(src: _BatchNorm, cls: type) -> _BatchNorm:
    """A ``cls`` layer that shares ``src``'s parameters and buffers (no copy of the values)."""
    out = cls(src.num_features, src.eps, src.momentum, src.affine, src.track_running_stats)
    if src.affine:
        out.weight, out.bias = src.weight, src.bias
    if src.track_running_stats:
        out.running_mean, out.running_var = src.running_mean, src.running_var
        out.num_batches_tracked = src.num_batches_tracked
    out.train(src.training)
    # remember the class a converted layer had, so revert_sync_batchnorm restores it exactly
    out._plain_class = getattr(src, "_plain_class", type(src))
    if hasattr(src, "qconfig"):
        out.qconfig = src.qconfig
    return out


def _device_type(device: Union[None, str, torch.device], module: nn.Module) -> str:
    if device is not None:
        return torch.device(device).type
    first = next(module.parameters(), None)
    return first.device.type if first is not None else "cpu"


def convert_sync_batchnorm(module: nn.Module, device: Union[None, str, torch.device] = None,
                           native: Optional[bool] = None) -> nn.Module:
    """Replace every BatchNorm layer of ``module`` by a synchronized one; returns the module
    (the same object unless ``module`` itself is a BatchNorm layer).

    ``device``: where the model will run (default: where its parameters are now). ``native``:
    use torch's :class:`torch.nn.SyncBatchNorm` (CUDA only); ``None`` = on CUDA, else
    :class:`SyncBatchNorm`. :class:`~multissl.iternorm.IterNorm` layers are switched to
    global-batch whitening (``sync=True``). Parameters and buffers are shared, not copied, so
    an optimiser built before the conversion still updates the right tensors.
    """
    if native is None:
        native = _device_type(device, module) == "cuda"
    cls = nn.SyncBatchNorm if native else SyncBatchNorm
    return _replace(module, lambda m: isinstance(m, _BatchNorm) and not isinstance(m, (SyncBatchNorm, nn.SyncBatchNorm)),
                    lambda m: _copy_batchnorm(m, cls), iternorm_sync=True)


def revert_sync_batchnorm(module: nn.Module) -> nn.Module:
    """Undo :func:`convert_sync_batchnorm`: synchronized layers back to ``nn.BatchNorm{1,2,3}d``
    (sharing parameters and buffers), IterNorm back to local whitening."""
    def plain(m: _BatchNorm) -> _BatchNorm:
        # a layer built as SyncBatchNorm does not know its rank; BatchNorm1d/2d/3d differ only in
        # their input check, so it becomes the rank-agnostic one
        cls = getattr(m, "_plain_class", None)
        out = _copy_batchnorm(m, cls if cls is not None and not issubclass(cls, (SyncBatchNorm, nn.SyncBatchNorm))
                              else _AnyDimBatchNorm)
        del out._plain_class
        return out
    return _replace(module, lambda m: isinstance(m, (SyncBatchNorm, nn.SyncBatchNorm)), plain, iternorm_sync=False)


class _AnyDimBatchNorm(nn.BatchNorm1d):
    """``nn.BatchNorm1d`` that accepts (N, C, *) of any rank: the same computation as
    BatchNorm2d/3d (torch's ``F.batch_norm`` is rank-agnostic), for reverted layers whose
    original rank is unknown. Its state dict is that of any ``nn.BatchNorm``."""

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.ndim < 2:
            raise ValueError(f"BatchNorm expects (N, C) or (N, C, ...) input, got {x.ndim}D")


def _replace(module: nn.Module, match, build, iternorm_sync: bool) -> nn.Module:
    if isinstance(module, IterNorm):
        module.sync = iternorm_sync
    if match(module):
        return build(module)
    for name, child in module.named_children():
        new = _replace(child, match, build, iternorm_sync)
        if new is not child:
            module.add_module(name, new)
    return module


__all__ = ["SyncBatchNorm", "combine_moments", "convert_sync_batchnorm", "local_moments", "revert_sync_batchnorm"]
