"""The generic Transformer encoder: shapes, positions at `keep`, padding never leaks, errors."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from multissl.errors import ConfigError
from multissl.transformer import TokenEncoder, attention_mask, is_token_encoder
from tests.token_toys import DIM, ValueStem

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def make(pool: str = "mean", depth: int = 2, seed: int = 0) -> TokenEncoder:
    torch.manual_seed(seed)
    return TokenEncoder(ValueStem(), dim=DIM, depth=depth, heads=4, max_tokens=12, pool=pool)


def data(b: int = 3, n: int = 8, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, n, 3, generator=g)
    pad = torch.zeros(b, n, dtype=torch.bool)
    pad[0, 5:] = True
    pad[1, 7:] = True
    return x, pad


@pytest.mark.parametrize("pool", ["mean", "cls"])
def test_shapes_and_attributes(pool: str) -> None:
    enc = make(pool)
    x, pad = data()
    assert enc.embed_dim == DIM and enc.max_tokens == 12 and enc.num_tokens == 12 and enc.target_dim == 3
    assert enc.vocab_size is None and is_token_encoder(enc) and not is_token_encoder(nn.Linear(2, 2))
    assert enc((x, pad)).shape == (3, DIM)
    tokens, p = enc.tokenize((x, pad))
    assert tokens.shape == (3, 8, DIM) and p is pad
    h, layers = enc.encode(tokens, pad, return_layers=True)
    assert h.shape == (3, 8, DIM) and len(layers) == 2 and all(layer.shape == (3, 8, DIM) for layer in layers)
    h2, ffn = enc.encode(tokens, pad, return_layers="ffn")
    assert torch.allclose(h, h2) and len(ffn) == 2
    # the last block's output is the previous one plus attention plus the ffn output
    assert not torch.allclose(ffn[-1], layers[-1])


@pytest.mark.parametrize("pool", ["mean", "cls"])
def test_padding_never_influences_the_pooled_embedding_or_real_tokens(pool: str) -> None:
    enc = make(pool).eval()
    x, pad = data()
    z = enc((x, pad))
    h = enc.encode(*enc.tokenize((x, pad)))
    x2 = x.clone()
    x2[pad] = 1e3 * torch.randn(int(pad.sum()), 3)
    assert torch.allclose(enc((x2, pad)), z, atol=1e-5)
    assert torch.allclose(enc.encode(*enc.tokenize((x2, pad)))[~pad], h[~pad], atol=1e-5)
    # ...while a real token does change it
    x3 = x.clone()
    x3[0, 0] += 1.0
    assert not torch.allclose(enc((x3, pad))[0], z[0], atol=1e-4)
    # a sample equals itself without its padding
    alone = enc((x[:1, :5], None))
    assert torch.allclose(alone[0], z[0], atol=1e-5)


def test_mean_pool_is_the_mean_of_real_tokens() -> None:
    enc = make("mean").eval()
    x, pad = data()
    h = enc.encode(*enc.tokenize((x, pad)))
    z = enc((x, pad))
    assert torch.allclose(z[0], h[0, :5].mean(0), atol=1e-6)
    assert torch.allclose(z[2], h[2].mean(0), atol=1e-6)


def test_keep_gathers_positions() -> None:
    enc = make().eval()
    x, _ = data()
    tokens, _ = enc.tokenize((x, None))
    full = enc.encode(tokens)
    perm = torch.stack([torch.randperm(8, generator=torch.Generator().manual_seed(i)) for i in range(3)])
    shuffled = torch.gather(tokens, 1, perm[..., None].expand(-1, -1, DIM))
    # attention is permutation-equivariant: with the right positions, shuffled tokens give shuffled outputs
    out = enc.encode(shuffled, keep=perm)
    assert torch.allclose(out, torch.gather(full, 1, perm[..., None].expand(-1, -1, DIM)), atol=1e-5)
    # ...and without them the positions are wrong
    assert not torch.allclose(enc.encode(shuffled), out, atol=1e-3)
    # a subset of tokens with their own positions (MAE's visible tokens)
    keep = perm[:, :3]
    sub = enc.encode(torch.gather(tokens, 1, keep[..., None].expand(-1, -1, DIM)), keep=keep)
    assert sub.shape == (3, 3, DIM)


def test_all_padding_rows_stay_finite() -> None:
    enc = make()
    x, pad = data()
    pad[2] = True
    assert attention_mask(pad)[2].all()
    assert torch.isfinite(enc((x, pad))).all()


def test_gradients_reach_stem_blocks_and_positions() -> None:
    enc = make("cls")
    x, pad = data()
    enc((x, pad)).pow(2).sum().backward()
    for name, p in enc.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_errors() -> None:
    with pytest.raises(ConfigError, match="pool"):
        TokenEncoder(ValueStem(), DIM, 1, 4, 8, pool="max")
    with pytest.raises(ConfigError, match="divisible"):
        TokenEncoder(ValueStem(), DIM, 1, 5, 8)
    with pytest.raises(ConfigError, match="depth"):
        TokenEncoder(ValueStem(), DIM, 0, 4, 8)
    enc = TokenEncoder(ValueStem(), DIM, 1, 4, max_tokens=4)
    with pytest.raises(ConfigError, match="max_tokens=4"):
        enc((torch.randn(1, 6, 3), None))
    wrong = TokenEncoder(nn.Identity(), DIM, 1, 4, 8)
    with pytest.raises(ConfigError, match="must return"):
        wrong(torch.randn(1, 3, DIM))
    with pytest.raises(ConfigError, match="return_layers"):
        make().encode(torch.randn(1, 3, DIM), return_layers="all")


def test_positions_start_from_sine_cosine_codes() -> None:
    from multissl.transformer import sincos_positions

    table = sincos_positions(12, 8, grid=(3, 4))  # 3 rows of 4 tokens
    assert table.shape == (12, 8)
    rows, cols = table[:, :4], table[:, 4:]
    assert torch.equal(rows[0], rows[3]) and not torch.equal(rows[0], rows[4])  # same row, next row
    assert torch.equal(cols[1], cols[5]) and not torch.equal(cols[1], cols[2])  # same column
    assert len({tuple(r.tolist()) for r in table}) == 12
    flat = sincos_positions(5, 6)
    assert torch.allclose(flat[:, 0], torch.sin(torch.arange(5.0))) and torch.allclose(flat[:, 1], torch.cos(torch.arange(5.0)))
    # the encoder's learned table starts there (2-D when the stem has a grid)
    stem = ValueStem()
    stem.grid = (3, 4)
    enc = TokenEncoder(stem, DIM, 1, 4, max_tokens=12)
    assert torch.allclose(enc.pos_embed[0], sincos_positions(12, DIM, (3, 4))) and enc.pos_embed.requires_grad
