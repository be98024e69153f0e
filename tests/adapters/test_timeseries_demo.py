"""The time-series demo: its synthetic data and a tiny end-to-end run."""
from __future__ import annotations

import json

import numpy as np
import torch

from multissl.demo import DEMOS
from multissl.demo_timeseries import ACTIVITIES, TimeSeriesDemoConfig, run_timeseries_demo, synthetic_activity


def test_registered_as_the_timeseries_demo():
    assert DEMOS["timeseries"] == "multissl.demo_timeseries:timeseries_demo"


def test_synthetic_activity_is_seeded_balanced_and_plausible():
    x, y = synthetic_activity(n_per_class=20, seed=3)
    x2, y2 = synthetic_activity(n_per_class=20, seed=3)
    assert np.array_equal(x, x2) and np.array_equal(y, y2)
    assert x.shape == (80, 3, 128) and x.dtype == np.float32
    assert np.bincount(y).tolist() == [20] * len(ACTIVITIES)
    # about 1 g of gravity on average, and running moves more than standing
    assert 0.8 < float(np.linalg.norm(x.mean(2), axis=1).mean()) < 1.2
    assert x[y == ACTIVITIES.index("running")].std(2).mean() > 3 * x[y == ACTIVITIES.index("standing")].std(2).mean()


def test_tiny_demo_run_writes_metrics(tmp_path):
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg = TimeSeriesDemoConfig(output=str(tmp_path / "demo"), epochs=1, n_per_class=12, labels_per_class=(2,),
                                   seeds=(0,), finetune_steps=3, progress=False,
                                   encoder_kwargs={"width": 8, "depth": 2, "embed_dim": 16})
        metrics = run_timeseries_demo(cfg)
    finally:
        torch.set_num_threads(n)
    saved = json.loads((tmp_path / "demo" / "metrics.json").read_text())
    assert set(saved["results"]) == {"raw_probe", "scratch_finetune", "ssl_probe", "ssl_finetune"}
    assert 0 <= metrics["results"]["ssl_probe"]["2"]["mean"] <= 1
    assert (tmp_path / "demo" / "accuracy_vs_labels.png").is_file()
    assert (tmp_path / "demo" / "final" / "model.safetensors").is_file()
