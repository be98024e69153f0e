"""Verification metrics: error rates, equal error rate (EER), DET/ROC points, and per-user
score normalisation against enrolled references. Modality-agnostic (signatures, faces,
speakers): everything works on numbers.

Convention: a score is a **distance** -- lower means "more likely genuine" -- and a claim
is accepted when its score is <= the threshold. For similarities, pass ``-similarity``.

- FAR (false acceptance rate): fraction of impostor scores accepted;
- FRR (false rejection rate): fraction of genuine scores rejected;
- EER: the rate where FAR = FRR on the piecewise-linear curve through the operating points
  (the intersection of the DET/ROC curve with the diagonal FAR = FRR).

Per-user normalisation follows the classic reference-set recipe for online signatures
(Jain, Griess, Connell, "On-line signature verification", Pattern Recognition 2002;
Kholmatov and Yanikoglu 2005): a questioned sample's distance to the enrolled references
is divided by the typical distance *between* that user's references, so a threshold means
the same for a consistent writer and for a variable one.

Cohort scaling (:func:`cohort_scales`, :func:`locally_scaled`) is the label-free counterpart for
embeddings: a sample's distances are divided by how far it lies from its nearest neighbours in
a *cohort* of other people's samples (e.g. the encoder's own pretraining data), so a sample in
a dense region of the embedding -- close to everything -- no longer looks close to its claimed
owner just for that. It is the local scaling of Zelnik-Manor and Perona ("Self-tuning spectral
clustering", NIPS 2004), ``d(a, b) / sqrt(s_a * s_b)``, with ``s`` the mean distance to the
``k`` nearest cohort members as in the adaptive score normalisations of speaker verification
(Matějka et al., "Analysis of score normalization in multilingual speaker recognition",
Interspeech 2017).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import numpy as np

from multissl.errors import ConfigError

REDUCTIONS = ("min", "mean", "max")


@dataclass
class ErrorRates:
    """Operating points, one per distinct threshold, from "accept nothing" to "accept all"."""

    thresholds: np.ndarray  # (K,), the first is -inf
    far: np.ndarray         # (K,) non-decreasing from 0 to 1
    frr: np.ndarray         # (K,) non-increasing from 1 to 0


def _scores(x: object, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64).ravel()
    if a.size == 0:
        raise ConfigError(f"{name} scores are empty")
    if not np.isfinite(a).all():
        raise ConfigError(f"{name} scores contain NaN or infinity")
    return a


def error_rates(genuine: object, impostor: object) -> ErrorRates:
    """FAR and FRR at every threshold where either changes (accept when score <= threshold)."""
    g, i = np.sort(_scores(genuine, "genuine")), np.sort(_scores(impostor, "impostor"))
    t = np.unique(np.concatenate([g, i]))
    far = np.searchsorted(i, t, side="right") / len(i)
    frr = 1.0 - np.searchsorted(g, t, side="right") / len(g)
    return ErrorRates(np.concatenate([[-np.inf], t]), np.concatenate([[0.0], far]), np.concatenate([[1.0], frr]))


def eer(genuine: object, impostor: object) -> float:
    """Equal error rate in [0, 1]: where FAR = FRR, interpolating linearly between the two
    operating points that straddle the crossing. 0 when a threshold separates the classes.

    Example: genuine [0.1, 0.2, 0.6], impostor [0.3, 0.5, 0.7, 0.9] -> the operating points
    (FAR, FRR) = (1/4, 1/3) at 0.3 and (1/2, 1/3) at 0.5 straddle FAR = FRR, so EER = 1/3.
    """
    r = error_rates(genuine, impostor)
    d = r.frr - r.far  # starts at 1, ends at -1, non-increasing
    k = int(np.argmax(d <= 0))
    if d[k] == 0:
        return float(r.far[k])
    alpha = d[k - 1] / (d[k - 1] - d[k])
    return float(r.far[k - 1] + alpha * (r.far[k] - r.far[k - 1]))


def det_points(genuine: object, impostor: object) -> Tuple[np.ndarray, np.ndarray]:
    """(FAR, FRR) arrays of the DET curve (plot on probit axes); for a ROC curve plot
    FAR against 1 - FRR."""
    r = error_rates(genuine, impostor)
    return r.far, r.frr


def reference_distances(query_to_refs: np.ndarray, reduction: str = "min") -> np.ndarray:
    """(Q,) distance of each questioned sample to a reference set, from (Q, R) distances."""
    if reduction not in REDUCTIONS:
        raise ConfigError(f"reduction must be one of {', '.join(REDUCTIONS)}, got {reduction!r}")
    return getattr(np.asarray(query_to_refs, dtype=np.float64), reduction)(axis=1)


def reference_spread(ref_to_ref: np.ndarray) -> float:
    """Mean distance between distinct references, from their (R, R) distance matrix."""
    d = np.asarray(ref_to_ref, dtype=np.float64)
    r = d.shape[0]
    if d.shape != (r, r) or r < 2:
        raise ConfigError(f"ref_to_ref must be a square matrix of at least 2 references, got shape {d.shape}")
    return float((d.sum() - np.trace(d)) / (r * (r - 1)))


def normalized_scores(query_to_refs: np.ndarray, ref_to_ref: np.ndarray, reduction: str = "min") -> np.ndarray:
    """Per-user normalised scores: distance to the references (``reduction`` over them)
    divided by the mean reference-to-reference distance of that user.

    Args:
        query_to_refs: (Q, R) distances of Q questioned samples to the user's R references.
        ref_to_ref: (R, R) distances between the references (the diagonal is ignored).
        reduction: ``"min"`` (nearest reference, the default), ``"mean"`` or ``"max"``.
    """
    spread = reference_spread(ref_to_ref)
    return reference_distances(query_to_refs, reduction) / max(spread, 1e-12)


def enrolment_scores(ref_to_ref: np.ndarray, reduction: str = "min") -> np.ndarray:
    """(R,) leave-one-out scores of the references themselves: each one scored against the
    other R - 1 and normalised by *their* spread -- what a genuine score looks like for this
    user, known at enrolment time without any impostor."""
    d = np.asarray(ref_to_ref, dtype=np.float64)
    r = d.shape[0]
    if d.shape != (r, r) or r < 3:
        raise ConfigError(f"ref_to_ref must be a square matrix of at least 3 references, got shape {d.shape}")
    out = np.empty(r)
    for k in range(r):
        others = np.delete(np.arange(r), k)
        out[k] = normalized_scores(d[k:k + 1, others], d[np.ix_(others, others)], reduction)[0]
    return out


def cohort_scales(embeddings: np.ndarray, cohort: np.ndarray, k: int = 10) -> np.ndarray:
    """(N,) mean Euclidean distance of each of N embeddings (N, D) to its ``k`` nearest members
    of ``cohort`` (M, D): how crowded the embedding space is around each sample.

    Example: embeddings [[0, 0]], cohort [[3, 4], [0, 1], [6, 8]], k = 2 -> the two nearest
    are at 1 and 5, so the scale is 3.
    """
    z = np.asarray(embeddings, dtype=np.float64)
    c = np.asarray(cohort, dtype=np.float64)
    if z.ndim != 2 or c.ndim != 2 or z.shape[1] != c.shape[1]:
        raise ConfigError(f"embeddings and cohort must be (N, D) and (M, D) arrays, got shapes {z.shape} and {c.shape}")
    if not 1 <= int(k) <= len(c):
        raise ConfigError(f"k must be between 1 and the cohort's size ({len(c)}), got {k}")
    if not (np.isfinite(z).all() and np.isfinite(c).all()):
        raise ConfigError("embeddings and cohort must be finite")
    d = np.sqrt(np.maximum((z * z).sum(1)[:, None] - 2 * z @ c.T + (c * c).sum(1)[None, :], 0.0))
    return np.sort(d, axis=1)[:, :int(k)].mean(axis=1)


def locally_scaled(distances: np.ndarray, scales_a: np.ndarray, scales_b: np.ndarray) -> np.ndarray:
    """``distances[i, j] / sqrt(scales_a[i] * scales_b[j])``: (A, B) distances divided by the
    geometric mean of the two samples' :func:`cohort_scales`."""
    d = np.asarray(distances, dtype=np.float64)
    a = np.asarray(scales_a, dtype=np.float64).ravel()
    b = np.asarray(scales_b, dtype=np.float64).ravel()
    if d.shape != (len(a), len(b)):
        raise ConfigError(f"distances {d.shape} do not match the scales ({len(a)}, {len(b)})")
    return d / np.sqrt(np.maximum(np.outer(a, b), 1e-24))


