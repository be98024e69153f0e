"""Dynamic time warping (DTW), vectorised over many pairs of sequences at once.

The classic distance for online signature verification (e.g. Kholmatov and Yanikoglu,
"Identity authentication using improved online signature verification method", Pattern
Recognition Letters 2005, the method behind the best SVC2004 results): the cheapest monotone
alignment of two sequences of feature vectors,

    D(i, j) = c(i, j) + min(D(i-1, j), D(i, j-1), D(i-1, j-1)),   c(i, j) = ||a_i - b_j||_2,

and DTW(a, b) = D(n-1, m-1) (Sakoe and Chiba, "Dynamic programming algorithm optimization for
spoken word recognition", IEEE TASSP 1978).

Why anti-diagonals: every cell of anti-diagonal k = i + j depends only on diagonals k-1 and
k-2, so one step updates a whole diagonal of every pair in a batch with a few tensor ops.
Pairs are sorted by length and batched under a cell budget, so padding wastes little. With a
Sakoe-Chiba band only the cells near each pair's diagonal are computed, not just masked.

Modality-agnostic: sequences are padded float tensors (N, T, F) with their lengths.
"""
from __future__ import annotations

from typing import List, Optional

import numpy as np
import torch

from multissl.errors import ConfigError

_INF = float("inf")


def _band_halfwidth(n: torch.Tensor, m: torch.Tensor, band: float) -> torch.Tensor:
    """Per-pair band, widened where needed so a monotone path always exists.

    Row i allows columns j with |i/(n-1) - j/(m-1)| <= w, a window of 2 w (m-1) columns that
    moves (m-1)/(n-1) columns per row; consecutive windows touch (a path can step from one
    to the next) when w >= 1/(2(n-1)) + 1/(2(m-1)). A sequence of one point aligns with all.
    """
    n1, m1 = (n - 1).double(), (m - 1).double()
    need = torch.where((n1 > 0) & (m1 > 0), 0.5 / n1.clamp_min(1) + 0.5 / m1.clamp_min(1), torch.full_like(n1, 2.0))
    return need.clamp_min(band)


def dtw_distance(x: torch.Tensor, x_len: torch.Tensor, y: torch.Tensor, y_len: torch.Tensor,
                 band: Optional[float] = None, normalize: bool = False) -> torch.Tensor:
    """DTW distances of P aligned pairs, Euclidean local cost.

    Args:
        x: (P, N, F) first sequences, padded; y: (P, M, F) second sequences, padded. Values
            beyond a pair's lengths are never part of its result (a monotone path to
            (n-1, m-1) cannot visit them), so any finite padding works.
        x_len, y_len: (P,) lengths n and m (>= 1).
        band: Sakoe-Chiba band as a fraction of the sequences: cell (i, j) is allowed when
            |i / (n-1) - j / (m-1)| <= band (``None``: no constraint), widened per pair to the
            narrowest band that still connects the two corners. Only the rows of each
            anti-diagonal that some pair's band reaches are computed.
        normalize: divide by n + m (the longest possible path), which makes sequences of
            different lengths comparable.

    Returns:
        (P,) float32 sums of the local costs along each pair's cheapest path.
    """
    if x.ndim != 3 or y.ndim != 3 or len(x) != len(y) or x.shape[2] != y.shape[2]:
        raise ConfigError(f"x and y must be (pairs, T, F) with the same pairs and F, got {tuple(x.shape)} and {tuple(y.shape)}")
    if band is not None and not band >= 0:
        raise ConfigError(f"band must be a fraction >= 0, got {band}")
    p, nn_, mm = x.shape[0], x.shape[1], y.shape[1]
    dev = x.device
    x, y_rev = x.float(), y.float().flip(1)  # row j of y is row M-1-j of y_rev: a diagonal is a slice of both
    n, m = torch.as_tensor(x_len, device=dev).long(), torch.as_tensor(y_len, device=dev).long()
    end_k = (n + m - 2).cpu().numpy()
    finish = {int(k): torch.as_tensor(np.nonzero(end_k == k)[0], device=dev) for k in np.unique(end_k)}
    out = torch.full((p,), _INF, device=dev)

    if band is not None:
        w = _band_halfwidth(n, m, band)
        n1, m1 = (n - 1).clamp_min(1).double(), (m - 1).clamp_min(1).double()
        # rows of diagonal k in pair p's band: |i/(n-1) - (k-i)/(m-1)| <= w, i.e. i in
        # [(k/(m-1) - w) / (1/(n-1) + 1/(m-1)), (k/(m-1) + w) / (...)]; the union over pairs
        ks = torch.arange(int(end_k.max()) + 1, device=dev, dtype=torch.float64)[None]
        denom = (1 / n1 + 1 / m1)[:, None]
        lo_band = ((ks / m1[:, None] - w[:, None]) / denom).min(0).values.floor().long().cpu().tolist()
        hi_band = ((ks / m1[:, None] + w[:, None]) / denom).max(0).values.ceil().long().cpu().tolist()
        # the exact per-pair test in integers, |i (n+m-2) - k (n-1)| <= w (n-1)(m-1), float32-exact
        slope, offset = (n1 + m1).float()[:, None], n1.float()[:, None]
        limit = (w * n1 * m1 + 1e-6).float()[:, None]
        rows = torch.arange(nn_, device=dev, dtype=torch.float32)

    # D_k is stored with one leading sentinel: position i + 1 holds row i and position 0 is
    # row -1, so "row i - 1" is a plain slice for every i including 0. Three buffers rotate;
    # positions a step does not write are set to +inf where the next two steps read them.
    bufs = [torch.full((p, nn_ + 2), _INF, device=dev) for _ in range(3)]
    for k in range(int(end_k.max()) + 1):
        prev2, prev1, cur = bufs[(k - 2) % 3], bufs[(k - 1) % 3], bufs[k % 3]
        lo, hi = max(0, k - mm + 1), min(k, nn_ - 1)
        if band is not None:
            lo, hi = max(lo, lo_band[k]), min(hi, hi_band[k])
        # cells (i, k - i), i in [lo, hi]: rows lo..hi of x against rows M-1-k+lo.. of y_rev
        cost = torch.linalg.vector_norm(x[:, lo:hi + 1] - y_rev[:, mm - 1 - k + lo:mm - k + hi], dim=-1)
        if band is not None:
            cost = cost.masked_fill((rows[lo:hi + 1][None] * slope - k * offset).abs() > limit, _INF)
        if k == 0:
            cur[:, 1] = cost[:, 0]
        else:
            best = torch.minimum(torch.minimum(prev1[:, lo:hi + 1], prev1[:, lo + 1:hi + 2]), prev2[:, lo:hi + 1])
            torch.add(cost, best, out=cur[:, lo + 1:hi + 2])
        cur[:, lo] = _INF
        cur[:, hi + 2] = _INF
        if k in finish:
            idx = finish[k]
            out[idx] = cur[idx, n[idx]]
    if normalize:
        out = out / (n + m).to(out.dtype)
    return out


