"""Hub sharing through the real ``huggingface_hub`` client, without the network.

Upload: ``multissl push`` (a subprocess, configured only through ``HF_ENDPOINT`` / ``HF_TOKEN``
as a user would) talks to :class:`tests.hub_recorder.HubRecorder`, a local server that records
what the Hub would have received — no real upload runs because these machines cannot reach
huggingface.co and an upload needs an account (see the recorder's docstring).

Download: the recorded files are laid out exactly as the Hub cache (``models--ns--name/refs``,
``snapshots/<commit>``, ``blobs``) under ``HF_HOME``, and a fresh process with
``HF_HUB_OFFLINE=1`` loads ``SSLModel.from_pretrained("ns/name")`` through
``snapshot_download`` and must give the same embeddings, for every built-in adapter.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict

import numpy as np
import pytest
import yaml

from multissl.adapters import list_adapters
from multissl.api import pretrain
from multissl.io import load_data
from tests.hub_recorder import COMMIT_SHA, HubRecorder

ROOT = Path(__file__).resolve().parents[1]


def _image_data(tmp: Path) -> str:
    rng = np.random.default_rng(0)
    path = tmp / "images.npy"
    np.save(path, (rng.random((48, 12, 12)) * 255).astype(np.uint8))
    return str(path)


def _signature_data(tmp: Path) -> str:
    from tests.adapters.test_signature_io import synthetic_svc2004_folder

    return str(synthetic_svc2004_folder(tmp / "sigs", users=2, genuine=4, forgeries=2, length=20))


def _text_data(tmp: Path) -> str:
    import csv

    rng = np.random.default_rng(0)
    words = "free prize call now win cash meeting lunch tomorrow see you later ok thanks".split()
    path = tmp / "messages.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text"])
        for _ in range(40):
            w.writerow([" ".join(rng.choice(words, size=rng.integers(3, 9)))])
    return str(path)


def _timeseries_data(tmp: Path) -> str:
    rng = np.random.default_rng(0)
    t = np.linspace(0, 1, 64)
    x = np.sin(2 * np.pi * rng.uniform(1, 5, (40, 2, 1)) * t) + 0.1 * rng.normal(size=(40, 2, 64))
    path = tmp / "series.npy"
    np.save(path, x.astype(np.float32))
    return str(path)


def _video_data(tmp: Path) -> str:
    rng = np.random.default_rng(0)
    path = tmp / "clips.npy"
    np.save(path, rng.integers(0, 256, (16, 4, 16, 16, 1), dtype=np.uint8))  # (N, T, H, W, C) uint8 clips
    return str(path)


#: adapter name -> (writes a small dataset in real file form and returns what ``pretrain`` and
#: ``SSLModel.embed`` take, pretrain keyword arguments). Every built-in adapter must be here.
ROUND_TRIP: Dict[str, tuple] = {
    "image": (_image_data, {"method": "simclr", "encoder": "small_cnn", "batch_size": 16}),
    "signature": (_signature_data, {"method": "vicreg", "batch_size": 8}),
    "text": (_text_data, {"method": "simclr", "batch_size": 8}),
    "timeseries": (_timeseries_data, {"method": "simclr", "batch_size": 8}),
    "video": (_video_data, {"method": "simclr", "batch_size": 8}),
}


def _env(**extra: str) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(PYTHONPATH=str(ROOT), HF_HUB_DISABLE_TELEMETRY="1", **extra)
    return env


def _train(adapter: str, tmp: Path) -> tuple:
    make_data, kwargs = ROUND_TRIP[adapter]
    data = make_data(tmp)  # a path, opened as `multissl pretrain --data` does
    model = pretrain(load_data(data), adapter=adapter, epochs=1, seed=0, output_dir=str(tmp / "run"), progress=False, **kwargs)
    folder = model.save_pretrained(tmp / "model", metrics={"knn_accuracy": 0.5})
    return data, model, folder


def _push(folder: Path, repo_id: str, endpoint: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "multissl.cli", "push", "--model", str(folder), "--repo-id", repo_id],
                          env=_env(HF_ENDPOINT=endpoint, HF_TOKEN="hf_recorded_test_token"),
                          capture_output=True, text=True, timeout=300)


def _lay_out_hub_cache(hf_home: Path, repo_id: str, files: Dict[str, bytes]) -> None:
    """The Hub cache layout ``huggingface_hub`` itself writes: content-addressed blobs, a
    snapshot folder of symlinks per commit, and refs/main naming the commit."""
    repo = hf_home / "hub" / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT_SHA)
    snapshot = repo / "snapshots" / COMMIT_SHA
    snapshot.mkdir(parents=True)
    (repo / "blobs").mkdir()
    for name, content in files.items():
        blob = repo / "blobs" / hashlib.sha256(content).hexdigest()
        blob.write_bytes(content)
        os.symlink(os.path.relpath(blob, snapshot), snapshot / name)


LOAD_AND_EMBED = """
import sys, numpy as np
from multissl.io import load_data
from multissl.model import SSLModel
model = SSLModel.from_pretrained(sys.argv[1])
np.save(sys.argv[3], model.embed(load_data(sys.argv[2])))
"""


def test_every_builtin_adapter_has_a_round_trip_case():
    from multissl.adapters import _BUILTIN

    assert set(_BUILTIN) <= set(ROUND_TRIP), f"add a ROUND_TRIP case for {sorted(set(_BUILTIN) - set(ROUND_TRIP))}"
    assert set(ROUND_TRIP) <= set(list_adapters())


@pytest.mark.parametrize("adapter", sorted(ROUND_TRIP))
def test_push_then_offline_download_gives_identical_embeddings(adapter, tmp_path):
    data, model, folder = _train(adapter, tmp_path)
    repo_id = f"someone/tiny-{adapter}"
    with HubRecorder() as hub:
        result = _push(folder, repo_id, hub.endpoint)
    assert result.returncode == 0, result.stderr
    assert f"{repo_id}/commit/{COMMIT_SHA}" in result.stdout

    # what the Hub received: the repo created, one commit with exactly the model folder's files
    assert [(c["name"], c.get("organization")) for c in hub.recorded.created] == [(f"tiny-{adapter}", "someone")]
    (commit,) = hub.recorded.commits
    assert commit["repo"] == repo_id and commit["revision"] == "main"
    files = commit["files"]
    assert sorted(files) == ["README.md", "config.json", "model.safetensors"]
    for name, content in files.items():
        assert content == (folder / name).read_bytes(), name
    auth = {h.get("authorization") or h.get("Authorization") for m, p, h in hub.recorded.requests if m == "POST"}
    assert auth == {"Bearer hf_recorded_test_token"}

    # the card's metadata is YAML with the fields the Hub and users filter on
    card = files["README.md"].decode()
    front = yaml.safe_load(card.split("---\n")[1])
    assert front["library_name"] == "multissl" and front["pipeline_tag"] == "feature-extraction"
    assert {"multissl", f"modality-{adapter}", f"method-{ROUND_TRIP[adapter][1]['method']}"} <= set(front["tags"])
    assert "knn_accuracy" in card
    config = json.loads(files["config.json"])
    assert config["adapter"] == adapter and "adapter_config" in config

    # download: the recorded files in a Hub cache, loaded offline in a fresh process
    hf_home = tmp_path / "hf_home"
    _lay_out_hub_cache(hf_home, repo_id, files)
    out = tmp_path / "z.npy"
    result = subprocess.run([sys.executable, "-c", LOAD_AND_EMBED, repo_id, data, str(out)],
                            env=_env(HF_HOME=str(hf_home), HF_HUB_OFFLINE="1"), capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    # to 1e-6, relative: a fresh process may reduce in another thread order (one float32 ulp)
    np.testing.assert_allclose(np.load(out), model.embed(load_data(data)), rtol=1e-6, atol=1e-6)


def test_push_of_a_folder_that_is_not_a_model_is_one_line_exit_2(tmp_path):
    (tmp_path / "empty").mkdir()
    with HubRecorder() as hub:
        result = _push(tmp_path / "empty", "someone/x", hub.endpoint)
    assert result.returncode == 2 and "not a multissl model folder" in result.stderr
    assert "Traceback" not in result.stderr and hub.recorded.commits == []


def test_push_rejected_by_the_hub_is_one_line_exit_2(tmp_path):
    """A Hub error (here: the endpoint refuses everything) is reported, not a traceback."""
    _, _, folder = _train("image", tmp_path)
    with HubRecorder() as hub:
        result = _push(folder, "someone/x", hub.endpoint + "/nothing-here")
    assert result.returncode == 2, result.stderr
    assert "upload to the Hugging Face Hub failed" in result.stderr and "Traceback" not in result.stderr
