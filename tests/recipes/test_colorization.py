"""The colorization recipe end to end on a tiny folder of real JPEG and PNG files, in seconds;
grayscale data refused with exit status 2 and one line."""
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
from multissl.recipes.colorization import main

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "colorization.py"
COLOURS = {"red": (200, 40, 30), "green": (40, 170, 60), "blue": (30, 60, 200)}


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def make_folder(root: Path, per_class: int = 8, size: int = 12, gray: bool = False) -> None:
    """Class folders of 'objects': a coloured square on a noisy background, saved alternately
    as JPEG and PNG; ``gray=True`` saves the same pictures without colour (L or R = G = B)."""
    rng = np.random.default_rng(0)
    for name, colour in COLOURS.items():
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            x = rng.integers(90, 160, size=(size, size, 3)).astype(np.uint8)
            r, c = rng.integers(0, size // 2, size=2)
            x[r:r + size // 2, c:c + size // 2] = colour
            image = Image.fromarray(x)
            if gray:
                image = image.convert("L")
                if i % 2:
                    image = image.convert("RGB")  # colour files holding a gray picture
            image.save(root / name / f"{i:02d}.{'jpg' if i % 2 else 'png'}")


def test_recipe_writes_metrics_grid_and_model(tmp_path: Path) -> None:
    make_folder(tmp_path / "data")
    out = tmp_path / "out"
    code = main(["--data", str(tmp_path / "data"), "--output", str(out), "--labels-per-class", "1,2", "--seeds", "2",
                 "--encoder", "small_cnn", "--encoder-width", "0.25", "--epochs", "1", "--batch-size", "8",
                 "--head-dim", "8", "--finetune-steps", "3", "--no-progress"])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["recipe"] == "colorization" and metrics["classes"] == ["blue", "green", "red"]
    assert metrics["num_test"] + metrics["num_pretrain"] == 24  # test images are not pretrained on
    pretext = metrics["pretext"]
    assert 0 <= pretext["heldout_accuracy"] <= 1 and 0 < pretext["chance"] <= 1
    colours = metrics["colorization"]
    assert colours["num_bins"] == 261 and colours["grid_png"] == "colorization_grid.png"
    assert colours["heldout_ab_abs_error"] > 0 and colours["gray_ab_abs_error"] > 5  # the squares are colourful
    for row in ("raw_probe", "scratch_finetune", "ssl_probe", "ssl_finetune"):
        assert set(metrics["results"][row]) == {"1", "2"}
        assert all(len(v["runs"]) == 2 and 0 <= v["mean"] <= 1 for v in metrics["results"][row].values())
    paired = metrics["paired"]["2"]
    runs = metrics["results"]
    assert paired["differences"] == [s - c for s, c in zip(runs["ssl_finetune"]["2"]["runs"],
                                                           runs["scratch_finetune"]["2"]["runs"])]
    grid = Image.open(out / "colorization_grid.png")
    n_shown = min(12, metrics["num_test"])
    assert grid.mode == "RGB" and grid.size == (n_shown * 48 + (n_shown - 1) * 2, 3 * 48 + 2 * 2)
    pixels = np.asarray(grid).astype(int)
    first_row = pixels[:48]
    assert (first_row[..., 0] == first_row[..., 1]).all()  # the network's input is gray
    assert np.abs(pixels[-48:, :, 0] - pixels[-48:, :, 2]).max() > 50  # the truth is in colour
    assert not list(out.glob(".*tmp*"))
    model = SSLModel.from_pretrained(out / "final")
    assert model.config["method"] == "colorization"
    assert model.embed(np.zeros((2, 12, 12, 3), dtype=np.uint8)).shape == (2, model.embed_dim)


@pytest.mark.parametrize("how", ["mnist_like", "rgb_files_without_colour"])
def test_grayscale_data_is_refused_before_training(tmp_path: Path, capsys: pytest.CaptureFixture, how: str) -> None:
    data = tmp_path / "data"
    if how == "mnist_like":
        make_folder(data, per_class=4, gray=True)
        for p in data.rglob("*.jpg"):  # only single-channel files: the adapter reads 1 channel
            p.unlink()
        expected = "1-channel (grayscale) images"
    else:
        make_folder(data, per_class=4, gray=True)
        for p in data.rglob("*.png"):
            p.unlink()
        expected = "R = G = B"
    code = main(["--data", str(data), "--output", str(tmp_path / "out"), "--labels-per-class", "1",
                 "--encoder", "small_cnn", "--epochs", "1", "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("colorization: error:") and str(data) in err and expected in err and "\n" not in err
    assert not (tmp_path / "out").exists()


def test_listed_and_runnable_as_a_script_and_a_module() -> None:
    assert available_recipes()["colorization"].startswith("Colorization: pretrain on unlabeled colour images")
    for cmd in ([sys.executable, str(RECIPE), "--help"], [sys.executable, "-m", "multissl.recipes.colorization", "--help"]):
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0 and "--no-rebalance" in r.stdout
