"""multissl.evaluation.finetune: same result for the same seed, a frozen encoder stays frozen,
and the automatic fast path (bf16 autocast + channels_last for image conv nets on CPUs with bf16
matrix units) resolves like the Trainer's and still learns."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from multissl import fast_path
from multissl.errors import ConfigError
from multissl.evaluation.finetune import FinetuneConfig, finetune, predict, predict_proba


def two_class_images(n: int = 64, side: int = 16):
    """Bright vs dark images: any conv net can separate them in a few steps."""
    rng = np.random.default_rng(0)
    y = np.arange(n) % 2
    base = np.where(y[:, None, None, None] == 1, 200, 40)
    x = np.clip(base + rng.integers(-30, 30, (n, side, side, 3)), 0, 255).astype(np.uint8)
    return x, y


def setup(side: int = 16):
    from multissl.adapters import get_adapter

    adapter = get_adapter("image", image_size=side)
    x, y = two_class_images(side=side)
    data = adapter.prepare(x)
    adapter.fit(data)
    torch.manual_seed(0)
    encoder = adapter.build_encoder("small_cnn", width=0.25, embed_dim=16)
    return adapter, encoder, data, y


def test_finetune_is_reproducible_and_learns():
    adapter, encoder, data, y = setup()
    cfg = FinetuneConfig(steps=30, batch_size=16, lr=1e-2, mixed_precision="no", seed=3)
    a = finetune(encoder, adapter, data, y, data, y, config=cfg)
    b = finetune(encoder, adapter, data, y, data, y, config=cfg)
    assert a["mixed_precision"] == "no"
    assert a["accuracy"] >= 0.9
    for pa, pb in zip(a["model"].parameters(), b["model"].parameters()):
        assert torch.equal(pa, pb)
    # the caller's encoder is copied, not trained in place
    assert not torch.equal(next(encoder.parameters()), next(a["model"].encoder.parameters()))


def test_predict_proba_is_the_softmax_whose_argmax_is_predict():
    adapter, encoder, data, y = setup()
    model = finetune(encoder, adapter, data, y, config=FinetuneConfig(steps=5, batch_size=16, seed=0))["model"]
    p = predict_proba(model, adapter, data, batch_size=24)  # batches of 24, 24, 16
    assert p.shape == (len(y), 2) and p.dtype == torch.float32
    torch.testing.assert_close(p.sum(1), torch.ones(len(y)))
    assert torch.equal(p.argmax(1), predict(model, adapter, data))
    model.eval()
    with torch.no_grad():
        logits = model(adapter.eval_transform(data))
    torch.testing.assert_close(p, logits.softmax(1))


def test_frozen_encoder_is_not_updated():
    adapter, encoder, data, y = setup()
    out = finetune(encoder, adapter, data, y, config=FinetuneConfig(steps=5, encoder_lr_ratio=0.0,
                                                                      mixed_precision="no"))
    for p0, p1 in zip(encoder.parameters(), out["model"].encoder.parameters()):
        assert torch.equal(p0, p1)


@pytest.mark.parametrize("amx,side,want", [(True, 16, "bf16"), (False, 16, "no"), (True, 8, "no")])
def test_auto_precision_follows_the_trainer_rule(monkeypatch, amx, side, want):
    monkeypatch.setattr(fast_path, "cpu_has_bf16_matmul", lambda: amx)
    adapter, encoder, data, y = setup(side)
    out = finetune(encoder, adapter, data, y, data, y,
                   config=FinetuneConfig(steps=30, batch_size=16, lr=1e-2, seed=3))
    assert out["mixed_precision"] == want
    assert out["accuracy"] >= 0.9  # bf16 still learns the easy task
    model = out["model"]
    assert all(p.dtype == torch.float32 and p.is_contiguous() for p in model.parameters())  # handed back plain


def test_unsupported_precision_is_a_config_error():
    adapter, encoder, data, y = setup()
    with pytest.raises(ConfigError, match="mixed_precision"):
        finetune(encoder, adapter, data, y, config=FinetuneConfig(steps=1, mixed_precision="fp16"))
