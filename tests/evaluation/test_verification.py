"""Verification metrics on small hand-computed cases."""
from __future__ import annotations

import numpy as np
import pytest

from multissl.errors import ConfigError
from multissl.evaluation.verification import (det_points, eer, enrolment_scores, error_rates, normalized_scores,
                                              reference_spread)


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
