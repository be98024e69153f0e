"""The image_few_labels recipe end to end on a tiny labelled folder of real PNG files."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from multissl.recipes import available_recipes
from multissl.recipes.image_few_labels import main

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "image_few_labels.py"


def make_classes(root: Path, per_class: int = 12) -> None:
    rng = np.random.default_rng(0)
    for c, (name, band) in enumerate([("left", 0), ("middle", 5), ("right", 10)]):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            img = rng.integers(0, 60, size=(16, 16, 3), dtype=np.uint8)
            img[:, band:band + 6, c] = 230
            Image.fromarray(img).save(root / name / f"{i:02d}.png")


def test_recipe_writes_metrics_plot_and_model(tmp_path):
    make_classes(tmp_path / "data")
    out = tmp_path / "out"
    code = main(["--data", str(tmp_path / "data"), "--output", str(out), "--labels-per-class", "1,2", "--seeds", "2",
                 "--encoder", "small_cnn", "--epochs", "2", "--batch-size", "8", "--finetune-steps", "5",
                 "--no-progress"])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["classes"] == ["left", "middle", "right"]
    assert metrics["num_test"] + metrics["num_pretrain"] == 36  # test images are not pretrained on
    for row in ("raw_probe", "untrained_probe", "scratch_finetune", "ssl_probe", "ssl_finetune"):
        assert set(metrics["results"][row]) == {"1", "2"}
        assert all(len(v["runs"]) == 2 and 0 <= v["mean"] <= 1 for v in metrics["results"][row].values())
    for k, gain in metrics["gains"].items():  # the gains are the differences of the rows' means
        r = metrics["results"]
        assert abs(gain["ssl_probe_minus_untrained_probe"]
                   - (r["ssl_probe"][k]["mean"] - r["untrained_probe"][k]["mean"])) < 1e-12
    assert (out / "accuracy_vs_labels.png").stat().st_size > 1000
    assert (out / "final" / "model.safetensors").is_file()


def test_too_few_images_per_class_is_a_clear_error(tmp_path, capsys):
    make_classes(tmp_path / "data", per_class=4)
    code = main(["--data", str(tmp_path / "data"), "--output", str(tmp_path / "out"), "--labels-per-class", "10",
                 "--encoder", "small_cnn", "--epochs", "1", "--no-progress"])
    assert code == 2
    assert "fewer than the largest --labels-per-class 10" in capsys.readouterr().err
    assert not (tmp_path / "out" / "final").exists()


def test_listed_and_runnable_as_a_script():
    assert "image_few_labels" in available_recipes()
    r = subprocess.run([sys.executable, str(RECIPE), "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "--labels-per-class" in r.stdout


def test_separate_test_set_is_never_pretrained_on(tmp_path):
    make_classes(tmp_path / "train")
    make_classes(tmp_path / "test", per_class=4)
    out = tmp_path / "out"
    assert main(["--data", str(tmp_path / "train"), "--test-data", str(tmp_path / "test"), "--output", str(out),
                 "--labels-per-class", "2", "--seeds", "1", "--encoder", "small_cnn", "--epochs", "1",
                 "--batch-size", "8", "--finetune-steps", "3", "--no-progress"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_pretrain"] == 36 and metrics["num_test"] == 12
