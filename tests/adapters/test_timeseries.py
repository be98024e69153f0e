"""TimeSeriesAdapter: inputs, errors naming the record, normalisation, views, padding, pretrain."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from multissl.adapters import get_adapter, list_adapters, take
from multissl.adapters.timeseries import PRESETS, TimeSeriesAdapter
from multissl.errors import ConfigError, DataError

torch.set_num_threads(1)


def sine_series(n: int, c: int, t: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    steps = np.arange(t)
    freq = rng.uniform(0.05, 0.3, size=(n, c, 1))
    return (np.sin(freq * steps + rng.uniform(0, 6, size=(n, c, 1))) * rng.uniform(0.5, 3, size=(n, c, 1))
            + rng.normal(0, 0.1, size=(n, c, t)) + 10.0).astype(np.float32)


def test_registered_and_listed():
    assert "timeseries" in list_adapters()
    assert isinstance(get_adapter("timeseries"), TimeSeriesAdapter)


def test_prepare_2d_3d_and_lists():
    ad = TimeSeriesAdapter()
    uni = ad.prepare(np.random.randn(5, 30))
    assert uni["x"].shape == (5, 1, 30) and uni["x"].dtype == torch.float32
    assert uni["length"].tolist() == [30] * 5 and ad.config["num_channels"] == 1
    multi = TimeSeriesAdapter().prepare(torch.randn(4, 3, 20))
    assert multi["x"].shape == (4, 3, 20)
    series = [np.random.randn(2, t) for t in (10, 25, 17)]
    var = TimeSeriesAdapter().prepare(series)
    assert var["x"].shape == (3, 2, 25) and var["length"].tolist() == [10, 25, 17]
    assert torch.equal(var["x"][0, :, :10], torch.as_tensor(series[0], dtype=torch.float32))
    assert (var["x"][0, :, 10:] == 0).all()
    one_d = TimeSeriesAdapter().prepare([np.arange(5.0), np.arange(8.0)])
    assert one_d["x"].shape == (2, 1, 8)


def test_trailing_nan_is_padding_and_equals_the_list_form():
    series = [np.random.randn(2, t) for t in (10, 25, 17)]
    padded = np.full((3, 2, 25), np.nan)
    for i, s in enumerate(series):
        padded[i, :, : s.shape[1]] = s
    a, b = TimeSeriesAdapter().prepare(series), TimeSeriesAdapter().prepare(padded)
    assert torch.equal(a["x"], b["x"]) and torch.equal(a["length"], b["length"])


@pytest.mark.parametrize("data, message", [
    (np.array([[1.0, np.nan, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0]]), "record 0: NaN at channel 0, step 1"),
    (np.array([[1.0, 2.0, 3.0], [1.0, np.inf, 3.0]]), "record 1: infinity at channel 0, step 1"),
    ([np.zeros((1, 5)), np.zeros((1, 0))], "record 1: empty series"),
    (np.full((2, 6), np.nan), "record 0: empty series"),
    ([np.zeros((2, 5)), np.zeros((3, 5))], "record 1: has 3 channel(s) but record 0 has 2"),
    ([np.zeros((1, 5)), "abc"], "record 1"),
    (np.zeros((0, 5)), "no series"),
    ([], "no series"),
    (np.zeros((2, 2, 2, 2)), "expected an (N, T) or (N, C, T) array"),
    ({"a": 1}, "unsupported time-series data"),
])
def test_bad_input_raises_data_error_naming_the_record(data, message):
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        TimeSeriesAdapter().prepare(data)


def test_later_data_must_have_the_fitted_channels():
    ad = TimeSeriesAdapter()
    ad.fit(ad.prepare(np.random.randn(4, 3, 20)))
    with pytest.raises(DataError, match="2 channel"):
        ad.prepare(np.random.randn(4, 2, 20))


def test_bad_config_raises_config_error():
    for bad in ({"normalize": "global"}, {"preset": "nope"}, {"jitter": -1}, {"crop": 1.5}, {"colour": 1},
                {"warp_knots": 0}, {"patch_len": 0}):
        with pytest.raises(ConfigError):
            TimeSeriesAdapter(**bad)


def test_fit_channel_normalisation_and_per_series_option():
    x = sine_series(30, 2, 40)
    x[:, 1] *= 100.0
    ad = TimeSeriesAdapter()
    data = ad.prepare(x)
    ad.fit(data)
    assert ad.config["channel_mean"][0] == pytest.approx(float(x[:, 0].mean()), rel=1e-4)
    z = ad.eval_transform(data)["x"]
    assert z.mean((0, 2)).abs().max() < 1e-4 and (z.std((0, 2)) - 1).abs().max() < 1e-2
    per = TimeSeriesAdapter(normalize="series")
    zs = per.eval_transform(per.prepare(x))["x"]
    assert zs.mean(2).abs().max() < 1e-4 and (zs.std(2, unbiased=False) - 1).abs().max() < 1e-3
    # the learnt state survives a JSON round trip
    again = TimeSeriesAdapter.from_config(json.loads(json.dumps(ad.get_config())))
    assert torch.equal(again.eval_transform(data)["x"], z)


def test_normalisation_ignores_padding():
    series = [np.full((1, 10), 5.0) + np.arange(10), np.full((1, 30), 5.0) + np.arange(30) % 10]
    ad = TimeSeriesAdapter()
    data = ad.prepare(series)
    ad.fit(data)
    assert ad.config["channel_mean"][0] == pytest.approx(9.5)
    out = ad.eval_transform(data)
    assert out["mask"].sum(1).tolist() == [10, 30] and (out["x"][0, :, 10:] == 0).all()


def test_views_are_seeded_and_shaped():
    ad = TimeSeriesAdapter(preset="default")
    data = ad.prepare(sine_series(8, 2, 50))
    ad.fit(data)
    v1 = ad.views(data, n_views=2, generator=torch.Generator().manual_seed(3))
    v2 = ad.views(data, n_views=2, generator=torch.Generator().manual_seed(3))
    v3 = ad.views(data, n_views=2, generator=torch.Generator().manual_seed(4))
    assert all(torch.equal(a["x"], b["x"]) for a, b in zip(v1, v2))
    assert not torch.equal(v1[0]["x"], v3[0]["x"])
    assert not torch.equal(v1[0]["x"], v1[1]["x"])
    for v in v1:
        assert set(v) == {"x", "mask", "hidden", "offset"} and v["x"].shape == (8, 2, 50)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_gives_finite_views_zero_at_padding(preset):
    ad = TimeSeriesAdapter(preset=preset, permute_segments=3)
    data = ad.prepare([np.random.randn(2, t) for t in (20, 35, 50, 28)])
    ad.fit(data)
    for v in ad.views(data, generator=torch.Generator().manual_seed(0)):
        assert torch.isfinite(v["x"]).all()
        assert (v["x"] * (~v["mask"]).unsqueeze(1)).abs().max() == 0
        assert (v["mask"].sum(1) >= 2).all()


@pytest.mark.parametrize("name,kwargs", [
    ("ts2vec", {"width": 16, "depth": 4, "embed_dim": 32}),
    ("ts2vec", {"width": 16, "depth": 4, "embed_dim": 32, "channel_independent": True}),
    ("causal_cnn", {"channels": 8, "depth": 3, "reduced_size": 12, "embed_dim": 6}),  # T-Loss's
])
def test_encoder_padding_never_leaks_into_embeddings(name, kwargs):
    ad = TimeSeriesAdapter()
    series = [np.random.randn(2, t) for t in (12, 40, 25)]
    data = ad.prepare(series)
    ad.fit(data)
    enc = ad.build_encoder(name, **kwargs).eval()
    batch = ad.eval_transform(data)
    together = enc(batch)
    for i in range(3):
        alone = enc(ad.eval_transform(take(data, torch.tensor([i]))))
        assert torch.allclose(together[i], alone[0], atol=1e-5)
    # garbage in the padded part of the tensor changes nothing
    noisy = {"x": batch["x"] + (~batch["mask"]).unsqueeze(1) * 1e3, "mask": batch["mask"]}
    assert torch.allclose(enc(noisy), together, atol=1e-5)


def test_hidden_steps_are_masked_in_the_latent():
    ad = TimeSeriesAdapter()
    data = ad.prepare(np.random.randn(2, 1, 30))
    enc = ad.build_encoder(width=8, depth=3, embed_dim=16, dropout=0.0).eval()
    b = ad.eval_transform(data)
    hidden = torch.zeros(2, 30, dtype=torch.bool)
    hidden[:, 10:20] = True
    changed = {"x": b["x"].clone(), "mask": b["mask"], "hidden": hidden}
    changed["x"][:, :, 10:20] = 123.0  # a hidden step's value is never read
    same = {**changed, "x": b["x"]}
    assert torch.allclose(enc(changed), enc(same))


def test_channel_independent_encoder_is_the_shared_univariate_encoder_per_channel():
    from multissl.adapters.timeseries_encoders import TS2VecEncoder

    kw = {"width": 8, "depth": 3, "embed_dim": 16, "dropout": 0.0}
    torch.manual_seed(0)
    enc = TS2VecEncoder(3, channel_independent=True, **kw).eval()
    assert enc.embed_dim == 48 and enc.token_dim == 48 and enc.input_fc.in_features == 1
    alone = TS2VecEncoder(1, **kw).eval()
    alone.load_state_dict(enc.state_dict())  # the same weights: one network for every channel
    x = torch.randn(4, 3, 30)
    mask = torch.ones(4, 30, dtype=torch.bool)
    mask[1, 20:] = False
    hidden = torch.zeros(4, 30, dtype=torch.bool)
    hidden[:, 5:9] = True
    z, tokens = enc({"x": x, "mask": mask, "hidden": hidden}), enc.forward_tokens({"x": x, "mask": mask})
    for c in range(3):  # channel-major: channel c's vector at [c * 16, (c + 1) * 16)
        part = slice(16 * c, 16 * (c + 1))
        assert torch.allclose(z[:, part], alone({"x": x[:, c:c + 1], "mask": mask, "hidden": hidden}), atol=1e-5)
        assert torch.allclose(tokens[:, :, part], alone.forward_tokens({"x": x[:, c:c + 1], "mask": mask}),
                              atol=1e-5)
    # a burst in one channel moves that channel's part of the embedding and nothing else
    burst = x.clone()
    burst[:, 1, 10:15] += 50.0
    moved = (enc({"x": burst, "mask": mask, "hidden": hidden}) - z).abs().reshape(4, 3, 16).amax(dim=(0, 2))
    assert moved[1] > 0 and moved[0] == 0 and moved[2] == 0


def test_channel_independent_is_the_default_encoder_on_univariate_series():
    from multissl.adapters.timeseries_encoders import TS2VecEncoder

    batch = {"x": torch.randn(2, 1, 25), "mask": torch.ones(2, 25, dtype=torch.bool)}
    torch.manual_seed(3)
    default = TS2VecEncoder(1, width=8, depth=2, embed_dim=8).eval()
    torch.manual_seed(3)
    independent = TS2VecEncoder(1, width=8, depth=2, embed_dim=8, channel_independent=True).eval()
    assert torch.equal(default(batch), independent(batch))


def test_pretrain_channel_independent_and_reload(tmp_path):
    from multissl import SSLModel, pretrain

    x = sine_series(16, 3, 32)
    model = pretrain(x, adapter="timeseries", method="ts2vec", epochs=1, batch_size=8, seed=0, progress=False,
                     encoder_kwargs={"width": 8, "depth": 3, "embed_dim": 16, "channel_independent": True},
                     output_dir=str(tmp_path / "run"))
    z = model.embed(x)
    assert z.shape == (16, 48) and np.isfinite(z).all()
    again = SSLModel.from_pretrained(tmp_path / "run" / "final")
    assert again.encoder.channel_independent and np.allclose(again.embed(x), z, atol=1e-5)


def test_build_encoder_and_errors():
    ad = TimeSeriesAdapter()
    with pytest.raises(ConfigError, match="in_channels"):
        ad.build_encoder()
    ad.prepare(np.random.randn(3, 2, 20))
    enc = ad.build_encoder()
    assert enc.in_channels == 2 and enc.embed_dim == 128
    assert ad.build_encoder(pooling="maxmean", embed_dim=16).embed_dim == 32
    with pytest.raises(ConfigError, match="unknown time-series encoder"):
        ad.build_encoder("lstm")
    with pytest.raises(ConfigError):
        ad.build_encoder(kernel_size=4)


@pytest.mark.parametrize("method", ["vicreg", "simclr"])
def test_pretrain_with_a_siamese_method_and_embed(method, tmp_path):
    from multissl import SSLModel, pretrain

    x = sine_series(16, 2, 32)
    model = pretrain(x, adapter="timeseries", method=method, epochs=1, batch_size=8, seed=0, progress=False,
                     encoder_kwargs={"width": 8, "depth": 3, "embed_dim": 16}, output_dir=str(tmp_path / "run"))
    z = model.embed(x)
    assert z.shape == (16, 16) and np.isfinite(z).all()
    again = SSLModel.from_pretrained(tmp_path / "run" / "final")
    assert np.allclose(again.embed(x), z, atol=1e-5)
    with pytest.raises(DataError, match="record 0: has 3 channel"):
        again.embed(sine_series(2, 3, 32))


def test_pretrain_is_reproducible_with_a_seed():
    from multissl import pretrain

    x = sine_series(16, 1, 32)
    kw = dict(adapter="timeseries", method="ts2vec", epochs=1, batch_size=8, seed=1, progress=False,
              encoder_kwargs={"width": 8, "depth": 3, "embed_dim": 16})
    a, b = pretrain(x, **kw).embed(x), pretrain(x, **kw).embed(x)
    assert np.array_equal(a, b)


def test_tokens_are_non_overlapping_patches_with_padding():
    ad = TimeSeriesAdapter(patch_len=4)
    data = ad.prepare([np.arange(10.0).reshape(1, 10), np.arange(16.0).reshape(1, 16)])
    tb = ad.tokens(data, generator=torch.Generator().manual_seed(0))
    tb.validate()
    assert tb.targets.shape == (2, 4, 4) and tb.padding_mask.tolist() == [[False, False, False, True], [False] * 4]
    # the targets are the patches of the inputs the encoder sees, padding zero
    x = tb.inputs["x"]
    assert torch.equal(tb.targets[1].reshape(-1), x[1, 0, :16])
    assert torch.equal(tb.targets[0, 2, :2], x[0, 0, 8:10]) and (tb.targets[0, 2, 2:] == 0).all()
    multi = TimeSeriesAdapter(patch_len=2, preset="light")
    d2 = multi.prepare(np.arange(12.0).reshape(1, 2, 6))
    t2 = multi.tokens(d2, generator=torch.Generator().manual_seed(0))
    v = t2.inputs["x"][0]
    assert torch.equal(t2.targets[0, 0], torch.stack([v[0, 0], v[1, 0], v[0, 1], v[1, 1]]))  # (step, channel)


def test_patchtst_encoder_ignores_padding_and_matches_the_adapters_patches():
    ad = TimeSeriesAdapter(patch_len=4)
    data = ad.prepare([np.random.randn(1, t) for t in (9, 20)])
    enc = ad.build_encoder("patchtst", dim=16, depth=1, heads=2).eval()
    assert enc.target_dim == 4
    together = enc(ad.eval_transform(data))
    alone = enc(ad.eval_transform(take(data, torch.tensor([0]))))
    assert torch.allclose(together[0], alone[0], atol=1e-5)
    with pytest.raises(ConfigError, match="patch_len"):
        ad.build_encoder("patchtst", patch_len=8)


@pytest.mark.parametrize("method", ["mae", "data2vec"])
def test_pretrain_masked_methods_on_series(method):
    from multissl import pretrain

    x = sine_series(16, 2, 40)
    model = pretrain(x, adapter="timeseries", method=method, epochs=1, batch_size=8, progress=False,
                     encoder_kwargs={"dim": 16, "depth": 1, "heads": 2})
    assert model.config["encoder"]["name"] == "patchtst"
    assert np.isfinite(model.embed(x)).all()
