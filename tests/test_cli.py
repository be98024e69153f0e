"""The CLI end to end on tiny real image files: exit codes, one-line errors, atomic outputs."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from multissl.cli import main

TINY = ["--epochs", "1", "--batch-size", "8", "--encoder", "small_cnn", "--no-progress"]


def write_images(folder: Path, n: int, seed: int, shift: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        img = rng.integers(0, 80, size=(16, 16, 3), dtype=np.uint8)
        img[:, shift:shift + 6] += 150  # a class-dependent bright band
        Image.fromarray(img).save(folder / f"img_{i:03d}.png")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    write_images(root / "unlabeled", 24, 0)
    write_images(root / "labelled" / "left", 10, 1, shift=0)
    write_images(root / "labelled" / "right", 10, 2, shift=10)
    assert main(["pretrain", "--data", str(root / "unlabeled"), "--output", str(root / "run"), *TINY]) == 0
    return root


def test_pretrain_writes_a_loadable_model(trained):
    final = trained / "run" / "final"
    assert {p.name for p in final.iterdir()} == {"config.json", "model.safetensors", "README.md"}
    assert json.loads((final / "config.json").read_text())["method"] == "simclr"
    assert (trained / "run" / "checkpoints").is_dir()


def test_embed_writes_npy(trained, capsys):
    out = trained / "z.npy"
    assert main(["embed", "--model", str(trained / "run" / "final"), "--data", str(trained / "unlabeled"),
                 "--output", str(out)]) == 0
    z = np.load(out)
    assert z.shape == (24, 256) and z.dtype == np.float32
    assert "24 x 256" in capsys.readouterr().out


def test_embed_tensorboard_projector(trained, tmp_path):
    """The projector files TensorBoard reads: the matrix, metadata, and a sprite of the images."""
    logdir = tmp_path / "tb"
    assert main(["embed", "--model", str(trained / "run" / "final"), "--data", str(trained / "unlabeled"),
                 "--output", str(tmp_path / "z.npy"), "--tensorboard", str(logdir)]) == 0
    (config,) = logdir.rglob("projector_config.pbtxt")
    (tsv,) = logdir.rglob("tensors.tsv")
    matrix = np.loadtxt(tsv, delimiter="\t")
    np.testing.assert_allclose(matrix, np.load(tmp_path / "z.npy"), atol=1e-4)
    assert (tsv.parent / "metadata.tsv").read_text().split() == [str(i) for i in range(24)]
    sprite = Image.open(tsv.parent / "sprite.png")
    assert sprite.size == (5 * 16, 5 * 16)  # ceil(sqrt(24)) thumbnails of 16 px per side
    assert "sprite" in config.read_text()


@pytest.mark.parametrize("protocol", ["knn", "linear", "finetune"])
def test_evaluate_protocols(trained, protocol, tmp_path):
    out = tmp_path / "m.json"
    assert main(["evaluate", "--model", str(trained / "run" / "final"), "--data", str(trained / "labelled"),
                 "--protocol", protocol, "--test-fraction", "0.4", "--output", str(out), "--finetune-steps", "10"]) == 0
    result = json.loads(out.read_text())
    assert result["classes"] == ["left", "right"] and result["test"] == 8
    assert 0.0 <= result["accuracy"] <= 1.0


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "multissl.cli", *args], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("args, needle", [
    (["pretrain", "--data", "/no/such/folder", "--output", "OUT"], "/no/such/folder: no such file or folder"),
    (["pretrain", "--data", "IMAGES", "--method", "nosuch", "--output", "OUT"], "unknown method 'nosuch'"),
    (["pretrain", "--data", "IMAGES", "--adapter", "smell", "--output", "OUT"], "unknown adapter 'smell'"),
    (["pretrain", "--data", "BROKEN", "--output", "OUT", *TINY], "bad.png"),
    (["embed", "--model", "/no/model", "--data", "IMAGES", "--output", "OUT/z.npy"], "/no/model"),
    (["pretrain", "--data", "IMAGES", "--epochs", "many"], "invalid int value"),
])
def test_user_mistakes_exit_2_with_one_line(tmp_path, args, needle):
    images = tmp_path / "images"
    write_images(images, 4, 0)
    broken = tmp_path / "broken"
    write_images(broken, 4, 0)
    (broken / "bad.png").write_bytes(b"this is not a png")
    out = tmp_path / "out"
    args = [a.replace("IMAGES", str(images)).replace("BROKEN", str(broken)).replace("OUT", str(out)) for a in args]
    r = run_cli(*args)
    assert r.returncode == 2, r.stderr
    assert needle in r.stderr
    assert "Traceback" not in r.stderr
    # nothing half-written: no model folder appears for a failed run
    assert not (out / "final").exists()


def test_recipes_lists_and_help_works():
    r = run_cli("recipes")
    assert r.returncode == 0
    assert run_cli("--help").returncode == 0


def test_two_process_pretrain_saves_one_model(tmp_path):
    """`accelerate launch` with 2 CPU processes: one gloo group, the global batch split across
    them, checkpoints holding both processes' RNG states, and the final model written once."""
    rng = np.random.default_rng(0)
    np.save(tmp_path / "x.npy", rng.integers(0, 255, (64, 16, 16, 3), dtype=np.uint8))
    from tests.launch import launch_two

    r = launch_two("-m", "multissl.cli", "pretrain", "--data", tmp_path / "x.npy", "--output", tmp_path / "run",
                   "--epochs", "2", "--batch-size", "8", "--encoder", "small_cnn", "--no-progress")
    assert r.stdout.count("saved SSLModel") == 1
    training = json.loads((tmp_path / "run" / "final" / "config.json").read_text())["training"]
    assert training["num_processes"] == 2 and training["global_batch"] == 16 and training["total_steps"] == 8
    last = tmp_path / "run" / "checkpoints" / "step_00000008"
    assert (last / "random_states_0.pkl").is_file() and (last / "random_states_1.pkl").is_file()


