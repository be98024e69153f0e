"""SignatureAdapter: inputs, errors, normalisation invariances, seeded views, padding, encoders."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from multissl.adapters import get_adapter, list_adapters, take
from multissl.adapters.signature import (AUGMENT_DEFAULTS, CHANNELS, SignatureAdapter, interpolate_points,
                                         uniform_positions)
from multissl.errors import ConfigError, DataError
from tests.adapters.test_signature_io import synthetic_svc2004_folder

torch.set_num_threads(1)


def random_signature(rng: np.random.Generator, t: int) -> np.ndarray:
    """(t, 7) SVC2004-ordered samples: a smooth random walk, 3 strokes, pressure."""
    xy = rng.normal(0, 30, size=(t, 2)).cumsum(0) + 5000
    time = np.arange(t) * 10.0 + 12345
    pen = np.ones(t)
    pen[[0, t // 3, 2 * t // 3]] = 0
    return np.column_stack([xy, time, pen, np.full(t, 1500.0), np.full(t, 600.0), rng.uniform(100, 900, t)])


@pytest.fixture(scope="module")
def sigs():
    rng = np.random.default_rng(0)
    return [random_signature(rng, t) for t in (30, 55, 41, 80, 62, 33)]


@pytest.fixture(scope="module")
def fitted(sigs):
    ad = SignatureAdapter(resample=None)  # native sampling: padding and lengths are visible
    data = ad.prepare(sigs)
    ad.fit(data)
    return ad, data


def test_registered_and_listed():
    assert "signature" in list_adapters()
    assert isinstance(get_adapter("signature"), SignatureAdapter)


def test_prepare_folder_of_svc2004_files(tmp_path):
    synthetic_svc2004_folder(tmp_path, users=2, genuine=2, forgeries=1, length=20)
    ad = SignatureAdapter()
    data = ad.prepare(tmp_path)
    assert set(data) == {"points", "length"}
    assert data["points"].shape[0] == 6 and data["points"].shape[2] == len(CHANNELS) == 7
    assert data["points"].dtype == torch.float32 and data["length"].dtype == torch.int64
    first = data["points"][0]
    assert first[0, CHANNELS.index("time")] == 0 and first[1, CHANNELS.index("time")] == 10  # ms from the start
    assert (data["points"][0, data["length"][0]:] == 0).all()  # zero padding
    assert ad.config["features"] == ["x", "y", "dx", "dy", "vx", "vy", "pressure", "pen_down", "time"]
    assert ad.config["resample"] == 128
    # the same rows from a glob and from a list of paths
    files = sorted(tmp_path.glob("U1*.TXT"))
    assert torch.equal(ad.prepare(str(tmp_path / "U1S*.TXT"))["length"], ad.prepare(files)["length"])


def test_prepare_arrays_lists_and_nan_padding(sigs):
    ad = SignatureAdapter()
    a = ad.prepare(sigs)
    assert a["length"].tolist() == [30, 55, 41, 80, 62, 33]
    padded = np.full((len(sigs), 80, 7), np.nan)
    for i, s in enumerate(sigs):
        padded[i, :len(s)] = s
    b = ad.prepare(padded)
    assert torch.equal(a["points"], b["points"]) and torch.equal(a["length"], b["length"])
    c = ad.prepare([torch.from_numpy(s) for s in sigs])
    assert torch.equal(a["points"], c["points"])


def test_fewer_columns_drop_default_features_they_lack():
    ad = SignatureAdapter()
    data = ad.prepare([np.random.default_rng(0).normal(size=(10, 2)) for _ in range(3)])  # x, y only
    assert ad.config["features"] == ["x", "y", "dx", "dy"]  # no time column: no vx, vy, time
    assert (data["points"][:, :10, CHANNELS.index("pen_down")] == 1).all()
    assert data["points"][0, 3, CHANNELS.index("time")] == 30.0  # sample_period_ms default 10
    custom = SignatureAdapter(columns=["y", "x", "pressure"], features=["x", "pressure"])  # y first
    pts = custom.prepare([np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])])["points"][0]
    # x, y are stored relative to the first point: (5, 4) - (2, 1)
    assert pts[1, :2].tolist() == [3.0, 3.0] and pts[1, CHANNELS.index("pressure")] == 6.0


@pytest.mark.parametrize("data, message", [
    ([np.zeros((1, 7))], "record 0: a signature needs at least 2 points, got 1"),
    ([np.zeros((5, 7)), np.array([[0, 0, 0, 1, 0, 0, np.nan]] * 3)], "record 1: non-finite value"),
    ([np.zeros((5, 6))], "record 0: 6 columns; name them with columns="),
    (np.zeros((5, 7)), "is one signature; pass a list"),
    ([np.zeros((5, 3, 2))], "record 0: expected an array (T, F)"),
    ([], "the list is empty"),
    ({"a": 1}, "unsupported signature data of type dict"),
])
def test_bad_input_is_a_clear_data_error(data, message):
    with pytest.raises(DataError) as err:
        SignatureAdapter().prepare(data)
    assert message in str(err.value)


def test_feature_needing_a_missing_column_names_the_record():
    ad = SignatureAdapter(features=["x", "y", "pressure"])
    with pytest.raises(DataError, match=r"record 1: has no pressure column, needed by feature 'pressure'"):
        ad.prepare([np.zeros((4, 5)), np.zeros((4, 2))])


@pytest.mark.parametrize("config", [{"features": ["x", "curvature"]}, {"standardize": "global"}, {"resample": 1},
                                    {"rotation": -1}, {"mask_prob": 1.0}, {"colour": 1}, {"columns": ["y", "time"]},
                                    {"patch": 0}, {"patch": 2.5}])
def test_bad_config_is_a_config_error(config):
    with pytest.raises(ConfigError):
        SignatureAdapter(**config)


@pytest.mark.parametrize("standardize", ["dataset", "signature", "none"])
def test_features_invariant_to_translation_and_scale(sigs, standardize):
    ad = SignatureAdapter(standardize=standardize, features=["x", "y", "dx", "dy", "speed", "ddx", "pressure"])
    moved = [np.column_stack([s[:, :2] * 3.7 + np.array([-900.0, 4200.0]), s[:, 2:]]) for s in sigs]
    a = ad.eval_transform(ad.prepare(sigs))
    b = ad.eval_transform(ad.prepare(moved))
    assert torch.allclose(a["x"], b["x"], atol=1e-4)
    assert torch.equal(a["mask"], b["mask"])


def test_fit_stats_round_trip_through_json_config(fitted, sigs):
    ad, data = fitted
    cfg = json.loads(json.dumps(ad.get_config()))
    assert len(cfg["feature_mean"]) == len(cfg["features"]) == len(cfg["feature_std"])
    again = SignatureAdapter.from_config(cfg)
    assert torch.equal(ad.eval_transform(data)["x"], again.eval_transform(data)["x"])
    x, mask = ad.eval_transform(data)["x"], ad.eval_transform(data)["mask"]
    real = x[mask]
    assert torch.allclose(real.mean(0), torch.zeros(real.shape[1]), atol=1e-4)  # standardised by fit
    assert x.shape == (6, 80, 9) and (x[~mask] == 0).all()  # native sampling, zero padding
    default = SignatureAdapter()
    out = default.eval_transform(default.prepare(sigs))
    assert out["x"].shape == (6, 128, 9) and out["mask"].all()  # resampled to 128 points by default


def test_resample_gives_a_fixed_length_and_keeps_every_stroke(sigs):
    ad = SignatureAdapter(resample=16)
    data = ad.prepare(sigs)
    out = ad.eval_transform(data)
    assert out["x"].shape[:2] == (6, 16) and out["mask"].all()
    # down-sampling 80 -> 16 points keeps the 3 stroke starts of every signature
    pts = interpolate_points(data["points"], data["length"], uniform_positions(data["length"], 16),
                             torch.full((6,), 16))
    assert ((pts[..., CHANNELS.index("pen_down")] < 0.5).sum(1) == 3).all()


def test_views_are_seeded_reproducible_and_differ_from_eval(fitted):
    ad, data = fitted
    v1 = ad.views(data, n_views=2, generator=torch.Generator().manual_seed(5))
    v2 = ad.views(data, n_views=2, generator=torch.Generator().manual_seed(5))
    v3 = ad.views(data, n_views=2, generator=torch.Generator().manual_seed(6))
    assert all(torch.equal(a["x"], b["x"]) and torch.equal(a["mask"], b["mask"]) for a, b in zip(v1, v2))
    assert not torch.equal(v1[0]["x"], v3[0]["x"])
    assert not torch.equal(v1[0]["x"], v1[1]["x"])
    for v in v1:  # padding is zero and masked; lengths stay plausible (tempo +-10%, 5% dropout)
        assert (v["x"][~v["mask"]] == 0).all()
        ratio = v["mask"].sum(1).float() / data["length"].float()
        assert ((ratio > 0.7) & (ratio < 1.15)).all()


def test_views_without_augmentation_equal_eval_transform(fitted):
    ad, data = fitted
    off = SignatureAdapter.from_config({**ad.get_config(), **{k: 0 for k in AUGMENT_DEFAULTS if k != "warp_knots"}})
    view = off.views(data, n_views=1, generator=torch.Generator().manual_seed(0))[0]
    ref = ad.eval_transform(data)
    assert torch.equal(view["mask"], ref["mask"])
    assert torch.allclose(view["x"], ref["x"], atol=1e-5)


def test_span_masking_stays_inside_the_signature(fitted):
    ad, data = fitted
    masker = SignatureAdapter.from_config({**ad.get_config(), **{k: 0 for k in AUGMENT_DEFAULTS if k != "warp_knots"},
                                           "mask_prob": 0.99, "mask_max_frac": 0.5})
    view = masker.views(data, n_views=1, generator=torch.Generator().manual_seed(1))[0]
    ref = ad.eval_transform(data)
    hidden = (view["x"] == 0).all(-1) & ~(ref["x"] == 0).all(-1)
    assert hidden.any() and not (hidden & ~ref["mask"]).any()


@pytest.mark.parametrize("name, kwargs", [("cnn", {"embed_dim": 32}), ("transformer", {"dim": 32, "heads": 2})])
def test_encoder_shapes_gradients_and_padding_invariance(fitted, name, kwargs):
    ad, data = fitted
    torch.manual_seed(0)
    enc = ad.build_encoder(name, **kwargs)
    assert enc.embed_dim == 32
    batch = ad.eval_transform(data)
    z = enc(batch)
    assert z.shape == (6, 32)
    z.pow(2).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in enc.parameters())
    enc.eval()
    with torch.no_grad():
        z = enc(batch)
        # garbage beyond each signature's end changes nothing
        noisy = {k: v.clone() for k, v in data.items()}
        pad = ~torch.arange(noisy["points"].shape[1]).lt(noisy["length"][:, None])
        noisy["points"][pad] = torch.randn(int(pad.sum()), 7) * 1e4
        assert torch.allclose(enc(ad.eval_transform(noisy)), z, atol=1e-5)
        # nor does the batch: a signature embeds the same alone as next to longer ones
        alone = enc(ad.eval_transform(take(data, torch.tensor([0]))))
        assert torch.allclose(alone, z[:1], atol=1e-5)


def test_segment_pooling_encoder(fitted):
    ad, data = fitted
    enc = ad.build_encoder("cnn", segments=4, width=16, depth=3, embed_dim=8)
    assert enc(ad.eval_transform(data)).shape == (6, 8)


def test_unknown_encoder_lists_the_available_ones(fitted):
    with pytest.raises(ConfigError, match="available: cnn, transformer"):
        fitted[0].build_encoder("lstm")


def test_tokens_are_patches_of_an_unmasked_view_with_padding(fitted):
    ad, data = fitted  # native sampling: lengths 30, 55, 41, 80, 62, 33
    # every augmentation off but the span mask, which tokens() must not apply (the method masks)
    plain = SignatureAdapter.from_config({**ad.get_config(), **{k: 0 for k in AUGMENT_DEFAULTS if k != "warp_knots"},
                                          "mask_prob": 0.99, "mask_max_frac": 0.5, "patch": 8})
    tb = plain.tokens(data, generator=torch.Generator().manual_seed(0))
    tb.validate()
    ref = plain.eval_transform(data)
    # no span set to 0: the view is the unaugmented signature (up to the identity affine map's rounding)
    assert torch.equal(tb.inputs["mask"], ref["mask"]) and torch.allclose(tb.inputs["x"], ref["x"], atol=1e-5)
    x, c = tb.inputs["x"], len(ad.features)
    assert tb.targets.shape == (6, 10, 8 * c) and not tb.discrete
    starts = torch.arange(10) * 8
    assert torch.equal(tb.padding_mask, starts[None, :] >= data["length"][:, None])
    # a token is 8 consecutive points, point-major; the points past the end (and past T) read 0
    assert torch.equal(tb.targets[1, 2].reshape(8, c), x[1, 16:24])
    assert torch.equal(tb.targets[0, 3, : 6 * c], x[0, 24:30].reshape(-1)) and (tb.targets[0, 3, 6 * c:] == 0).all()
    # augmented tokens: seeded, reproducible
    a1 = ad.tokens(data, generator=torch.Generator().manual_seed(3))
    a2 = ad.tokens(data, generator=torch.Generator().manual_seed(3))
    a3 = ad.tokens(data, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a1.targets, a2.targets) and not torch.equal(a1.targets, a3.targets)


def test_transformer_takes_the_adapters_patch(fitted):
    ad, data = fitted
    wide = SignatureAdapter.from_config({**ad.get_config(), "patch": 8})
    enc = wide.build_encoder("transformer", dim=16, depth=1, heads=2)
    assert enc.target_dim == 8 * len(ad.features)
    assert enc.tokenize(wide.eval_transform(data))[0].shape == (6, 10, 16)
    with pytest.raises(ConfigError, match="adapter's patch"):
        ad.build_encoder("transformer", patch=8)


@pytest.mark.parametrize("method", ["mae", "data2vec"])
def test_pretrain_masked_methods_on_signatures(tmp_path, sigs, method):
    from multissl import SSLModel, pretrain

    model = pretrain(sigs * 3, adapter="signature", method=method, epochs=2, batch_size=8, seed=1,
                     output_dir=str(tmp_path / "run"), encoder_kwargs={"dim": 16, "depth": 1, "heads": 2},
                     progress=False)
    assert model.config["encoder"]["name"] == "transformer"  # the adapter's token encoder, by default
    z = model.embed(sigs)
    assert z.shape == (6, 16) and np.isfinite(z).all()
    assert np.allclose(SSLModel.from_pretrained(tmp_path / "run" / "final").embed(sigs), z, atol=1e-5)


def test_pretrain_embed_save_load(tmp_path, sigs):
    from multissl import SSLModel, pretrain

    model = pretrain(sigs * 3, adapter="signature", epochs=2, batch_size=8, output_dir=str(tmp_path / "run"),
                     encoder_kwargs={"width": 16, "depth": 3, "embed_dim": 16}, progress=False)
    z = model.embed(sigs)
    assert z.shape == (6, 16) and z.dtype == np.float32
    again = SSLModel.from_pretrained(tmp_path / "run" / "final")
    assert np.allclose(again.embed(sigs), z, atol=1e-5)


def test_fit_statistics_are_those_of_the_resampled_features(sigs):
    ad = SignatureAdapter(resample=20, standardize="dataset")
    data = ad.prepare(sigs)
    ad.fit(data)
    x = ad.eval_transform(data)["x"].reshape(-1, len(ad.features))
    assert torch.allclose(x.mean(0), torch.zeros(x.shape[1]), atol=1e-4)
    assert torch.allclose(x.std(0, unbiased=False)[:4], torch.ones(4), atol=1e-3)  # x, y, dx, dy
