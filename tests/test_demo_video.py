"""``multissl demo --modality video``: its embedded bouncing-digit clips and a seconds-long CLI run."""
from __future__ import annotations

import json

import numpy as np
import pytest

from multissl.adapters.video_moving_mnist import direction_of
from multissl.demo import DEMOS
from multissl.demo_video import bouncing_digits

pytestmark = pytest.mark.usefixtures("one_thread")


def test_registered_as_the_video_demo():
    assert DEMOS["video"] == "multissl.demo_video:video_demo"


def test_bouncing_digits_are_seeded_and_labelled_by_their_motion():
    v, y = bouncing_digits(num_sequences=200, num_frames=6, seed=4)
    v2, y2 = bouncing_digits(num_sequences=200, num_frames=6, seed=4)
    assert np.array_equal(v, v2) and np.array_equal(y, y2)
    assert not np.array_equal(v[:60], bouncing_digits(num_sequences=60, num_frames=6, seed=5)[0])
    assert v.shape == (200, 6, 32, 32) and v.dtype == np.uint8 and set(np.unique(y)) <= {0, 1, 2, 3}
    # the label is the quadrant of the initial velocity: the digit's centre of mass moves with a
    # positive component along it between frames 0 and 1 (clips that bounce on the first step, or
    # whose rounded positions barely move, may not: hence "almost all"; random labels give ~50%)
    rows, cols = np.mgrid[:32, :32]
    mass = v[:, :2].astype(np.float64)
    centre = np.stack([(mass * rows).sum((2, 3)), (mass * cols).sum((2, 3))], -1) / mass.sum((2, 3))[..., None]
    unit = np.array([[0, 1], [-1, 0], [0, -1], [1, 0]])  # (d_row, d_col) of right, up, left, down
    along = ((centre[:, 1] - centre[:, 0]) * unit[y]).sum(1)
    assert (along > 0).mean() >= 0.85
    assert (direction_of(unit) == np.arange(4)).all()  # the table above matches the generator's convention


def test_cli_video_demo_writes_metrics_and_plot(tmp_path):
    from multissl.cli import main

    out = tmp_path / "demo"
    assert main(["demo", "--modality", "video", "--epochs", "1", "--seeds", "1", "--no-progress",
                 "--output", str(out)]) == 0
    saved = json.loads((out / "metrics.json").read_text())
    assert set(saved["results"]) == {"raw_probe", "scratch_finetune", "ssl_probe", "ssl_finetune"}
    for row in saved["results"].values():
        assert set(row) == {"1", "5", "10"}
        for k in row.values():
            assert len(k["runs"]) == 1 and 0.0 <= k["mean"] <= 1.0
    assert saved["config"]["epochs"] == 1 and len(saved["pretrain_history"]) == 1
    assert sum(saved["class_counts"]) == saved["config"]["num_sequences"]
    assert (out / "accuracy_vs_labels.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "final" / "model.safetensors").is_file()
