"""The rotation recipe end to end on a tiny MNIST-style IDX folder (gzip), in seconds."""
from __future__ import annotations

import gzip
import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from multissl import SSLModel
from multissl.recipes import available_recipes
from multissl.recipes.rotation import main

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "rotation.py"


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def write_idx(path: Path, array: np.ndarray) -> None:
    """LeCun's IDX format: 0, 0, type 0x08 (uint8), ndim, big-endian sizes, then the bytes."""
    header = bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def make_idx_folder(root: Path, per_class: int = 12, size: int = 12) -> None:
    """Three classes of 'digits': a bar at the top, a bar on the left, an L (upright matters)."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 40, size=(3 * per_class, size, size)).astype(np.uint8)
    y = np.repeat(np.arange(3), per_class)
    for i, c in enumerate(y):
        if c in (0, 2):
            x[i, 1:3, 2:-2] = 250
        if c in (1, 2):
            x[i, 2:-2, 1:3] = 250
    root.mkdir(parents=True)
    write_idx(root / "t10k-images-idx3-ubyte.gz", x)
    write_idx(root / "t10k-labels-idx1-ubyte.gz", y)


def test_recipe_writes_metrics_plot_and_model(tmp_path: Path) -> None:
    make_idx_folder(tmp_path / "data")
    out = tmp_path / "out"
    code = main(["--data", str(tmp_path / "data"), "--output", str(out), "--labels-per-class", "1,2", "--seeds", "2",
                 "--encoder", "small_cnn", "--encoder-width", "0.25", "--epochs", "1", "--batch-size", "8",
                 "--finetune-steps", "3", "--no-progress"])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["recipe"] == "rotation" and metrics["classes"] == ["0", "1", "2"]
    assert metrics["num_test"] + metrics["num_pretrain"] == 36  # test images are not pretrained on
    pretext = metrics["pretext"]
    assert pretext["chance"] == 0.25 and 0 <= pretext["heldout_accuracy"] <= 1
    assert pretext["num_heldout"] == metrics["num_test"]
    for row in ("raw_probe", "scratch_finetune", "ssl_probe", "ssl_finetune"):
        assert set(metrics["results"][row]) == {"1", "2"}
        assert all(len(v["runs"]) == 2 and 0 <= v["mean"] <= 1 for v in metrics["results"][row].values())
    paired = metrics["paired"]["2"]  # SSL minus scratch on the same labelled draws
    runs = metrics["results"]
    assert paired["differences"] == [s - c for s, c in zip(runs["ssl_finetune"]["2"]["runs"],
                                                           runs["scratch_finetune"]["2"]["runs"])]
    assert paired["wins"] == sum(d > 0 for d in paired["differences"])
    assert (out / "accuracy_vs_labels.png").stat().st_size > 1000
    model = SSLModel.from_pretrained(out / "final")
    assert model.config["method"] == "rotation" and model.adapter.config["preset"] == "light"
    assert model.embed(np.zeros((2, 12, 12), dtype=np.uint8)).shape == (2, model.embed_dim)


def test_non_square_images_fail_before_training(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    np.savez(tmp_path / "wide.npz", x=np.zeros((30, 10, 14), dtype=np.uint8), y=np.repeat(np.arange(3), 10))
    code = main(["--data", str(tmp_path / "wide.npz"), "--output", str(tmp_path / "out"), "--labels-per-class", "1",
                 "--encoder", "small_cnn", "--epochs", "1", "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rotation: error:") and "square images, got 10x14" in err and "\n" not in err
    assert not (tmp_path / "out" / "final").exists() and not (tmp_path / "out" / "checkpoints").exists()


def test_listed_and_runnable_as_a_script_and_a_module() -> None:
    assert available_recipes()["rotation"].startswith("Rotation prediction (RotNet)")
    for cmd in ([sys.executable, str(RECIPE), "--help"], [sys.executable, "-m", "multissl.recipes.rotation", "--help"]):
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0 and "--head-hidden-dim" in r.stdout


def test_video_mode_rotates_clips_and_reports_the_few_label_gain(tmp_path: Path) -> None:
    """3D rotation on Moving MNIST made from stand-in digits: pretext accuracy on held-out clips,
    the few-label direction comparison, and a saved video model."""
    rng = np.random.default_rng(0)
    digits = np.zeros((30, 28, 28), dtype=np.uint8)
    digits[:, 6:22, 10:14] = rng.integers(120, 255, (30, 16, 4))  # an upright bar: rotations differ
    np.save(tmp_path / "digits.npy", digits)
    out = tmp_path / "out"
    code = main(["--modality", "video", "--data", str(tmp_path / "digits.npy"), "--output", str(out),
                 "--max-records", "40", "--image-size", "16", "--clip-length", "4", "--encoder-width", "0.125",
                 "--epochs", "1", "--batch-size", "8", "--labels-per-class", "1,2", "--seeds", "2",
                 "--finetune-steps", "2", "--no-progress"])
    assert code == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["modality"] == "video" and m["classes"] == ["right", "up", "left", "down"]
    assert m["num_pretrain"] + m["num_test"] == 40 and m["pretext"]["chance"] == 0.25
    assert 0 <= m["pretext"]["heldout_accuracy"] <= 1 and m["pretext"]["num_heldout"] == m["num_test"]
    for row in ("raw_probe", "scratch_finetune", "ssl_probe", "ssl_finetune"):
        assert set(m["results"][row]) == {"1", "2"}
    assert m["paired"]["2"]["wins"] == sum(d > 0 for d in m["paired"]["2"]["differences"])
    model = SSLModel.from_pretrained(out / "final")
    assert model.config["adapter"] == "video" and model.config["method"] == "rotation"
    clips = np.zeros((2, 4, 16, 16), dtype=np.uint8)
    assert model.embed(clips).shape == (2, model.embed_dim)
