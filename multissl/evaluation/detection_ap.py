"""Average precision of one object class, PASCAL VOC style (all-point interpolation).

    >>> ap = average_precision(
    ...     pred_boxes=[np.array([[0, 0, 10, 10]])], pred_scores=[np.array([0.9])],
    ...     true_boxes=[np.array([[0, 0, 10, 10]])])
    >>> ap["ap"]
    1.0

The protocol of the VOC 2010+ devkit (Everingham et al., IJCV 2010): detections of every image
are ranked together by score; going down the list, a detection is a true positive when its best
IoU with a ground-truth box of its own image reaches ``iou_threshold`` and that box was not
matched by a higher-scored detection, otherwise a false positive. AP is the area under the
precision-recall curve after precision is made monotone (each precision replaced by the best
precision at any higher recall): ``sum_i (r_i - r_{i-1}) * p_interp(r_i)``.
"""
from __future__ import annotations

from typing import Dict, List, Sequence

import numpy as np

from multissl.errors import ConfigError


def box_iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU (len(a), len(b)) of ``x1, y1, x2, y2`` boxes (continuous coordinates, no +1)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(-1)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0, None).prod(-1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def interpolated_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """All-point interpolated area under a precision-recall curve given in ranked order."""
    r = np.concatenate([[0.0], np.asarray(recall, dtype=np.float64), [1.0]])
    p = np.concatenate([[0.0], np.asarray(precision, dtype=np.float64), [0.0]])
    p = np.maximum.accumulate(p[::-1])[::-1]  # best precision at this recall or any higher one
    steps = np.flatnonzero(r[1:] != r[:-1]) + 1
    return float(np.sum((r[steps] - r[steps - 1]) * p[steps]))


def average_precision(
    pred_boxes: Sequence[np.ndarray],
    pred_scores: Sequence[np.ndarray],
    true_boxes: Sequence[np.ndarray],
    iou_threshold: float = 0.5,
) -> Dict[str, object]:
    """VOC AP@``iou_threshold`` over a set of images (one list entry per image).

    Returns ``ap``, the ranked ``precision`` and ``recall`` lists, ``num_true``, ``num_pred`` and
    ``true_positives``. Ties in score keep the input order (image by image). AP is NaN when
    there is no ground-truth box (recall is undefined).
    """
    if not len(pred_boxes) == len(pred_scores) == len(true_boxes):
        raise ConfigError(f"need one entry per image: {len(pred_boxes)} box sets, {len(pred_scores)} score sets, "
                          f"{len(true_boxes)} ground-truth sets")
    if not 0 < iou_threshold <= 1:
        raise ConfigError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
    image_of: List[int] = []
    scores: List[float] = []
    boxes: List[np.ndarray] = []
    for i, (pb, ps) in enumerate(zip(pred_boxes, pred_scores)):
        pb = np.asarray(pb, dtype=np.float64).reshape(-1, 4)
        ps = np.asarray(ps, dtype=np.float64).reshape(-1)
        if len(pb) != len(ps):
            raise ConfigError(f"image {i}: {len(pb)} predicted boxes but {len(ps)} scores")
        image_of += [i] * len(pb)
        scores += ps.tolist()
        boxes += list(pb)
    truths = [np.asarray(t, dtype=np.float64).reshape(-1, 4) for t in true_boxes]
    num_true = int(sum(len(t) for t in truths))
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    matched = [np.zeros(len(t), dtype=bool) for t in truths]
    tp = np.zeros(len(order))
    for rank, d in enumerate(order):
        t = truths[image_of[d]]
        if len(t) == 0:
            continue
        ious = box_iou_matrix(boxes[d][None], t)[0]
        best = int(np.argmax(ious))
        if ious[best] >= iou_threshold and not matched[image_of[d]][best]:
            matched[image_of[d]][best] = True
            tp[rank] = 1.0
    ctp = np.cumsum(tp)
    precision = ctp / np.arange(1, len(order) + 1) if len(order) else np.zeros(0)
    recall = ctp / num_true if num_true else np.zeros(len(order))
    ap = interpolated_ap(recall, precision) if num_true else float("nan")
    return {"ap": ap, "precision": precision.tolist(), "recall": recall.tolist(), "num_true": num_true,
            "num_pred": int(len(order)), "true_positives": int(tp.sum())}


__all__ = ["average_precision", "interpolated_ap", "box_iou_matrix"]
