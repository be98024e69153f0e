"""Exponential-moving-average (momentum) teachers, as in MoCo and BYOL.

References: K. He et al., "Momentum Contrast for Unsupervised Visual Representation
Learning", CVPR 2020 (eq. 2); J.-B. Grill et al., "Bootstrap Your Own Latent", NeurIPS 2020
(sec. 3.1, the cosine schedule of the target decay rate).

Example::

    teacher = copy_as_teacher(student)            # frozen copy, no gradients
    ...                                          # after each optimiser step:
    ema_update(teacher, student, cosine_momentum(step / total_steps, base=0.99))
"""
from __future__ import annotations

import copy
import math

import torch
from torch import nn


def copy_as_teacher(module: nn.Module) -> nn.Module:
    """A deep copy of ``module`` whose parameters do not require gradients.

    The teacher is updated only by :func:`ema_update`, so keeping ``requires_grad=False``
    keeps it out of the optimiser and out of DDP's gradient reduction (DDP ignores
    parameters that do not require grad, so it never waits for gradients that never come).
    """
    teacher = copy.deepcopy(module)
    teacher.requires_grad_(False)
    return teacher


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """``teacher = momentum * teacher + (1 - momentum) * student`` over parameters and buffers.

    Floating-point buffers (BatchNorm running statistics) are averaged like parameters so the
    teacher's eval-mode statistics follow its weights; other buffers (e.g. BatchNorm's
    ``num_batches_tracked``) are copied. ``momentum = 1`` leaves the teacher unchanged,
    ``0`` copies the student.
    """
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"ema_update: momentum must be in [0, 1], got {momentum}")
    t_params, s_params = list(teacher.parameters()), list(student.parameters())
    t_bufs, s_bufs = list(teacher.buffers()), list(student.buffers())
    if len(t_params) != len(s_params) or len(t_bufs) != len(s_bufs):
        raise ValueError("ema_update: teacher and student have different structures")
    float_t = [t for t in t_params + t_bufs if t.is_floating_point()]
    float_s = [s for s, t in zip(s_params + s_bufs, t_params + t_bufs) if t.is_floating_point()]
    if float_t:
        # One fused kernel per dtype/device group instead of a Python loop over tensors.
        torch._foreach_lerp_(float_t, float_s, 1.0 - momentum)
    for t, s in zip(t_params + t_bufs, s_params + s_bufs):
        if not t.is_floating_point():
            t.copy_(s)


def cosine_momentum(progress: float, base: float = 0.99, final: float = 1.0) -> float:
    """BYOL's schedule: ``final - (final - base) * (cos(pi * progress) + 1) / 2``.

    Starts at ``base`` (``progress = 0``) and rises to ``final`` (``progress = 1``): the teacher
    moves fast early, when the student changes quickly, and freezes at the end.
    """
    progress = min(max(float(progress), 0.0), 1.0)
    return final - (final - base) * (math.cos(math.pi * progress) + 1.0) / 2.0


__all__ = ["copy_as_teacher", "cosine_momentum", "ema_update"]
