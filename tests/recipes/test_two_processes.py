"""Recipes under ``accelerate launch --multi_gpu --num_processes 2`` on a CPU-only machine (one
gloo group): every process pretrains (the model records 2 processes), only the main one
evaluates, prints and writes. The signature recipe's own test file has its two-process run."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.launch import ROOT, launch_two
from tests.recipes.test_image_few_labels import make_classes
from tests.recipes.test_stock_prediction import write_prices
from tests.recipes.test_text_classification import TINY as TEXT_TINY, _sms_file
from tests.recipes.test_video_motion import write_digits


def launch_recipe(recipe: str, *args: str) -> subprocess.CompletedProcess:
    return launch_two(ROOT / "recipes" / f"{recipe}.py", *args)


def trained_processes(out: Path) -> int:
    return json.loads((out / "final" / "config.json").read_text())["training"]["num_processes"]


def test_spam_detection(tmp_path):
    _sms_file(tmp_path / "SMSSpamCollection")
    out = tmp_path / "out"
    proc = launch_recipe("spam_detection", "--data", str(tmp_path), "--output", str(out), *TEXT_TINY)
    assert proc.stdout.count("wrote ") == 1 and proc.stdout.count("pretraining ") == 1
    assert trained_processes(out) == 2
    assert json.loads((out / "metrics.json").read_text())["results"]["ssl_probe"]["3"]["f1"]["mean"] >= 0


def test_stock_prediction(tmp_path):
    data = tmp_path / "prices"
    data.mkdir()
    write_prices(data / "aaa.us.txt", days=620, seed=1)
    out = tmp_path / "run"
    proc = launch_recipe("stock_prediction", "--data", str(data), "--tickers", "aaa", "--window", "16", "--test-starts",
                      "2011-06-01", "2012-01-02", "--epochs", "1", "--batch-size", "32", "--embed-dim", "16",
                      "--depth", "2", "--bootstrap", "20", "--output", str(out), "--no-progress")
    assert proc.stdout.count("wrote ") == 1 and proc.stdout.count("fold 2: test from") == 1
    assert trained_processes(out) == 2
    assert len(json.loads((out / "metrics.json").read_text())["results"]["aaa"]["folds"]) == 2


def test_image_few_labels(tmp_path):
    make_classes(tmp_path / "data")
    out = tmp_path / "out"
    proc = launch_recipe("image_few_labels", "--data", str(tmp_path / "data"), "--output", str(out),
                         "--labels-per-class", "1", "--seeds", "1", "--encoder", "small_cnn", "--epochs", "1",
                         "--batch-size", "8", "--finetune-steps", "2", "--no-progress")
    assert proc.stdout.count("wrote ") == 1
    assert trained_processes(out) == 2


def test_context_filling_text(tmp_path):
    data = _sms_file(tmp_path / "sms.tsv")
    out = tmp_path / "out"
    proc = launch_recipe("context_filling", "--modality", "text", "--data", str(data), "--output",
                         str(out), "--epochs", "1", "--batch-size", "8", "--decoder-dim", "16", "--decoder-depth", "1",
                         "--decoder-heads", "2", "--no-progress")
    assert proc.stdout.count("wrote ") == 1
    assert trained_processes(out) == 2


def test_video_motion_pretrain_only(tmp_path):
    out = tmp_path / "out"
    proc = launch_recipe("video_motion", "--data", str(write_digits(tmp_path / "digits.npy")), "--output", str(out),
                         "--quick", "--pretrain-only", "--no-progress")
    assert proc.stdout.count("stopping here") == 1
    assert trained_processes(out) == 2
