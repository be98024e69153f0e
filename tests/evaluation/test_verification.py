"""Verification metrics on small hand-computed cases."""
from __future__ import annotations

import numpy as np
import pytest

from multissl.errors import ConfigError
from multissl.evaluation.verification import (cohort_scales, det_points, eer, enrolment_scores, error_rates,
                                              hull_distances, locally_scaled, normalized_scores, reference_spread)


def test_error_rates_at_every_threshold():
    r = error_rates([0.1, 0.4], [0.3, 0.5])
    assert r.thresholds.tolist() == [-np.inf, 0.1, 0.3, 0.4, 0.5]
    assert r.far.tolist() == [0.0, 0.0, 0.5, 0.5, 1.0]
    assert r.frr.tolist() == [1.0, 0.5, 0.5, 0.0, 0.0]


def test_eer_hand_computed():
    # at 0.3: FAR 1/2, FRR 1/2 -> an exact crossing
    assert eer([0.1, 0.4], [0.3, 0.5]) == pytest.approx(0.5)
    # (FAR, FRR) = (1/4, 1/3) at 0.3 and (1/2, 1/3) at 0.5: the segment meets FAR = FRR at 1/3
    assert eer([0.1, 0.2, 0.6], [0.3, 0.5, 0.7, 0.9]) == pytest.approx(1 / 3)
    # a tie at 0.3 jumps from (FAR, FRR) = (0, 1/2) to (1/2, 0): the segment crosses at 1/4
    assert eer([0.1, 0.3], [0.3, 0.5]) == pytest.approx(0.25)


def test_eer_extremes_and_ties():
    assert eer([0.1, 0.2, 0.3], [0.4, 0.9]) == 0.0
    assert eer([0.5, 0.6], [0.1, 0.2]) == 1.0
    assert eer([1.0, 1.0], [1.0, 1.0]) == pytest.approx(0.5)  # one tied threshold: (0, 1) -> (1, 0)


def test_eer_of_overlapping_gaussians_is_close_to_theory():
    rng = np.random.default_rng(0)
    g, i = rng.normal(0, 1, 20000), rng.normal(2, 1, 20000)  # EER = Phi(-1) = 0.1587
    assert eer(g, i) == pytest.approx(0.1587, abs=0.006)


def test_det_points_are_monotone():
    far, frr = det_points([0.1, 0.35, 0.2], [0.3, 0.5, 0.25])
    assert far[0] == 0 and frr[0] == 1 and far[-1] == 1 and frr[-1] == 0
    assert (np.diff(far) >= 0).all() and (np.diff(frr) <= 0).all()


def test_bad_scores():
    with pytest.raises(ConfigError, match="genuine scores are empty"):
        eer([], [1.0])
    with pytest.raises(ConfigError, match="impostor scores contain NaN"):
        eer([1.0], [np.nan])


def test_normalized_scores_hand_computed():
    ref = np.array([[0.0, 2.0, 4.0], [2.0, 0.0, 6.0], [4.0, 6.0, 0.0]])  # mean off-diagonal distance 4
    q = np.array([[1.0, 3.0, 8.0], [5.0, 6.0, 7.0]])
    assert reference_spread(ref) == pytest.approx(4.0)
    assert normalized_scores(q, ref).tolist() == pytest.approx([0.25, 1.25])
    assert normalized_scores(q, ref, "mean").tolist() == pytest.approx([1.0, 1.5])
    with pytest.raises(ConfigError, match="reduction"):
        normalized_scores(q, ref, "median")


def test_enrolment_scores_leave_one_out():
    ref = np.array([[0.0, 2.0, 4.0], [2.0, 0.0, 6.0], [4.0, 6.0, 0.0]])
    # reference 0 vs {1, 2}: min(2, 4) / d(1, 2) = 2 / 6; reference 1: min(2, 6) / 4; reference 2: min(4, 6) / 2
    assert enrolment_scores(ref).tolist() == pytest.approx([2 / 6, 2 / 4, 4 / 2])


