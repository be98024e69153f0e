"""Pretraining on clips with the video adapter: simclr and 3D rotation (with a save/load round
trip), and the masked methods on tubelet tokens. Tiny random clips, 1 epoch."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from multissl import pretrain
from multissl.model import SSLModel


def clips_nthwc(n=8, t=6, size=16, c=1, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, t, size, size, c), dtype=np.uint8)


@pytest.mark.parametrize("method", ["simclr", "rotation"])
def test_pretrain_and_save_load_round_trip(method, tmp_path):
    torch.manual_seed(0)
    clips = clips_nthwc()
    model = pretrain(clips, adapter="video", method=method, epochs=1, batch_size=4, seed=0, progress=False,
                     encoder_kwargs={"width": 8}, adapter_config={"clip_length": 4}, output_dir=str(tmp_path / "run"))
    emb = model.embed(clips)
    assert emb.shape == (8, 64) and np.isfinite(emb).all()   # c3d_small of width 8: 8 * 8 features
    loaded = SSLModel.from_pretrained(model.save_pretrained(tmp_path / "model"))
    assert loaded.adapter.get_config() == model.adapter.get_config()
    np.testing.assert_allclose(loaded.embed(clips), emb, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("method", ["mae", "data2vec"])
def test_masked_methods_train_on_tubelets(method):
    clips = clips_nthwc(t=4)
    model = pretrain(clips, adapter="video", method=method, epochs=1, batch_size=4, seed=0, progress=False,
                     encoder_kwargs={"dim": 32, "depth": 1, "heads": 2},
                     adapter_config={"clip_length": 4, "patch_size": 8})
    assert model.encoder.__class__.__name__ == "TokenEncoder"     # the video ViT, not the 3D CNN
    emb = model.embed(clips)
    assert emb.shape == (8, 32) and np.isfinite(emb).all()
