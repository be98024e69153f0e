"""The video_motion recipe end to end on tiny generated digits (--quick), its outputs and errors."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from multissl.recipes import available_recipes
from multissl.recipes.video_motion import main, parse_args

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "video_motion.py"


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def write_digits(path: Path, n: int = 40) -> Path:
    """Stand-in 'digits': a bright random blob in a 28x28 frame."""
    rng = np.random.default_rng(0)
    d = np.zeros((n, 28, 28), dtype=np.uint8)
    for i in range(n):
        r, c = rng.integers(4, 14, 2)
        d[i, r:r + 10, c:c + 10] = rng.integers(100, 255, (10, 10))
    np.save(path, d)
    return path


def test_quick_run_writes_metrics_and_strip(tmp_path: Path) -> None:
    digits = write_digits(tmp_path / "digits.npy")
    out = tmp_path / "out"
    assert main(["--data", str(digits), "--output", str(out), "--quick", "--no-progress", "--ssl-method", "frame_order",
                 "--motion-encoders", "ssl,predictor"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["recipe"] == "video_motion" and m["args"]["quick"] is True
    assert m["pretext"]["method"] == "frame_order" and 0 <= m["pretext"]["heldout_accuracy"] <= 1
    pred = m["prediction"]
    for row in ("ssl", "scratch"):
        assert len(pred[row]["mse_by_time"]) == 10  # 10 -> 10
        assert pred[row]["mse"] == pytest.approx(np.mean(pred[row]["mse_by_time"]), rel=1e-5)
    assert pred["ssl_reduction_vs_copy_last"] == pytest.approx(1 - pred["ssl"]["mse"] / pred["copy_last_mse"])
    # every frame of the 16x16 test clips holds a digit: both trivial predictors are wrong somewhere
    assert pred["copy_last_mse"] > 0 and pred["black_frame_mse"] > 0
    motion = m["motion"]
    runs = motion["results"]
    assert set(runs) == {"raw_probe", "scratch_finetune", "ssl_probe", "ssl_finetune"}
    assert all(len(v["2"]["runs"]) == 2 and 0 <= v["2"]["mean"] <= 1 for v in runs.values())
    assert motion["paired"]["2"]["differences"] == [s - c for s, c in zip(runs["ssl_finetune"]["2"]["runs"],
                                                                            runs["scratch_finetune"]["2"]["runs"])]
    # (b) is also run on the future-frame predictor's encoder, against the same scratch runs
    assert set(m["motion_by_encoder"]) == {"ssl", "predictor"}
    assert m["motion_by_encoder"]["predictor"]["results"]["scratch_finetune"] == runs["scratch_finetune"]
    assert (out / "prediction_strip.png").stat().st_size > 1000


def test_saved_ssl_model_is_reused_without_pretraining(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The SSL model is saved to <output>/final; --ssl-model reuses it (same results, no
    pretraining), LP-FT options reach both fine-tuned arms, and a model that does not fit the run
    is refused with exit status 2 before anything is written."""
    from multissl.model import SSLModel

    digits = write_digits(tmp_path / "digits.npy")
    first, second = tmp_path / "first", tmp_path / "second"
    assert main(["--data", str(digits), "--output", str(first), "--quick", "--no-progress"]) == 0
    model = SSLModel.from_pretrained(first / "final")
    assert model.config["method"] == "future_frame" and model.config["adapter"] == "video"
    assert main(["--data", str(digits), "--output", str(second), "--quick", "--no-progress",
                 "--ssl-model", str(first / "final")]) == 0
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (first, second))
    assert b["pretext"]["loaded_from"] == str(first / "final") and b["pretext"]["seconds"] == 0
    assert not (second / "final").exists()
    assert b["prediction"]["ssl"]["mse"] == pytest.approx(a["prediction"]["ssl"]["mse"], rel=1e-6)
    assert b["motion"]["results"]["ssl_probe"] == a["motion"]["results"]["ssl_probe"]
    import multissl.evaluation.few_labels as few_labels

    seen = []
    real = few_labels.finetune

    def spy(*a, config, **kw):
        seen.append((config.probe_steps, config.encoder_lr_ratio))
        return real(*a, config=config, **kw)

    monkeypatch.setattr(few_labels, "finetune", spy)
    lpft = tmp_path / "lpft"
    assert main(["--data", str(digits), "--output", str(lpft), "--quick", "--no-progress", "--ssl-model",
                 str(first / "final"), "--finetune-probe-steps", "2", "--finetune-encoder-lr-ratio", "0"]) == 0
    assert json.loads((lpft / "metrics.json").read_text())["args"]["finetune_probe_steps"] == 2
    assert seen == [(2, 0.0)] * 4  # both arms (scratch, SSL) x 2 label draws
    capsys.readouterr()
    bad = tmp_path / "bad"
    assert main(["--data", str(digits), "--output", str(bad), "--quick", "--no-progress", "--ssl-model",
                 str(first / "final"), "--ssl-method", "frame_order"]) == 2
    assert "does not match this run: method 'future_frame'" in capsys.readouterr().err
    assert not bad.exists()


