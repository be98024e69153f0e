"""Mined positives: other records as the second view of a Siamese method.

A Siamese method (``simclr``, ``vicreg``, ...) normally learns from two augmented views of the
*same* record, so it can only become invariant to what the augmentations change. With
``pretrain(..., positives=P)`` the second view of record ``i`` is an augmented view of record
``P[i, c]`` instead, ``c`` drawn uniformly at random each time (an entry equal to ``i`` gives
the usual two views of ``i``). When ``P`` holds each record's nearest neighbours under a
distance that needs no labels, the encoder learns the variation between *real* records that
are alike — NNCLR (Dwibedi et al., ICCV 2021) mines them in the encoder's own embedding space;
here they come from any distance, e.g. dynamic time warping for online signatures, whose
nearest neighbours are nearly always another signature of the same writer (see
``docs/recipes/signature_verification.md``).

:func:`mutual_neighbours` turns a distance matrix into such a table. Mutual neighbours (``j``
among ``i``'s ``k`` nearest and ``i`` among ``j``'s) are the conservative choice: a record whose
nearest neighbour is only "least unlike" it (it has no true match in the pool) gets no partner
and keeps its own two views.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from multissl.errors import ConfigError


def mutual_neighbours(dist: Any, k: int) -> torch.Tensor:
    """(N, k) table of each record's mutual k-nearest neighbours, padded with the record itself.

    Args:
        dist: (N, N) symmetric distances (NumPy or torch); the diagonal is ignored. NaN or inf
            entries are never neighbours.
        k: neighbours considered per record (>= 1).

    Returns:
        long tensor (N, k): row i lists the j != i with j among i's k nearest and i among j's,
        nearest first, then i itself for the remaining columns.
    """
    d = torch.as_tensor(np.asarray(dist, dtype=np.float64))
    if d.ndim != 2 or d.shape[0] != d.shape[1]:
        raise ConfigError(f"dist must be a square (N, N) matrix, got shape {tuple(d.shape)}")
    n = d.shape[0]
    if not 1 <= k < n:
        raise ConfigError(f"k must be in [1, {n - 1}] for {n} records, got {k}")
    d = torch.where(torch.isfinite(d), d, torch.full_like(d, float("inf")))
    d.fill_diagonal_(float("inf"))
    near = d.topk(k, dim=1, largest=False).indices  # (N, k), nearest first
    finite = torch.isfinite(d.gather(1, near))
    rows = torch.arange(n).unsqueeze(1)
    is_near = torch.zeros(n, n, dtype=torch.bool)
    is_near[rows, near] = finite
    keep = is_near.T[rows, near] & finite  # (N, k): i is also among near[i, c]'s k nearest
    # the kept neighbours first (a stable sort keeps them nearest first), the record itself after
    order = torch.sort((~keep).to(torch.uint8), dim=1, stable=True).indices
    return torch.where(keep.gather(1, order), near.gather(1, order), rows)


def check_positives(positives: Any, n: int) -> torch.Tensor:
    """``positives`` as a CPU long tensor (n, K), or a ConfigError saying what is wrong."""
    try:
        p = torch.as_tensor(np.asarray(positives))
    except (TypeError, ValueError) as e:
        raise ConfigError(f"positives must be an (N, K) array of record indices: {e}") from None
    if p.ndim == 1:
        p = p.unsqueeze(1)
    if p.ndim != 2 or p.shape[0] != n or p.shape[1] < 1:
        raise ConfigError(f"positives must have one row per record, (N, K) = ({n}, K >= 1); got shape {tuple(p.shape)}")
    if p.dtype.is_floating_point or p.dtype == torch.bool or p.is_complex():
        raise ConfigError(f"positives must hold integer record indices, got dtype {p.dtype}")
    p = p.long()
    bad = (p < 0) | (p >= n)
    if bad.any():
        i, c = (int(v) for v in bad.nonzero()[0])
        raise ConfigError(f"positives[{i}, {c}] = {int(p[i, c])} is not a record index (0..{n - 1})")
    return p.contiguous()


def draw_partners(positives: torch.Tensor, index: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One partner per record of ``index`` (CPU), a column drawn uniformly from its row."""
    cols = torch.randint(positives.shape[1], (len(index),), generator=generator)
    return positives[index, cols]


def records_with_partner(positives: torch.Tensor) -> int:
    """How many rows name at least one record other than their own."""
    own = torch.arange(len(positives)).unsqueeze(1)
    return int((positives != own).any(1).sum())
