"""VOC-style AP@0.5 on hand-computed cases."""
import math

import numpy as np
import pytest

from multissl.errors import ConfigError
from multissl.evaluation.detection_ap import average_precision, box_iou_matrix, interpolated_ap

A = [0.0, 0.0, 10.0, 10.0]
B = [20.0, 20.0, 30.0, 30.0]
FAR = [50.0, 50.0, 60.0, 60.0]


def ap(preds, scores, truths, **kw):
    return average_precision([np.array(p).reshape(-1, 4) for p in preds], [np.array(s) for s in scores],
                             [np.array(t).reshape(-1, 4) for t in truths], **kw)


def test_iou_by_hand():
    # overlap 5x10 = 50, union 100 + 100 - 50 = 150
    assert box_iou_matrix(np.array([A]), np.array([[5.0, 0, 15, 10]]))[0, 0] == pytest.approx(1 / 3)
    assert box_iou_matrix(np.array([A]), np.array([B]))[0, 0] == 0.0


def test_perfect_detections_give_one():
    r = ap([[A, B], [B]], [[0.9, 0.8], [0.7]], [[A, B], [B]])
    assert r["ap"] == pytest.approx(1.0)
    assert r["true_positives"] == 3 and r["num_true"] == 3


def test_false_positive_ranked_first():
    # ranked: FP (p=0, r=0), TP (1/2, 1/2), TP (2/3, 1); interpolated precision is 2/3 at both
    # recall steps: AP = 0.5 * 2/3 + 0.5 * 2/3 = 2/3
    r = ap([[FAR, A, B]], [[0.99, 0.8, 0.7]], [[A, B]])
    assert r["ap"] == pytest.approx(2 / 3)
    assert r["precision"] == pytest.approx([0.0, 0.5, 2 / 3])


def test_false_positive_ranked_last_costs_nothing():
    r = ap([[A, B, FAR]], [[0.9, 0.8, 0.1]], [[A, B]])
    assert r["ap"] == pytest.approx(1.0)


def test_a_missed_face_halves_ap():
    r = ap([[A]], [[0.9]], [[A, B]])
    assert r["ap"] == pytest.approx(0.5)
    r = ap([[A], []], [[0.9], []], [[A], [B]])  # the miss in another image
    assert r["ap"] == pytest.approx(0.5)


def test_duplicate_detection_is_a_false_positive():
    # second box on A: best IoU is with the already matched A -> FP at rank 2;
    # ranks: TP (1, 1/2), FP (1/2, 1/2), TP (2/3, 1): AP = 0.5 * 1 + 0.5 * 2/3
    near_a = [1.0, 0.0, 11.0, 10.0]
    r = ap([[A, near_a, B]], [[0.9, 0.8, 0.7]], [[A, B]])
    assert r["ap"] == pytest.approx(0.5 + 1 / 3)


def test_iou_threshold_decides_a_loose_box():
    loose = [3.0, 0.0, 13.0, 10.0]  # IoU with A = 70 / 130 = 0.538
    assert ap([[loose]], [[0.5]], [[A]])["ap"] == pytest.approx(1.0)
    assert ap([[loose]], [[0.5]], [[A]], iou_threshold=0.6)["ap"] == pytest.approx(0.0)


def test_detections_matched_within_their_own_image_only():
    r = ap([[A], []], [[0.9], []], [[B], [A]])
    assert r["ap"] == pytest.approx(0.0) and r["true_positives"] == 0


def test_interpolation_uses_best_precision_at_higher_recall():
    # precision dips then recovers: 1, 0.5, 2/3 at recalls 1/3, 1/3, 2/3; 3rd gt never found
    assert interpolated_ap(np.array([1 / 3, 1 / 3, 2 / 3]), np.array([1.0, 0.5, 2 / 3])) == pytest.approx(
        1 / 3 * 1.0 + 1 / 3 * 2 / 3)


def test_no_ground_truth_is_nan_and_bad_input_raises():
    assert math.isnan(ap([[A]], [[0.9]], [[]])["ap"])
    with pytest.raises(ConfigError):
        ap([[A]], [[0.9, 0.8]], [[A]])
    with pytest.raises(ConfigError):
        average_precision([np.zeros((0, 4))], [], [np.zeros((0, 4))])
