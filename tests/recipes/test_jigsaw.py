"""The jigsaw recipe end to end on a tiny labelled folder of PNG files, in seconds."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from multissl import SSLModel
from multissl.recipes import available_recipes
from multissl.recipes.jigsaw import main

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "jigsaw.py"


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def make_classes(root: Path, per_class: int = 12, size: int = 16) -> None:
    rng = np.random.default_rng(0)
    for c, name in enumerate(["red", "green", "blue"]):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            img = rng.integers(0, 60, size=(size, size, 3), dtype=np.uint8)
            img[2:8, 3:13, c] = 230
            Image.fromarray(img).save(root / name / f"{i:02d}.png")


def test_recipe_writes_metrics_plot_and_model(tmp_path: Path) -> None:
    make_classes(tmp_path / "data")
    out = tmp_path / "out"
    code = main(["--data", str(tmp_path / "data"), "--output", str(out), "--labels-per-class", "1,2", "--seeds", "2",
                 "--encoder", "small_cnn", "--encoder-width", "0.25", "--epochs", "1", "--batch-size", "8",
                 "--finetune-steps", "3", "--num-permutations", "10", "--no-progress"])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["recipe"] == "jigsaw" and metrics["classes"] == ["blue", "green", "red"]
    assert metrics["num_test"] + metrics["num_pretrain"] == 36
    assert metrics["method_hparams"]["num_permutations"] == 10
    pretext = metrics["pretext"]
    assert pretext["chance"] == 0.1 and 0 <= pretext["heldout_accuracy"] <= 1
    for row in ("raw_probe", "scratch_finetune", "ssl_probe", "ssl_finetune"):
        assert set(metrics["results"][row]) == {"1", "2"}
    assert (out / "accuracy_vs_labels.png").stat().st_size > 1000
    model = SSLModel.from_pretrained(out / "final")
    # trained on 4-px tiles, used on whole 16-px images
    assert model.embed(np.zeros((2, 16, 16, 3), dtype=np.uint8)).shape == (2, model.embed_dim)


def test_held_out_pretext_accuracy_is_reproducible(tmp_path: Path) -> None:
    make_classes(tmp_path / "data")
    args = ["--data", str(tmp_path / "data"), "--labels-per-class", "1", "--seeds", "1", "--encoder", "small_cnn",
            "--encoder-width", "0.25", "--epochs", "1", "--batch-size", "8", "--finetune-steps", "1",
            "--num-permutations", "10", "--no-progress"]
    runs = []
    for name in ("a", "b"):
        assert main(args + ["--output", str(tmp_path / name)]) == 0
        runs.append(json.loads((tmp_path / name / "metrics.json").read_text()))
    assert runs[0]["pretext"] == runs[1]["pretext"]
    assert runs[0]["pretrain_history"][0]["loss"] == runs[1]["pretrain_history"][0]["loss"]


def test_images_too_small_for_the_grid_fail_before_training(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    make_classes(tmp_path / "data", size=10)
    code = main(["--data", str(tmp_path / "data"), "--output", str(tmp_path / "out"), "--labels-per-class", "1",
                 "--encoder", "small_cnn", "--epochs", "1", "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("jigsaw: error:") and "10x10 images are too small for a 3x3 grid" in err
    assert not (tmp_path / "out" / "final").exists() and not (tmp_path / "out" / "checkpoints").exists()


def test_listed_and_runnable_as_a_script_and_a_module() -> None:
    assert available_recipes()["jigsaw"].startswith("Jigsaw puzzles")
    for cmd in ([sys.executable, str(RECIPE), "--help"], [sys.executable, "-m", "multissl.recipes.jigsaw", "--help"]):
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0 and "--num-permutations" in r.stdout


def test_separate_test_data_is_held_out_entirely(tmp_path: Path) -> None:
    make_classes(tmp_path / "train", per_class=8)
    make_classes(tmp_path / "test", per_class=4)
    out = tmp_path / "out"
    code = main(["--data", str(tmp_path / "train"), "--test-data", str(tmp_path / "test"), "--output", str(out),
                 "--labels-per-class", "1", "--seeds", "1", "--encoder", "small_cnn", "--encoder-width", "0.25",
                 "--epochs", "1", "--batch-size", "8", "--finetune-steps", "1", "--num-permutations", "10",
                 "--no-progress"])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["num_pretrain"], metrics["num_test"]) == (24, 12)
    assert metrics["pretext"]["num_heldout"] == 12
