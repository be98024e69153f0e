"""data2vec: target construction and loss against the paper's formulas, the EMA teacher
(no gradients, decay schedule), padding, hyperparameters."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from multissl.errors import ConfigError
from multissl.methods import build_method
from multissl.methods.data2vec import (Data2Vec, data2vec_loss, data2vec_targets, instance_norm_tokens,
                                       linear_decay)
from multissl.methods.masked import sample_mask
from multissl.tokens import TokenBatch
from multissl.transformer import TokenEncoder
from tests.token_toys import DIM, ValueStem

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def make(seed: int = 0, depth: int = 3, **hp) -> Data2Vec:
    torch.manual_seed(seed)
    enc = TokenEncoder(ValueStem(), DIM, depth=depth, heads=4, max_tokens=10)
    return build_method("data2vec", enc, DIM, **hp)


def batch(b: int = 4, n: int = 10, seed: int = 1, pad: bool = False) -> TokenBatch:
    x = torch.randn(b, n, 3, generator=torch.Generator().manual_seed(seed))
    p = None
    if pad:
        p = torch.zeros(b, n, dtype=torch.bool)
        p[0, 6:] = True
    return TokenBatch(inputs=(x, p), targets=x.clone(), padding_mask=p)


def test_instance_norm_over_tokens_hand_computed() -> None:
    x = torch.tensor([[[1.0, 10.0], [3.0, 10.0], [100.0, -5.0]]])  # (1, 3, 2)
    pad = torch.tensor([[False, False, True]])
    out = instance_norm_tokens(x, pad, eps=1e-8)
    # feature 0 over the two real tokens: mean 2, (biased) var 1 -> -1, 1; feature 1 constant -> 0
    assert torch.allclose(out[0, :2, 0], torch.tensor([-1.0, 1.0]))
    assert torch.allclose(out[0, :2, 1], torch.zeros(2))
    # without padding it is torch's instance norm over the token axis
    y = torch.randn(2, 5, 4)
    ref = (y - y.mean(1, keepdim=True)) / (y.var(1, unbiased=False, keepdim=True) + 1e-5).sqrt()
    assert torch.allclose(instance_norm_tokens(y), ref, atol=1e-5)


def test_targets_average_the_top_k_normalised_layers() -> None:
    layers = [torch.randn(2, 5, 4) for _ in range(4)]
    out = data2vec_targets(layers, top_k=2, norm="instance")
    expected = (instance_norm_tokens(layers[2]) + instance_norm_tokens(layers[3])) / 2
    assert torch.allclose(out, expected, atol=1e-6)
    ln = data2vec_targets(layers, top_k=3, norm="layer")
    expected = sum(torch.nn.functional.layer_norm(a, (4,)) for a in layers[1:]) / 3
    assert torch.allclose(ln, expected, atol=1e-6)
    assert torch.allclose(data2vec_targets(layers, 1, "none"), layers[3])
    with pytest.raises(ConfigError, match="top_k_layers"):
        data2vec_targets(layers, top_k=5)


def test_loss_hand_computed() -> None:
    pred = torch.zeros(1, 2, 2)
    targets = torch.tensor([[[0.5, 3.0], [9.0, 9.0]]])
    mask = torch.tensor([[True, False]])
    # smooth L1, beta 2: 0.5 * 0.5^2 / 2 = 0.0625 and 3 - 1 = 2; summed, / sqrt(2)
    assert data2vec_loss(pred, targets, mask, beta=2.0).item() == pytest.approx(2.0625 / math.sqrt(2))
    # beta 0: squared error 0.25 + 9
    assert data2vec_loss(pred, targets, mask, beta=0.0).item() == pytest.approx(9.25 / math.sqrt(2))


def test_forward_equals_direct_computation() -> None:
    d2v = make()
    tb = batch(pad=True)
    out = d2v(tb, generator=torch.Generator().manual_seed(3))
    x, pad = tb.inputs
    mask = sample_mask(4, 10, 0.6, pad, generator=torch.Generator().manual_seed(3))
    assert not (mask & pad).any()
    # teacher: the full input, FFN outputs of the top ceil(3/2) = 2 blocks, instance-normalised
    teacher = d2v.teacher_encoder
    _, ffn = teacher.encode(teacher.tokenize((x, pad))[0], pad, return_layers="ffn")
    target = (instance_norm_tokens(ffn[1], pad) + instance_norm_tokens(ffn[2], pad)) / 2
    # student: hidden tokens replaced by the mask embedding, linear head
    tokens = d2v.encoder.tokenize((x, pad))[0]
    tokens = torch.where(mask[..., None], d2v.mask_embedding, tokens)
    pred = d2v.regression_head(d2v.encoder.encode(tokens, pad))
    diff = (pred - target).abs()
    per = torch.where(diff < 2.0, 0.5 * diff ** 2 / 2.0, diff - 1.0).sum(-1) / math.sqrt(DIM)
    assert out["loss"].item() == pytest.approx(per[mask].mean().item(), rel=1e-5)
    assert d2v.hparams()["top_k_layers"] == 2


def test_gradients_reach_the_student_not_the_teacher() -> None:
    d2v = make()
    d2v(batch(), generator=torch.Generator().manual_seed(0))["loss"].backward()
    student = dict(d2v.encoder.named_parameters())
    for name, p in d2v.named_parameters():
        if name.startswith("teacher_encoder."):
            assert not p.requires_grad and p.grad is None, name
        else:
            assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert student  # the encoder's stem, positions and blocks are among the checked parameters
    trainable = {n for n, p in d2v.named_parameters() if p.requires_grad}
    assert "encoder.stem.lin.weight" in trainable and "encoder.blocks.0.attn.qkv.weight" in trainable


def test_ema_teacher_follows_the_schedule() -> None:
    d2v = make(ema_decay=0.9, ema_end_decay=0.99, ema_anneal_end=0.5)
    assert linear_decay(0.25, 0.9, 0.99, 0.5) == pytest.approx(0.945)
    assert linear_decay(0.75, 0.9, 0.99, 0.5) == pytest.approx(0.99)
    before = d2v.teacher_encoder.stem.lin.weight.clone()
    with torch.no_grad():
        d2v.encoder.stem.lin.weight.add_(1.0)
    d2v.on_train_step_end(0.25)
    assert d2v.current_decay == pytest.approx(0.945)
    expected = 0.945 * before + 0.055 * d2v.encoder.stem.lin.weight
    assert torch.allclose(d2v.teacher_encoder.stem.lin.weight, expected, atol=1e-6)


def test_teacher_does_not_see_padding() -> None:
    d2v = make()
    tb = batch(pad=True)
    t1 = d2v.targets(tb)
    x, pad = tb.inputs
    x2 = x.clone()
    x2[pad] = 50.0
    t2 = d2v.targets(TokenBatch((x2, pad), tb.targets, padding_mask=pad))
    assert torch.allclose(t1[~pad], t2[~pad], atol=1e-5)


def test_hyperparameters() -> None:
    assert make(depth=4).hparams()["top_k_layers"] == 2
    assert make(top_k_layers=3).hparams()["top_k_layers"] == 3
    with pytest.raises(ConfigError, match="top_k_layers 4 exceeds the encoder's depth 3"):
        make(top_k_layers=4)
    with pytest.raises(ConfigError, match="target_norm.*'instance' or 'layer' or 'none'"):
        make(target_norm="batch")
    with pytest.raises(ConfigError, match="must be a string"):
        make(target_layer=1)
    with pytest.raises(ConfigError, match="ema_decay.*in \\[0, 1\\]"):
        make(ema_decay=1.5)
    with pytest.raises(ConfigError, match="needs a Transformer token encoder"):
        build_method("data2vec", nn.Linear(3, DIM), DIM)
    out = make(target_layer="block", target_norm="layer", loss_beta=0.0)(batch(), generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(out["loss"])
