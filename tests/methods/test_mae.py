"""Masking (ratio, padding, groups, seeds) and MAE (loss formula, visible-only encoder,
gradients, ids -> cross-entropy, image pretrain end to end, save/load)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from multissl import SSLModel, pretrain
from multissl.errors import ConfigError
from multissl.methods import build_method, get_method_class, list_methods
from multissl.methods.mae import MAE, mae_loss, normalize_targets
from multissl.methods.masked import sample_mask, visible_index
from multissl.tokens import TokenBatch
from multissl.transformer import TokenEncoder
from tests.token_toys import DIM, ValueStem

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


class IdStem(nn.Module):
    """{"ids", "padding"} -> embedded ids; id targets over a vocabulary of 11."""

    vocab_size = 11

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(11, DIM)

    def forward(self, inputs):
        return self.emb(inputs["ids"]), inputs["padding"]


def value_mae(seed: int = 0, **hp) -> MAE:
    torch.manual_seed(seed)
    enc = TokenEncoder(ValueStem(), DIM, depth=2, heads=4, max_tokens=10)
    return build_method("mae", enc, DIM, **{"decoder_dim": 8, "decoder_depth": 1, "decoder_heads": 2, **hp})


def values(b: int = 4, n: int = 10, seed: int = 1) -> TokenBatch:
    x = torch.randn(b, n, 3, generator=torch.Generator().manual_seed(seed))
    return TokenBatch(inputs=x, targets=x.clone())


# ---------------------------------------------------------------- masking
def test_mask_ratio_and_padding() -> None:
    pad = torch.zeros(4, 20, dtype=torch.bool)
    pad[1, 10:] = True
    pad[2, 2:] = True  # two real tokens: one hidden, one visible
    pad[3, 1:] = True  # one real token: nothing can be hidden
    mask = sample_mask(4, 20, 0.75, pad, generator=torch.Generator().manual_seed(0))
    assert mask.sum(1).tolist() == [15, 8, 1, 0]  # round(0.75 * real), at least one visible
    assert not (mask & pad).any()


def test_seeds_reproduce_masks_and_differ_across_seeds() -> None:
    a = sample_mask(8, 16, 0.5, generator=torch.Generator().manual_seed(3))
    b = sample_mask(8, 16, 0.5, generator=torch.Generator().manual_seed(3))
    c = sample_mask(8, 16, 0.5, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    # each sample gets its own random mask
    assert len({tuple(row.tolist()) for row in a}) > 1


def test_groups_are_masked_together() -> None:
    groups = (torch.arange(24) // 4).expand(6, 24).contiguous()  # tubes of 4 tokens
    mask = sample_mask(6, 24, 0.5, groups=groups, generator=torch.Generator().manual_seed(0))
    per_group = mask.view(6, 6, 4)
    assert (per_group.all(-1) | ~per_group.any(-1)).all()  # every group all hidden or all visible
    assert mask.sum(1).tolist() == [12] * 6
    # groups of uneven sizes: the count overshoots by less than one group, never hides everything
    groups = torch.tensor([[0, 0, 0, 1, 2, 2, 3, 3, 3, 3]] * 50)
    mask = sample_mask(50, 10, 0.3, groups=groups, generator=torch.Generator().manual_seed(1))
    for row in mask:
        assert 3 <= int(row.sum()) <= 3 + 3 and int(row.sum()) < 10
        for gid in range(4):
            sel = row[groups[0] == gid]
            assert sel.all() or not sel.any()


def test_visible_index_orders_visible_tokens_first() -> None:
    mask = torch.tensor([[True, False, False, True], [True, True, True, False]])
    pad = torch.tensor([[False, False, False, False], [False, False, False, False]])
    keep, hidden = visible_index(mask, pad)
    assert keep.tolist() == [[1, 2], [3, 0]] and hidden.tolist() == [[False, False], [False, True]]


# ---------------------------------------------------------------- the loss
def test_mae_loss_hand_computed() -> None:
    pred = torch.zeros(1, 3, 2)
    targets = torch.tensor([[[1.0, 3.0], [2.0, 2.0], [5.0, 5.0]]])
    mask = torch.tensor([[True, True, False]])
    # hidden tokens 0 and 1: (1 + 9) / 2 = 5 and (4 + 4) / 2 = 4 -> mean 4.5; token 2 ignored
    assert mae_loss(pred, targets, mask).item() == pytest.approx(4.5)
    # normalised targets: token 0 -> (-1, 1) / sqrt(var=2) -> (-0.7071, 0.7071); squared mean 0.5
    norm = normalize_targets(targets)
    assert torch.allclose(norm[0, 0], torch.tensor([-1.0, 1.0]) / np.sqrt(2.0), atol=1e-5)
    assert mae_loss(pred[:, :1], targets[:, :1], mask[:, :1], norm_targets=True).item() == pytest.approx(0.5, abs=1e-5)


def test_forward_equals_direct_computation_from_the_same_mask() -> None:
    mae = value_mae()
    tb = values()
    out = mae(tb, generator=torch.Generator().manual_seed(5))
    mask = sample_mask(4, 10, 0.75, generator=torch.Generator().manual_seed(5))
    pred, _ = mae.reconstruct(tb, mask)
    t = tb.targets
    t = (t - t.mean(-1, keepdim=True)) / (t.var(-1, keepdim=True) + 1e-6).sqrt()
    expected = ((pred - t) ** 2).mean(-1)[mask].mean()
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert out["mask_ratio"].item() == pytest.approx(0.8)  # round(7.5) = 8 of 10


def test_encoder_sees_only_visible_tokens() -> None:
    mae = value_mae().eval()
    tb = values()
    mask = sample_mask(4, 10, 0.6, generator=torch.Generator().manual_seed(0))
    pred, _ = mae.reconstruct(tb, mask)
    changed = tb.inputs.clone()
    changed[mask] = 100.0 * torch.randn(int(mask.sum()), 3)
    pred2, _ = mae.reconstruct(TokenBatch(changed, tb.targets), mask)
    assert torch.allclose(pred, pred2, atol=1e-5)
    # a visible token does matter
    visible = torch.nonzero(~mask[0])[0, 0]
    changed[0, visible] += 1.0
    assert not torch.allclose(mae.reconstruct(TokenBatch(changed, tb.targets), mask)[0][0], pred[0], atol=1e-4)


def test_gradients_reach_stem_blocks_and_decoder() -> None:
    mae = value_mae()
    mae(values(), generator=torch.Generator().manual_seed(0))["loss"].backward()
    for name, p in mae.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_ids_give_cross_entropy_and_accuracy_on_hidden_tokens_only() -> None:
    torch.manual_seed(0)
    enc = TokenEncoder(IdStem(), DIM, depth=1, heads=4, max_tokens=12)
    mae = build_method("mae", enc, DIM, mask_ratio=0.5, decoder_dim=8, decoder_depth=1, decoder_heads=2)
    ids = torch.randint(0, 11, (3, 12), generator=torch.Generator().manual_seed(0))
    pad = torch.zeros(3, 12, dtype=torch.bool)
    pad[0, 6:] = True
    tb = TokenBatch(inputs={"ids": ids, "padding": pad}, targets=ids, padding_mask=pad)
    out = mae(tb, generator=torch.Generator().manual_seed(2))
    mask = sample_mask(3, 12, 0.5, pad, generator=torch.Generator().manual_seed(2))
    assert mask.sum(1).tolist() == [3, 6, 6] and not (mask & pad).any()
    logits, _ = mae.reconstruct(tb, mask)
    expected = -torch.log_softmax(logits[mask], -1).gather(1, ids[mask][:, None]).mean()
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-5)
    acc = (logits[mask].argmax(-1) == ids[mask]).float().mean()
    assert out["accuracy"].item() == pytest.approx(acc.item())
    out["loss"].backward()
    assert enc.stem.emb.weight.grad.abs().sum() > 0


# ---------------------------------------------------------------- style="simmim" (BERT-style)
def id_batch():
    ids = torch.randint(0, 11, (3, 12), generator=torch.Generator().manual_seed(0))
    pad = torch.zeros(3, 12, dtype=torch.bool)
    pad[0, 6:] = True
    return TokenBatch(inputs={"ids": ids, "padding": pad}, targets=ids, padding_mask=pad)


def id_simmim(seed: int = 0) -> MAE:
    torch.manual_seed(seed)
    enc = TokenEncoder(IdStem(), DIM, depth=1, heads=4, max_tokens=12)
    return build_method("mae", enc, DIM, mask_ratio=0.5, style="simmim")


def test_simmim_is_cross_entropy_of_a_linear_head_on_the_encoder_with_mask_embeddings() -> None:
    mae = id_simmim()
    assert not hasattr(mae, "decoder") and mae.hparams()["style"] == "simmim"
    tb = id_batch()
    out = mae(tb, generator=torch.Generator().manual_seed(2))
    mask = sample_mask(3, 12, 0.5, tb.padding_mask, generator=torch.Generator().manual_seed(2))
    # by hand: hidden ids' embeddings swapped for the mask embedding, the whole sequence encoded,
    # logits = W h + b, cross-entropy averaged over the hidden tokens
    x = mae.encoder.stem.emb(tb.targets)
    x = torch.where(mask[..., None], mae.mask_embedding, x)
    h = mae.encoder.encode(x, tb.padding_mask)
    logits = h @ mae.head.weight.T + mae.head.bias
    expected = -torch.log_softmax(logits[mask], -1).gather(1, tb.targets[mask][:, None]).mean()
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert out["accuracy"].item() == pytest.approx((logits[mask].argmax(-1) == tb.targets[mask]).float().mean().item())
    recon, _ = mae.reconstruct(tb, mask)
    assert torch.allclose(recon, logits, atol=1e-5)
    out["loss"].backward()
    for name, p in mae.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_simmim_hides_the_content_but_sees_every_position() -> None:
    mae = id_simmim().eval()
    tb = id_batch()
    mask = sample_mask(3, 12, 0.5, tb.padding_mask, generator=torch.Generator().manual_seed(1))
    before, _ = mae.reconstruct(tb, mask)
    ids = tb.targets.clone()
    ids[mask] = (ids[mask] + 1) % 11  # other words at the hidden places: nothing changes
    after, _ = mae.reconstruct(TokenBatch({"ids": ids, "padding": tb.padding_mask}, ids, tb.padding_mask), mask)
    assert torch.allclose(before, after, atol=1e-5)
    visible = torch.nonzero(~mask[1])[0, 0]
    ids[1, visible] = (ids[1, visible] + 1) % 11  # a visible word does matter
    changed, _ = mae.reconstruct(TokenBatch({"ids": ids, "padding": tb.padding_mask}, ids, tb.padding_mask), mask)
    assert not torch.allclose(changed[1][mask[1]], before[1][mask[1]], atol=1e-4)


def test_simmim_on_float_targets_and_seeds() -> None:
    a, b = value_mae(style="simmim"), value_mae(style="simmim")
    tb = values()
    out_a = a(tb, generator=torch.Generator().manual_seed(5))
    out_b = b(tb, generator=torch.Generator().manual_seed(5))
    assert out_a["loss"].item() == out_b["loss"].item()  # same seeds, same weights and masks
    mask = sample_mask(4, 10, 0.75, generator=torch.Generator().manual_seed(5))
    pred, _ = a.reconstruct(tb, mask)
    t = normalize_targets(tb.targets)
    assert out_a["loss"].item() == pytest.approx(((pred - t) ** 2).mean(-1)[mask].mean().item(), rel=1e-5)
    assert out_a["loss"].item() != value_mae(seed=1, style="simmim")(
        tb, generator=torch.Generator().manual_seed(5))["loss"].item()


def test_simmim_learns_to_fill_a_token_from_its_neighbours() -> None:
    """Counting sequences mod 11 (each id is its left neighbour + 1): every id is equally frequent,
    so a unigram guess is right 1 time in 11; the context gives the answer."""
    mae = id_simmim()
    opt = torch.optim.AdamW(mae.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)

    def counting(n: int):
        ids = (torch.randint(0, 11, (n, 1), generator=g) + torch.arange(12)) % 11
        pad = torch.zeros(n, 12, dtype=torch.bool)
        return TokenBatch(inputs={"ids": ids, "padding": pad}, targets=ids, padding_mask=pad)

    for _ in range(300):
        opt.zero_grad()
        mae(counting(32), generator=g)["loss"].backward()
        opt.step()
    mae.eval()
    with torch.no_grad():
        accuracy = mae(counting(256), generator=g)["accuracy"].item()
    assert accuracy > 0.95


def test_registry_hparams_and_errors() -> None:
    assert {"mae", "data2vec"} <= set(list_methods())
    cls = get_method_class("mae")
    assert cls is MAE and cls.input_kind == "tokens"
    with pytest.raises(ConfigError, match="unknown hyperparameter.*'ratio'.*valid: .*mask_ratio"):
        value_mae(ratio=0.5)
    with pytest.raises(ConfigError, match="mask_ratio.*in \\(0, 1\\)"):
        value_mae(mask_ratio=1.0)
    with pytest.raises(ConfigError, match="decoder_depth"):
        value_mae(decoder_depth=1.5)
    with pytest.raises(ConfigError, match="'style' must be 'mae' or 'simmim', got 'bert'"):
        value_mae(style="bert")
    with pytest.raises(ConfigError, match="needs a Transformer token encoder"):
        build_method("mae", nn.Linear(3, DIM), DIM)
    enc = TokenEncoder(nn.Identity(), DIM, 1, 4, 8)
    with pytest.raises(ConfigError, match="target_dim"):
        build_method("mae", enc, DIM)
    mae = value_mae()
    with pytest.raises(ConfigError, match="TokenBatch"):
        mae([values().inputs])
    with pytest.raises(ConfigError, match="7 values per token"):
        mae(TokenBatch(values().inputs, torch.zeros(4, 10, 7)))
    with pytest.raises(ConfigError, match="10 target tokens"):
        mae(TokenBatch(values().inputs[:, :6], torch.zeros(4, 10, 3)))


# ---------------------------------------------------------------- images, end to end
def digits(n: int = 48, side: int = 16, seed: int = 0) -> np.ndarray:
    rng = np.random.RandomState(seed)
    x = np.zeros((n, side, side), np.uint8)
    for i in range(n):  # a bright square somewhere: structure worth reconstructing
        r, c = rng.randint(0, side - 6, size=2)
        x[i, r:r + 6, c:c + 6] = 200
    return x


def test_image_tokens_are_patch_pixels_in_vit_order() -> None:
    from multissl.adapters import get_adapter

    ad = get_adapter("image", preset="none")
    x = ad.prepare(digits(4))
    ad.fit(x)
    tb = ad.tokens(x, generator=torch.Generator().manual_seed(0))
    assert ad.patch_size() == 4 and tb.targets.shape == (4, 16, 16) and tb.inputs.shape == (4, 1, 16, 16)
    # token 5 = patch row 1, column 1
    assert torch.equal(tb.targets[:, 5], tb.inputs[:, 0, 4:8, 4:8].reshape(4, 16))
    assert torch.equal(ad.unpatchify(tb.targets), tb.inputs)
    vit = ad.build_encoder("vit_tiny")
    assert vit.stem.target_dim == 16 and vit.num_tokens == 16 and vit(tb.inputs).shape == (4, 128)


@pytest.mark.parametrize("method,kwargs", [
    ("mae", {"decoder_dim": 16, "decoder_depth": 1, "decoder_heads": 2}),
    ("mae", {"style": "simmim"}),
    ("data2vec", {}),
])
def test_pretrain_images_end_to_end_and_round_trip(method: str, kwargs, tmp_path) -> None:
    x = digits()
    model = pretrain(x, adapter="image", method=method, epochs=2, batch_size=16, seed=0,
                     encoder_kwargs={"dim": 32, "depth": 2, "heads": 2}, method_kwargs=kwargs,
                     output_dir=str(tmp_path / "run"), progress=False)
    assert model.config["encoder"]["name"] == "vit_tiny" and model.config["method"] == method
    assert all(model.config["method_hparams"][k] == v for k, v in kwargs.items())
    assert model.adapter.config["preset"] == "light"  # the masked methods' recommendation
    losses = [h["loss"] for h in model.config["history"]]
    assert len(losses) == 2 and all(np.isfinite(losses))
    z = model.embed(x[:5])
    loaded = SSLModel.from_pretrained(tmp_path / "run" / "final")
    assert np.allclose(loaded.embed(x[:5]), z, atol=1e-5)
    # the same seed reproduces the run (masks included)
    again = pretrain(x, adapter="image", method=method, epochs=2, batch_size=16, seed=0,
                     encoder_kwargs={"dim": 32, "depth": 2, "heads": 2}, method_kwargs=kwargs, progress=False)
    assert np.allclose(again.embed(x[:5]), z, atol=1e-5)


def test_a_cnn_with_a_masked_method_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="needs a Transformer token encoder.*vit_tiny"):
        pretrain(digits(8), adapter="image", method="mae", encoder="small_cnn", epochs=1, batch_size=4, progress=False)
