"""The context_filling recipe (image half) end to end on a tiny PNG folder, and its user errors."""
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
from multissl.recipes.context_filling import main

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "context_filling.py"


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def make_png_folder(root: Path, n: int = 40, size: int = 16) -> None:
    """Gray 'digits': a bright bar at a random height on a dark background."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    for i in range(n):
        x = rng.integers(0, 30, size=(size, size)).astype(np.uint8)
        r = rng.integers(2, size - 4)
        x[r:r + 3, 2:-2] = 240
        Image.fromarray(x, mode="L").save(root / f"img_{i:03d}.png")


TINY = ["--epochs", "1", "--batch-size", "8", "--decoder-dim", "16", "--decoder-depth", "1", "--decoder-heads", "2",
        "--no-progress"]


def test_recipe_writes_metrics_grids_and_model(tmp_path: Path) -> None:
    make_png_folder(tmp_path / "data")
    out = tmp_path / "out"
    assert main(["--data", str(tmp_path / "data"), "--output", str(out), *TINY]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["recipe"] == "context_filling" and m["modality"] == "image"
    assert m["num_pretrain"] == 32 and m["num_heldout"] == 8 and m["patch_size"] == 4
    assert m["method_hparams"]["norm_targets"] is False and m["encoder"] == "vit_tiny"
    assert m["method_hparams"]["style"] == "mae"  # images keep MAE's decoder by default
    for kind, share in (("random", 12 / 16), ("center", 4 / 16)):  # round(0.75 * 16) patches; a 2x2 block of 4x4
        fill = m["fills"][kind]
        assert fill["hidden_pixel_share"] == pytest.approx(share)
        assert set(fill["psnr_db"]) == {"mae", "mean_fill", "mean_image", "diffusion"}
        assert all(np.isfinite(v) and v > 0 for v in fill["psnr_db"].values())
        assert fill["best_baseline"] in ("mean_fill", "mean_image", "diffusion")
        png = Image.open(out / fill["grid_png"])
        # 4 rows (masked, MAE, diffusion, original) of 8 held-out images, 16 px scaled 4x, 2 px gaps
        assert png.size == (8 * 64 + 7 * 2, 4 * 64 + 3 * 2)
    model = SSLModel.from_pretrained(out / "final")
    assert model.config["method"] == "mae" and model.embed(str(tmp_path / "data")).shape == (40, 128)


def test_user_mistakes_exit_2_with_one_line_and_write_nothing(tmp_path: Path, capsys) -> None:
    make_png_folder(tmp_path / "data", n=10)
    out = tmp_path / "out"
    assert main(["--data", str(tmp_path / "missing"), "--output", str(out), *TINY]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing: no such file or folder" in err[0]
    assert main(["--data", str(tmp_path / "data"), "--output", str(out), "--patch-size", "5", *TINY]) == 2
    assert "patch_size 5 does not divide the image size 16x16" in capsys.readouterr().err
    assert not (out / "metrics.json").exists()
    with pytest.raises(SystemExit) as e:
        main(["--data", str(tmp_path / "data"), "--mask-ratio", "1.5"])
    assert e.value.code == 2


def test_listed_and_runs_as_a_script() -> None:
    from multissl.methods.mae import STYLES
    from multissl.recipes import context_filling as cf

    assert "context_filling" in available_recipes()
    assert cf.STYLES == STYLES  # the recipe's copy (kept free of torch for --help) matches the method's
    r = subprocess.run([sys.executable, str(RECIPE), "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "--modality" in r.stdout


def test_text_branch_masked_words_vs_unigram(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    words = ["free", "call", "now", "see", "you", "later", "the", "the", "the", "prize", "home", "soon"]
    lines = [("spam" if i % 3 == 0 else "ham") + "\t" + " ".join(rng.choice(words, size=rng.integers(4, 9)))
             for i in range(60)]
    (tmp_path / "sms.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    assert main(["--modality", "text", "--data", str(tmp_path / "sms.tsv"), "--output", str(out), *TINY]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["modality"] == "text" and m["num_pretrain"] == 48 and m["num_heldout"] == 12
    assert m["method_hparams"]["mask_ratio"] == 0.15  # the text adapter's recommendation
    assert m["method_hparams"]["style"] == "simmim"  # text fills words BERT-style by default
    w = m["words"]
    assert w["hidden_tokens"] >= 12 and w["hidden_words"] >= 12  # at least one per text
    assert w["unigram_guesses"][0] == "the"  # the most frequent word of the pretraining texts
    for key in ("token_top1", "token_top5", "word_top1"):
        assert set(w[key]) == {"mae", "unigram", "bigram"} and all(0.0 <= v <= 1.0 for v in w[key].values())
    assert all(w["token_top5"][k] >= w["token_top1"][k] for k in ("mae", "unigram", "bigram"))
    assert len(w["examples"]) == 8 and "[MASK]" in w["examples"][0]["masked"]
    model = SSLModel.from_pretrained(out / "final")
    assert model.embed(["call me now", "see you"]).shape == (2, 128)


def test_text_branch_reads_a_headerless_csv_with_joined_columns_and_sets_the_vocabulary(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    words = "market shares rise bank profit team wins match rocket launch orbit".split()
    rows = [f'"{i % 4 + 1}","{" ".join(rng.choice(words, 3))}","{" ".join(rng.choice(words, 7))}"' for i in range(50)]
    (tmp_path / "news.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    assert main(["--modality", "text", "--data", str(tmp_path / "news.csv"), "--column-names", "label,title,description",
                 "--text-column", "title,description", "--vocab-size", "40", "--style", "mae", "--output", str(out),
                 *TINY]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["num_pretrain"] == 40 and m["num_heldout"] == 10
    assert m["method_hparams"]["style"] == "mae" and m["method_hparams"]["decoder_dim"] == 16
    assert m["vocab_size"] <= 40 and m["args"]["vocab_size"] == 40
    # title and description joined: 3 + 7 words, never the label column
    texts = [ex["original"] for ex in m["words"]["examples"]]
    assert all(len(t.split()) == 10 and not any(c.isdigit() for c in t) for t in texts)
    with pytest.raises(SystemExit):
        main(["--modality", "text", "--data", str(tmp_path / "news.csv"), "--vocab-size", "3", "--output", str(out)])
