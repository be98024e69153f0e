"""Safe loading: weights only through safetensors, Accelerate state only through
``torch.load(weights_only=True)``; a pickle planted in a model folder or a checkpoint never runs."""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch

from multissl.errors import DataError, UserError
from multissl.model import SSLModel
from multissl.trainer import TrainConfig, Trainer
from tests.toy import ToyMethod, VectorAdapter, toy_data


class Payload:
    """Unpickling this runs ``open(marker, "w")`` — what a malicious checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def plant(path: Path, marker: Path) -> None:
    path.write_bytes(pickle.dumps({"state_dict": Payload(marker)}))


def small_model() -> SSLModel:
    adapter = VectorAdapter()
    adapter.fit(adapter.prepare(toy_data(32)))
    torch.manual_seed(0)
    return SSLModel(adapter, adapter.build_encoder("mlp"), {"method": "toy", "encoder": {"name": "mlp", "kwargs": {}}})


def test_the_payload_is_live(tmp_path):
    """The test's own check: plain unpickling really does run it (so the tests below mean something)."""
    plant(tmp_path / "p.pkl", tmp_path / "pwned")
    pickle.loads((tmp_path / "p.pkl").read_bytes())
    assert (tmp_path / "pwned").exists()


def test_folder_with_only_a_pickle_is_refused(tmp_path):
    folder = small_model().save_pretrained(tmp_path / "m")
    (folder / "model.safetensors").unlink()
    plant(folder / "pytorch_model.bin", tmp_path / "pwned")
    with pytest.raises(UserError, match="not a multissl model folder"):
        SSLModel.from_pretrained(folder)
    assert not (tmp_path / "pwned").exists()


def test_a_pickle_beside_the_safetensors_is_never_read(tmp_path):
    model = small_model()
    folder = model.save_pretrained(tmp_path / "m")
    for name in ("pytorch_model.bin", "model.pt", "optimizer.bin"):
        plant(folder / name, tmp_path / "pwned")
    loaded = SSLModel.from_pretrained(folder)
    x = toy_data(4)
    assert (loaded.embed(x) == model.embed(x)).all()
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("victim, refused", [("optimizer.bin", True), ("custom_checkpoint_0.pkl", True),
                                             # Accelerate skips RNG states it cannot read (with a log line);
                                             # multissl seeds every step itself, so nothing is lost
                                             ("random_states_0.pkl", False)])
def test_resume_from_a_tampered_checkpoint_never_runs_the_pickle(victim, refused, tmp_path):
    def trainer(resume: bool) -> tuple:
        adapter = VectorAdapter()
        data = adapter.prepare(toy_data(64))
        adapter.fit(data)
        torch.manual_seed(0)
        cfg = TrainConfig(epochs=1, batch_size=16, seed=0, progress=False, output_dir=str(tmp_path / "run"),
                          checkpoint_every=2, resume=resume)
        return Trainer(ToyMethod(adapter.build_encoder(), 8), adapter, cfg), data

    t, data = trainer(False)
    t.fit(data)
    ckpt = t.latest_checkpoint()
    plant(ckpt / victim, tmp_path / "pwned")
    t, data = trainer(True)
    if refused:
        with pytest.raises(DataError, match=f"{ckpt.name}: cannot load this checkpoint .* damaged or tampered"):
            t.fit(data)
    else:
        t.fit(data)
    assert not (tmp_path / "pwned").exists()
    assert not any(p.name == "pwned" for p in Path(os.getcwd()).iterdir())