def test_config_file_fills_in_flags_and_explicit_flags_win(tmp_path, capsys):
    """A key of --config that also has its own flag (encoder, epochs, seed...) is used when the
    flag is left out and overridden when the flag is given, instead of clashing."""
    write_images(tmp_path / "imgs", 16, 0)
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"encoder": "resnet18", "epochs": 3, "batch_size": 8, "seed": 5}))
    out = tmp_path / "run"
    assert main(["pretrain", "--data", str(tmp_path / "imgs"), "--output", str(out), "--config", str(cfg),
                 "--encoder", "small_cnn", "--epochs", "1", "--no-progress"]) == 0
    saved = json.loads((out / "final" / "config.json").read_text())
    assert saved["encoder"]["name"] == "small_cnn"  # the flag won over the file
    assert saved["training"]["total_steps"] == 2  # --epochs 1 over 16 images at the file's batch 8
    assert saved["training"]["seed"] == 5  # from the file: no --seed flag


@pytest.mark.parametrize("content, message", [
    ({"no_such_option": 1}, "no_such_option"),
    ({"adapter": "text"}, "--adapter"),
])
def test_bad_config_keys_are_one_line_errors(tmp_path, capsys, content, message):
    write_images(tmp_path / "imgs", 8, 0)
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps(content))
    code = main(["pretrain", "--data", str(tmp_path / "imgs"), "--output", str(tmp_path / "run"),
                 "--config", str(cfg), *TINY])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "run" / "final").exists()


@pytest.mark.parametrize("modality", ["image", "timeseries", "video", "signature"])
def test_demo_with_no_seeds_is_a_one_line_error(tmp_path, capsys, modality):
    code = main(["demo", "--modality", modality, "--seeds", "0", "--no-progress", "--output", str(tmp_path / "d")])
    err = capsys.readouterr().err
    assert code == 2 and "--seeds must be at least 1" in err and "Traceback" not in err
    assert not (tmp_path / "d").exists()


def test_pretrain_with_a_positives_file(tmp_path, capsys):
    write_images(tmp_path / "imgs", 16, 0)
    np.save(tmp_path / "pos.npy", ((np.arange(16) + 1) % 16)[:, None])
    out = tmp_path / "run"
    assert main(["pretrain", "--data", str(tmp_path / "imgs"), "--output", str(out), "--positives",
                 str(tmp_path / "pos.npy"), *TINY]) == 0
    saved = json.loads((out / "final" / "config.json").read_text())
    assert saved["training"]["positives"] == {"per_record": 1, "records_with_partner": 16}


@pytest.mark.parametrize("write, message", [
    (None, "no such positives file"),
    (lambda p: p.write_bytes(b"not numpy"), "not a NumPy .npy array"),
    (lambda p: np.save(p, np.array([[0], [1], [99]] + [[i] for i in range(3, 16)])), "positives[2, 0] = 99"),
    (lambda p: np.save(p, np.array([{"a": 1}], dtype=object)), "not a NumPy .npy array"),  # a pickle is refused
])
def test_bad_positives_files_are_one_line_errors(tmp_path, capsys, write, message):
    write_images(tmp_path / "imgs", 16, 0)
    pos = tmp_path / "pos.npy"
    if write is not None:
        write(pos)
    code = main(["pretrain", "--data", str(tmp_path / "imgs"), "--output", str(tmp_path / "run"),
                 "--positives", str(pos), *TINY])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "run" / "final").exists()