def hull_distances(query_to_refs: np.ndarray, ref_to_ref: np.ndarray, ridge: float = 0.03) -> np.ndarray:
    """(Q,) distance of each questioned sample to the references' affine hull, ridge-regularised
    towards their centroid: ``sqrt(min_c |x - m - V c|^2 + mu |c|^2)``, with ``m`` the centroid
    of the R references, ``V`` their offsets from it and ``mu = ridge`` times the mean nonzero
    eigenvalue of ``V^T V``.

    A genuine sample differs from its writer's references in the ways the references differ
    from one another; the hull distance forgives exactly those directions, which the distance to
    the nearest reference or to the centroid does not. ``ridge=0`` is the plain distance to the
    hull, a large ``ridge`` tends to the distance to the centroid. Computed from distances alone
    (the kernel trick, double centring), so they must be **Euclidean** distances between
    embeddings; DTW distances are not.

    Args:
        query_to_refs: (Q, R) Euclidean distances of Q questioned samples to the R references.
        ref_to_ref: (R, R) Euclidean distances between the references.
        ridge: >= 0, relative to the references' own spread (see above).
    """
    dq2 = np.asarray(query_to_refs, dtype=np.float64) ** 2
    dr2 = np.asarray(ref_to_ref, dtype=np.float64) ** 2
    r = dr2.shape[0]
    if dr2.shape != (r, r) or r < 2 or dq2.ndim != 2 or dq2.shape[1] != r:
        raise ConfigError(f"need (Q, R) query and (R, R) reference distances with R >= 2, got shapes "
                          f"{dq2.shape} and {dr2.shape}")
    if not ridge >= 0:
        raise ConfigError(f"ridge must be >= 0, got {ridge}")
    np.fill_diagonal(dr2, 0.0)
    ref_mean, total = dr2.mean(axis=1), dr2.mean()
    gram = -0.5 * (dr2 - ref_mean[:, None] - ref_mean[None, :] + total)           # (r_i - m) . (r_j - m)
    cross = -0.5 * (dq2 - dq2.mean(axis=1, keepdims=True) - ref_mean[None, :] + total)  # (x - m) . (r_i - m)
    norm2 = dq2.mean(axis=1) - 0.5 * total                                          # |x - m|^2
    mu = ridge * np.trace(gram) / (r - 1)
    inv = np.linalg.pinv(gram + mu * np.eye(r), hermitian=True)
    return np.sqrt(np.maximum(norm2 - np.einsum("qi,ij,qj->q", cross, inv, cross), 0.0))


__all__ = ["ErrorRates", "error_rates", "eer", "det_points", "reference_distances", "reference_spread",
           "normalized_scores", "enrolment_scores", "cohort_scales", "locally_scaled", "hull_distances",
           "REDUCTIONS"]
