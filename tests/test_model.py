"""SSLModel: embed is deterministic, save/load round-trips through safetensors, bad folders fail clearly."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from multissl.errors import ConfigError, UserError
from multissl.model import SSLModel
from tests.toy import VectorAdapter, toy_data


def make_model(encoder_name="mlp"):
    adapter = VectorAdapter()
    adapter.fit(adapter.prepare(toy_data(32)))
    torch.manual_seed(0)
    enc = adapter.build_encoder(encoder_name)
    cfg = {"method": "toy", "encoder": {"name": encoder_name, "kwargs": {}}, "training": {"epochs": 2, "seed": 0}}
    return SSLModel(adapter, enc, cfg)


def test_embed_is_float32_and_deterministic():
    model = make_model()
    x = toy_data(10, seed=3)
    z1, z2 = model.embed(x), model.embed(x)
    assert z1.dtype == np.float32 and z1.shape == (10, 8)
    assert np.array_equal(z1, z2)


def test_save_and_load_round_trip(tmp_path):
    model = make_model()
    folder = model.save_pretrained(tmp_path / "m", metrics={"knn_acc": 0.5})
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    config = json.loads((folder / "config.json").read_text())
    assert config["adapter"] == "toyvector" and config["adapter_config"]["mean"] == model.adapter.config["mean"]
    card = (folder / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: multissl\n") and "method-toy" in card and "knn_acc" in card
    loaded = SSLModel.from_pretrained(folder)
    x = toy_data(7, seed=5)
    assert np.array_equal(model.embed(x), loaded.embed(x))
    # no leftovers from the atomic write
    assert [p.name for p in tmp_path.iterdir()] == ["m"]


def test_custom_encoder_needs_to_be_passed_back(tmp_path):
    model = make_model()
    model.config["encoder"] = {"name": None, "class": "my.Net"}
    model.save_pretrained(tmp_path / "m")
    with pytest.raises(ConfigError, match="pass encoder="):
        SSLModel.from_pretrained(tmp_path / "m")
    enc = model.adapter.build_encoder()
    loaded = SSLModel.from_pretrained(tmp_path / "m", encoder=enc)
    assert np.array_equal(loaded.embed(toy_data(4)), model.embed(toy_data(4)))


def test_mismatched_weights_are_rejected(tmp_path):
    model = make_model()
    model.save_pretrained(tmp_path / "m")
    other = nn.Sequential(nn.Linear(8, 3))
    with pytest.raises(ConfigError, match="do not match"):
        SSLModel.from_pretrained(tmp_path / "m", encoder=other)


@pytest.mark.parametrize("case", ["missing", "empty", "badjson"])
def test_bad_model_folders(tmp_path, case):
    path = tmp_path / "m"
    if case != "missing":
        path.mkdir()
    if case == "badjson":
        (path / "config.json").write_text("{not json")
        (path / "model.safetensors").write_bytes(b"")
    with pytest.raises(UserError):
        SSLModel.from_pretrained(str(path) if case != "missing" else "./does/not/exist")


def test_offline_hub_id_not_in_cache_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)
    with pytest.raises(UserError, match="someone/model"):
        SSLModel.from_pretrained("someone/model", cache_dir=str(tmp_path))