def dtw_pairs(x: torch.Tensor, lengths: torch.Tensor, first: torch.Tensor, second: torch.Tensor,
              band: Optional[float] = None, normalize: bool = False, max_cells: int = 10_000_000) -> torch.Tensor:
    """DTW distances between sequences ``x[first[p]]`` and ``x[second[p]]`` for every pair p.

    Args:
        x: (N, T, F) padded sequences (values beyond ``lengths`` are ignored).
        lengths: (N,) sequence lengths.
        first, second: (P,) indices into ``x``.
        band, normalize: as in :func:`dtw_distance`.
        max_cells: pairs are processed in batches of at most this many (padded) dynamic
            programming cells, sorted by length so each batch pads little. Larger batches
            spread the per-step overhead over more pairs; memory grows with the pairs in a
            batch times the longest sequence, not with the cells.

    Returns:
        (P,) float32 distances, in the order of the pairs.
    """
    first, second = torch.as_tensor(first).long(), torch.as_tensor(second).long()
    if first.shape != second.shape or first.ndim != 1:
        raise ConfigError("first and second must be 1-D index tensors of the same length")
    lengths = torch.as_tensor(lengths).long().cpu()
    la, lb = lengths[first].numpy(), lengths[second].numpy()
    order = np.lexsort((lb, la))  # by first length, then second: neighbours pad alike
    out = torch.empty(len(first), dtype=torch.float32)
    for batch in _batches(order, la, lb, max_cells):
        idx = torch.as_tensor(batch)
        na, nb = int(la[batch].max()), int(lb[batch].max())
        a, b = x[first[idx], :na], x[second[idx], :nb]
        out[idx] = dtw_distance(a, lengths[first[idx]], b, lengths[second[idx]], band, normalize).cpu()
    return out


def dtw_cross(x: torch.Tensor, x_len: torch.Tensor, y: torch.Tensor, y_len: torch.Tensor,
              band: Optional[float] = None, normalize: bool = False, max_cells: int = 10_000_000) -> torch.Tensor:
    """(A, B) DTW distances between every sequence of ``x`` (A, T, F) and of ``y`` (B, T', F)."""
    a, b = len(x), len(y)
    t = max(x.shape[1], y.shape[1])
    both = torch.cat([_pad_time(x, t), _pad_time(y, t)])
    lengths = torch.cat([torch.as_tensor(x_len), torch.as_tensor(y_len)])
    first = torch.arange(a).repeat_interleave(b)
    second = a + torch.arange(b).repeat(a)
    return dtw_pairs(both, lengths, first, second, band, normalize, max_cells).view(a, b)


def _pad_time(x: torch.Tensor, t: int) -> torch.Tensor:
    return torch.nn.functional.pad(x, (0, 0, 0, t - x.shape[1]))


def _batches(order: np.ndarray, la: np.ndarray, lb: np.ndarray, max_cells: int) -> List[np.ndarray]:
    """Consecutive runs of ``order`` whose padded dynamic-programming grids fit ``max_cells``."""
    out, start = [], 0
    while start < len(order):
        na = nb = 0
        end = start
        while end < len(order):
            i = order[end]
            na2, nb2 = max(na, la[i]), max(nb, lb[i])
            if end > start and (end - start + 1) * na2 * nb2 > max_cells:
                break
            na, nb, end = na2, nb2, end + 1
        out.append(order[start:end])
        start = end
    return out


__all__ = ["dtw_distance", "dtw_pairs", "dtw_cross"]
