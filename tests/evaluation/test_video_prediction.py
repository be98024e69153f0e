"""The per-frame MSE / MAE of the video-prediction field and the copy-last-frame baseline, on hand-computed cases."""
from __future__ import annotations

import pytest
import torch

from multissl.evaluation.video_prediction import copy_last_frame, mse_by_time, per_frame_mae, per_frame_mse


def test_per_frame_mse_sums_over_pixels_and_averages_over_batch_and_time() -> None:
    # 2 sequences x 2 frames of 1x2x2 pixels
    target = torch.zeros(2, 2, 1, 2, 2)
    pred = torch.zeros(2, 2, 1, 2, 2)
    pred[0, 0] = 0.5          # frame error 4 * 0.25 = 1.0
    pred[0, 1, 0, 0, 0] = 1.0  # 1.0
    pred[1, 0, 0, 1, 1] = 0.2  # 0.04
    # pred[1, 1] exact: 0
    assert mse_by_time(pred, target).tolist() == pytest.approx([(1.0 + 0.04) / 2, (1.0 + 0.0) / 2])
    assert float(per_frame_mse(pred, target)) == pytest.approx((1.0 + 1.0 + 0.04 + 0.0) / 4)
    assert float(per_frame_mae(pred, target)) == pytest.approx((2.0 + 1.0 + 0.2 + 0.0) / 4)


def test_channels_count_as_values_of_the_frame() -> None:
    pred, target = torch.full((1, 1, 3, 4, 4), 0.1), torch.zeros(1, 1, 3, 4, 4)
    assert float(per_frame_mse(pred, target)) == pytest.approx(48 * 0.01)


def test_copy_last_frame_repeats_the_last_context_frame() -> None:
    context = torch.arange(2 * 3 * 1 * 2 * 2, dtype=torch.float32).view(2, 3, 1, 2, 2)
    out = copy_last_frame(context, 4)
    assert out.shape == (2, 4, 1, 2, 2)
    for t in range(4):
        assert torch.equal(out[:, t], context[:, 2])
    # a still video is predicted exactly
    still = context[:, 2:3].expand(2, 4, 1, 2, 2)
    assert float(per_frame_mse(copy_last_frame(context, 4), still)) == 0.0


def test_bad_shapes_are_errors() -> None:
    with pytest.raises(ValueError, match="differ in shape"):
        per_frame_mse(torch.zeros(1, 2, 1, 4, 4), torch.zeros(1, 3, 1, 4, 4))
    with pytest.raises(ValueError, match="num_future"):
        copy_last_frame(torch.zeros(1, 2, 1, 4, 4), 0)
