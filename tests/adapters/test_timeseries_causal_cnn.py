"""T-Loss's causal CNN encoder: causality, the skipped taps, sizes, training and saving (padding:
test_timeseries.py, with the other encoders)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from multissl.adapters.timeseries_causal_cnn import CausalCNNEncoder, CausalConv1d
from multissl.errors import ConfigError

torch.set_num_threads(1)


def small(in_channels: int = 2) -> CausalCNNEncoder:
    torch.manual_seed(0)
    return CausalCNNEncoder(in_channels, channels=8, depth=4, reduced_size=12, embed_dim=6).eval()


@pytest.mark.parametrize("length", [3, 9, 40])
@pytest.mark.parametrize("dilation", [1, 4, 16])
def test_skipping_taps_equals_the_zero_padded_convolution(length, dilation):
    torch.manual_seed(0)
    conv = CausalConv1d(3, 5, kernel_size=3, dilation=dilation)
    x = torch.randn(2, 3, length)
    # the textbook causal convolution: pad (k - 1) * d zeros on the left, convolve, keep T outputs
    expected = F.conv1d(F.pad(x, (2 * dilation, 0)), conv.conv.weight, conv.conv.bias, dilation=dilation)
    assert expected.shape[-1] == length
    assert torch.allclose(conv(x), expected, atol=1e-6)


def test_outputs_depend_only_on_the_past():
    enc = small()
    x = torch.randn(1, 2, 30)
    mask = torch.ones(1, 30, dtype=torch.bool)
    before = enc.forward_tokens({"x": x, "mask": mask})
    x2 = x.clone()
    x2[..., 17] += 5.0
    after = enc.forward_tokens({"x": x2, "mask": mask})
    assert torch.allclose(before[:, :17], after[:, :17], atol=1e-6)
    assert not torch.allclose(before[:, 17:], after[:, 17:], atol=1e-3)


def test_the_papers_sizes_and_the_linear_layer_after_pooling():
    torch.manual_seed(0)
    enc = CausalCNNEncoder(in_channels=3)
    batch = {"x": torch.randn(4, 3, 50), "mask": torch.ones(4, 50, dtype=torch.bool)}
    tokens = enc.forward_tokens(batch)
    assert tokens.shape == (4, 50, 160) and enc(batch).shape == (4, 320)
    assert enc.embed_dim == 320 and enc.token_dim == 160 and len(enc.blocks) == 11
    # the representation is the linear layer applied to the max over time of the last block
    assert torch.allclose(enc(batch), enc.linear(tokens.amax(dim=1)), atol=1e-5)
    # block i has dilation 2 ** i
    assert [b.conv1.conv.dilation[0] for b in enc.blocks] == [2 ** i for i in range(11)]


def test_bad_input_raises_config_error():
    enc = small()
    with pytest.raises(ConfigError, match=r"\(B, 2, T\)"):
        enc({"x": torch.randn(2, 3, 10), "mask": torch.ones(2, 10, dtype=torch.bool)})
    with pytest.raises(ConfigError, match="eval_transform"):
        enc(torch.randn(2, 2, 10))
    with pytest.raises(ConfigError, match="positive"):
        CausalCNNEncoder(2, depth=0)


def test_tloss_trains_it_and_the_saved_model_loads_the_same(tmp_path):
    from multissl import pretrain
    from multissl.model import SSLModel
    from multissl.trainer import embed_prepared

    x = np.random.default_rng(0).standard_normal((16, 2, 32)).astype(np.float32)
    kwargs = {"channels": 8, "depth": 3, "reduced_size": 12, "embed_dim": 6}
    model = pretrain(x, adapter="timeseries", method="tloss", encoder="causal_cnn", encoder_kwargs=kwargs,
                     epochs=2, batch_size=8, progress=False, seed=0)
    torch.manual_seed(0)
    initial = model.adapter.build_encoder("causal_cnn", **kwargs)
    trained = dict(model.encoder.named_parameters())
    assert any(not torch.equal(p, trained[n]) for n, p in initial.named_parameters())
    model.save_pretrained(tmp_path / "m")
    loaded = SSLModel.from_pretrained(tmp_path / "m")
    prepared = model.adapter.prepare(x)
    assert torch.allclose(embed_prepared(loaded.encoder, loaded.adapter, prepared),
                          embed_prepared(model.encoder, model.adapter, prepared), atol=1e-6)