def test_pretrain_only_saves_the_model_and_stops(tmp_path: Path) -> None:
    """--pretrain-only writes <output>/final and nothing downstream; that model then serves
    --ssl-model exactly as a full run's would, and the two options exclude each other."""
    from multissl.model import SSLModel

    digits = write_digits(tmp_path / "digits.npy")
    full, only, reuse = tmp_path / "full", tmp_path / "only", tmp_path / "reuse"
    assert main(["--data", str(digits), "--output", str(only), "--quick", "--no-progress", "--pretrain-only"]) == 0
    assert sorted(p.name for p in only.iterdir()) == ["final"]
    config = SSLModel.from_pretrained(only / "final").config
    assert config["method"] == "future_frame" and config["training"]["num_processes"] == 1
    assert config["training"]["num_records"] == 32 and config["training"]["epochs"] == 1  # --quick sizes
    assert main(["--data", str(digits), "--output", str(full), "--quick", "--no-progress"]) == 0
    assert main(["--data", str(digits), "--output", str(reuse), "--quick", "--no-progress",
                 "--ssl-model", str(only / "final")]) == 0
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (full, reuse))
    assert b["motion"]["results"]["ssl_probe"] == a["motion"]["results"]["ssl_probe"]
    with pytest.raises(SystemExit) as e:
        parse_args(["--data", str(digits), "--ssl-model", str(only / "final"), "--pretrain-only"])
    assert e.value.code == 2