def test_cohort_scales_hand_computed():
    cohort = np.array([[3.0, 4.0], [0.0, 1.0], [6.0, 8.0]])
    z = np.array([[0.0, 0.0], [6.0, 8.0]])
    # sample 0: distances 5, 1, 10 -> two nearest 1, 5 -> 3; sample 1: 5, sqrt(85), 0 -> 0, 5 -> 2.5
    assert cohort_scales(z, cohort, k=2).tolist() == pytest.approx([3.0, 2.5])
    assert cohort_scales(z, cohort, k=1).tolist() == pytest.approx([1.0, 0.0], abs=1e-6)
    assert cohort_scales(z, cohort, k=3).tolist() == pytest.approx([16 / 3, (5 + np.sqrt(85)) / 3])


def test_locally_scaled_hand_computed_and_scale_free():
    d = np.array([[2.0, 6.0]])
    assert locally_scaled(d, [4.0], [1.0, 9.0]).ravel().tolist() == pytest.approx([1.0, 1.0])
    # the same embeddings and cohort in other units give the same scaled distances
    rng = np.random.default_rng(0)
    z, cohort = rng.normal(size=(5, 3)), rng.normal(size=(20, 3))
    dist = np.linalg.norm(z[:, None] - z[None], axis=-1)
    s = cohort_scales(z, cohort, k=4)
    s10 = cohort_scales(10 * z, 10 * cohort, k=4)
    assert np.allclose(locally_scaled(10 * dist, s10, s10), locally_scaled(dist, s, s))


def test_cohort_scaling_bad_input():
    z, cohort = np.zeros((2, 3)), np.ones((4, 3))
    with pytest.raises(ConfigError, match="between 1 and the cohort's size"):
        cohort_scales(z, cohort, k=5)
    with pytest.raises(ConfigError, match=r"\(N, D\) and \(M, D\)"):
        cohort_scales(z, np.ones((4, 2)))
    with pytest.raises(ConfigError, match="finite"):
        cohort_scales(np.full((2, 3), np.nan), cohort, k=1)
    with pytest.raises(ConfigError, match="do not match"):
        locally_scaled(np.ones((2, 2)), [1.0], [1.0, 2.0])


def _euclid(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))


def test_hull_distances_hand_computed():
    # references (0,0), (2,0) in the plane: their affine hull is the x-axis, centroid (1,0)
    refs = np.array([[0.0, 0.0], [2.0, 0.0]])
    queries = np.array([[5.0, 3.0], [1.0, -2.0], [1.0, 0.0]])
    d = hull_distances(_euclid(queries, refs), _euclid(refs, refs), ridge=0.0)
    np.testing.assert_allclose(d, [3.0, 2.0, 0.0], atol=1e-9)
    # a huge ridge pins the coefficients to 0: the distance to the centroid
    far = hull_distances(_euclid(queries, refs), _euclid(refs, refs), ridge=1e9)
    np.testing.assert_allclose(far, [5.0, 2.0, 0.0], atol=1e-6)


def test_hull_distances_match_an_explicit_ridge_regression():
    rng = np.random.default_rng(0)
    refs, queries = rng.normal(size=(5, 16)), rng.normal(size=(7, 16))
    m = refs.mean(0)
    v = (refs - m).T                                                  # (16, 5) offsets
    mu = 0.3 * np.trace(v.T @ v) / 4                                  # ridge 0.3 x the mean nonzero eigenvalue
    want = []
    for x in queries:  # min_c |x - m - V c|^2 + mu |c|^2 as least squares on the augmented system
        a = np.vstack([v, np.sqrt(mu) * np.eye(5)])
        b = np.concatenate([x - m, np.zeros(5)])
        c = np.linalg.lstsq(a, b, rcond=None)[0]
        want.append(np.sqrt(((x - m - v @ c) ** 2).sum() + mu * (c ** 2).sum()))
    got = hull_distances(_euclid(queries, refs), _euclid(refs, refs), ridge=0.3)
    np.testing.assert_allclose(got, want, rtol=1e-8)
    # never above the distance to the centroid, and a reference itself is on the hull
    assert np.all(got <= np.sqrt(((queries - m) ** 2).sum(1)) + 1e-12)
    assert hull_distances(_euclid(refs, refs), _euclid(refs, refs), ridge=0.0) == pytest.approx(np.zeros(5), abs=1e-6)


def test_hull_distances_bad_input():
    d = np.ones((3, 3)) - np.eye(3)
    with pytest.raises(ConfigError, match="shapes"):
        hull_distances(np.ones((2, 4)), d)
    with pytest.raises(ConfigError, match="ridge"):
        hull_distances(np.ones((2, 3)), d, ridge=-1.0)
