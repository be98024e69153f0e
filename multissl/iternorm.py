"""Iterative Normalization (IterNorm): approximate whitening by Newton's iterations.

Reference: L. Huang, Y. Zhou, F. Zhu, L. Liu, L. Shao, "Iterative Normalization: Beyond
Standardization towards Efficient Whitening", CVPR 2019, https://arxiv.org/abs/1904.03441
(Algorithm 1). Used at the end of VIbCReg's projector (Lee & Aune 2021).
"""
from __future__ import annotations

import torch
from torch import nn

from multissl import distributed as msd


class IterNorm(nn.Module):
    """Whiten (B, C) features per group of channels with T Newton-Schulz iterations.

    For each group of ``C / num_groups`` channels, in training mode:

    1. centre over the batch and form ``Sigma = X_c X_c^T / B + eps * I``;
    2. normalise by the trace, ``Sigma_N = Sigma / tr(Sigma)``, so its eigenvalues lie in
       (0, 1] and the iteration converges;
    3. ``P_0 = I``, ``P_k = (3 P_{k-1} - P_{k-1}^3 Sigma_N) / 2`` for ``k = 1..T``, which tends to
       ``Sigma_N^{-1/2}`` (computed in the numerically stable coupled form, same values);
    4. output ``P_T / sqrt(tr(Sigma)) @ X_c`` (then an optional per-channel affine map).

    A finite ``T`` whitens the large-eigenvalue directions fully and stretches the tiny ones
    only partly -- the paper's point: a cheap, differentiable whitening that does not blow up
    noise directions. Running mean and whitening matrix (momentum averages, as BatchNorm)
    are used in eval mode, so embedding a single sample is deterministic.

    Computation runs in float32 (float64 for float64 input) with autocast off: matrix powers in
    half precision diverge. With ``sync = True`` (set by
    :func:`multissl.sync_batchnorm.convert_sync_batchnorm`) the mean and covariance are those of
    the global batch of all processes, gathered with gradients.
    Under autocast the output stays float32; otherwise it has the input's dtype.

    Args:
        num_features: number of channels C.
        num_groups: channels are whitened in ``num_groups`` independent groups of equal size
            (must divide ``num_features``); smaller groups need smaller batches.
        T: number of Newton iterations (the paper and VIbCReg use 5).
        eps: ridge added to the covariance.
        momentum: update rate of the running statistics.
        affine: learn a per-channel scale and shift after whitening.
    """

    def __init__(
        self,
        num_features: int,
        num_groups: int = 1,
        T: int = 5,
        eps: float = 1e-5,
        momentum: float = 0.1,
        affine: bool = True,
    ) -> None:
        super().__init__()
        if num_features < 1 or num_groups < 1 or num_features % num_groups:
            raise ValueError(
                f"IterNorm: num_groups ({num_groups}) must be >= 1 and divide num_features ({num_features})"
            )
        if T < 1:
            raise ValueError(f"IterNorm: T must be >= 1, got {T}")
        self.num_features = num_features
        self.num_groups = num_groups
        self.group_size = num_features // num_groups
        self.T = T
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        #: whiten with the mean and covariance of the *global* batch under data parallelism (every
        #: process's rows, gathered with gradients); set by multissl.sync_batchnorm.convert_sync_batchnorm
        self.sync = False
        eye = torch.eye(self.group_size).expand(num_groups, -1, -1).clone()
        self.register_buffer("running_mean", torch.zeros(num_groups, self.group_size, 1))
        self.register_buffer("running_wm", eye)
        if affine:
            self.weight = nn.Parameter(torch.ones(num_features))
            self.bias = nn.Parameter(torch.zeros(num_features))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def _whitening_matrix(self, xc: torch.Tensor) -> torch.Tensor:
        g, d, m = xc.shape
        eye = torch.eye(d, device=xc.device, dtype=xc.dtype).expand(g, d, d)
        sigma = torch.baddbmm(eye, xc, xc.transpose(1, 2), beta=self.eps, alpha=1.0 / m)
        trace = torch.diagonal(sigma, dim1=1, dim2=2).sum(-1).reshape(g, 1, 1)
        # Coupled Newton-Schulz: with Y_0 = Sigma_N, P_0 = I, S = (3I - P Y) / 2, Y <- Y S,
        # P <- S P. In exact arithmetic P_k equals the paper's P_k (P and Sigma_N commute, so
        # Y_k = Sigma_N P_k), but the paper's single-matrix form amplifies rounding errors
        # once converged when Sigma_N's condition number exceeds ~2.6 (float32 diverges after
        # ~10 iterations); the coupled form is stable for any T at the same 3 matmuls/iter.
        y = sigma / trace
        p = eye
        for _ in range(self.T):
            s = 1.5 * eye - 0.5 * (p @ y)
            y = y @ s
            p = s @ p
        return p / trace.sqrt()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 2 or x.shape[1] != self.num_features:
            raise ValueError(f"IterNorm expects (batch, {self.num_features}) input, got {tuple(x.shape)}")
        autocast_on = torch.is_autocast_enabled(x.device.type)
        with torch.autocast(device_type=x.device.type, enabled=False):
            b = x.shape[0]
            # (B, C) -> (groups, group_size, B): each group's channels as rows of a matrix.
            # float32 at least (float64 stays float64)
            xf = x.to(torch.promote_types(x.dtype, torch.float32))
            xg = xf.T.reshape(self.num_groups, self.group_size, b)
            if self.training:
                if b < 2:
                    raise ValueError("IterNorm needs at least 2 samples per batch in training mode")
                # statistics of the global batch when synchronised (the local one otherwise)
                stats = xg
                if self.sync and msd.is_distributed():
                    stats = msd.gather(xf).T.reshape(self.num_groups, self.group_size, -1)
                mean = stats.mean(dim=2, keepdim=True)
                xc = xg - mean
                wm = self._whitening_matrix(stats - mean)
                with torch.no_grad():
                    self.running_mean.lerp_(mean.to(self.running_mean.dtype), self.momentum)
                    self.running_wm.lerp_(wm.to(self.running_wm.dtype), self.momentum)
            else:
                xc = xg - self.running_mean
                wm = self.running_wm
            y = (wm @ xc).reshape(self.num_features, b).T
            if self.affine:
                y = y * self.weight + self.bias
        # Under autocast stay in float32, like autocast's own float32 ops (the loss follows).
        return y if autocast_on else y.to(x.dtype)

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, num_groups={self.num_groups}, T={self.T}, eps={self.eps}, "
            f"momentum={self.momentum}, affine={self.affine}"
        )