def test_quick_run_trains_the_predictors_on_the_process_device(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The future-frame predictors train where the process's device is: the CPU here, the GPU on
    a GPU machine (with bf16 pretraining there; benchmarks/gpu_check.sh runs this file's GPU
    checks with ``-k gpu or device``)."""
    import multissl.recipes.video_motion as vm
    from multissl.model import SSLModel

    devices = []
    original = vm.train_predictor

    def spy(*args, **kwargs):
        method, curve = original(*args, **kwargs)
        devices.append(next(method.parameters()).device.type)
        return method, curve

    monkeypatch.setattr(vm, "train_predictor", spy)
    out = tmp_path / "gpu"
    assert main(["--data", str(write_digits(tmp_path / "digits.npy")), "--output", str(out), "--quick",
                 "--no-progress"]) == 0
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert devices == [expected, expected]
    if expected == "cuda" and torch.cuda.is_bf16_supported():  # the trainer's "auto" precision there
        assert SSLModel.from_pretrained(out / "final").config["training"]["mixed_precision"] == "bf16"
    m = json.loads((out / "metrics.json").read_text())
    assert np.isfinite(m["prediction"]["ssl"]["mse"]) and (out / "prediction_strip.png").stat().st_size > 1000


def test_ssl_init_continues_pretraining_from_a_saved_encoder(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """--ssl-init starts the pretraining from a saved model's encoder weights (then trains it:
    the saved result differs), records where it started, and excludes --ssl-model."""
    import torch

    import multissl.methods as methods
    from multissl.model import SSLModel

    digits = write_digits(tmp_path / "digits.npy")
    first, second = tmp_path / "first", tmp_path / "second"
    assert main(["--data", str(digits), "--output", str(first), "--quick", "--no-progress"]) == 0
    start = SSLModel.from_pretrained(first / "final").encoder.state_dict()
    seen = []  # the encoder's weights when the SSL method is built, i.e. before any training
    real = methods.build_method

    def spy(name, encoder, *a, **kw):
        seen.append({k: v.clone() for k, v in encoder.state_dict().items()})
        return real(name, encoder, *a, **kw)

    monkeypatch.setattr(methods, "build_method", spy)
    assert main(["--data", str(digits), "--output", str(second), "--quick", "--no-progress",
                 "--ssl-init", str(first / "final")]) == 0
    assert seen and all(torch.equal(seen[0][k], start[k]) for k in start)  # the first build: the pretraining
    m = json.loads((second / "metrics.json").read_text())
    assert m["pretext"]["initialised_from"] == str(first / "final") and m["pretext"]["seconds"] > 0
    assert m["pretext"]["initial_history"] == SSLModel.from_pretrained(first / "final").config["history"]
    after = SSLModel.from_pretrained(second / "final")
    assert after.config["initialised_from"] == str(first / "final")
    assert any(not torch.equal(after.encoder.state_dict()[k], start[k]) for k in start)
    with pytest.raises(SystemExit) as e:
        parse_args(["--data", str(digits), "--ssl-model", str(first / "final"), "--ssl-init", str(first / "final")])
    assert e.value.code == 2


def test_default_ssl_is_future_frame(tmp_path: Path) -> None:
    args = parse_args(["--data", "x"])
    assert args.ssl_method == "future_frame" and args.motion_encoders == "ssl"


def test_the_black_frame_baseline_is_the_mean_energy_of_the_future_frames(tmp_path: Path) -> None:
    """Hand check of the metric on real recipe data: predicting black costs the summed squared
    pixels of each future frame, which we recompute from the generator directly."""
    from multissl.adapters.video import VideoAdapter
    from multissl.adapters.video_moving_mnist import moving_mnist
    from multissl.methods import build_method
    from multissl.recipes._video import split_digits
    from multissl.recipes.video_motion import evaluate_predictor

    digits = np.load(write_digits(tmp_path / "d.npy"))
    _, test_digits = split_digits(digits)
    mm = moving_mnist(test_digits, num_sequences=3, num_frames=20, seed=1)
    adapter = VideoAdapter(clip_length=20, preset="none", temporal_jitter=False)
    test = adapter.prepare(mm.videos)
    adapter.fit(test)
    enc = adapter.build_encoder("c3d_small", width=4)
    method = build_method("future_frame", enc, enc.embed_dim, decoder_width=8)
    method.bind_adapter(adapter)
    result = evaluate_predictor(method, adapter, test)
    future = mm.videos[:, 10:].astype(np.float64) / 255.0
    assert result["black_frame_mse"] == pytest.approx((future ** 2).sum(axis=(2, 3)).mean(), rel=1e-4)
    last = mm.videos[:, 9:10].astype(np.float64) / 255.0
    assert result["copy_last_mse"] == pytest.approx(((future - last) ** 2).sum(axis=(2, 3)).mean(), rel=1e-4)
    # untrained: the decoder's last layer is zero, so the model is the copy-last baseline
    assert result["mse"] == pytest.approx(result["copy_last_mse"], rel=1e-4)


def test_missing_data_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code = main(["--data", str(tmp_path / "nope"), "--output", str(tmp_path / "out"), "--quick", "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("video_motion: error:") and "nope: no such file or folder" in err and "\n" not in err
    assert not (tmp_path / "out").exists()


def test_bad_options_exit_2(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as e:
        parse_args(["--data", "x", "--future-frames", "0"])
    assert e.value.code == 2
    with pytest.raises(SystemExit):
        parse_args(["--data", "x", "--ssl-hparams", "{not json"])
    code = main(["--data", str(write_digits(tmp_path / "d.npy")), "--output", str(tmp_path / "o"), "--quick",
                 "--ssl-method", "nonexistent"])
    assert code == 2 and not (tmp_path / "o").exists()


def test_listed_and_runnable_as_a_script_and_a_module() -> None:
    assert available_recipes()["video_motion"].startswith("Video motion on Moving MNIST")
    for cmd in ([sys.executable, str(RECIPE), "--help"], [sys.executable, "-m", "multissl.recipes.video_motion", "--help"]):
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0 and "--predictor-steps" in r.stdout


def test_motion_sets_carry_the_generator_ground_truth(tmp_path: Path) -> None:
    """The direction clips come with the velocities and positions they were drawn from; the
    labels are the quadrant of the summed initial velocity (benchmarks/video_motion_ceiling.py)."""
    from multissl.adapters.video_moving_mnist import direction_of
    from multissl.recipes._video import load_digits, motion_sets

    sets = motion_sets(load_digits(str(write_digits(tmp_path / "d.npy"))), 12, 8, 6, seed=0)
    assert sets["velocity"].shape == (20, 2, 2) and sets["positions"].shape == (20, 6, 2, 2)
    np.testing.assert_array_equal(direction_of(sets["velocity"].sum(axis=1)), sets["labels"])
