"""ImageAdapter: every input form, errors naming file/record, fit, views, presets, encoders."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from multissl.adapters import get_adapter
from multissl.adapters.image import ImageAdapter
from multissl.errors import ConfigError, DataError

N, H, W = 6, 12, 10


@pytest.fixture(scope="module")
def rgb_nhwc():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(N, H, W, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def expected(rgb_nhwc):
    return torch.from_numpy(rgb_nhwc).permute(0, 3, 1, 2).contiguous()


def _write_folder(root, arrays, ext=".png"):
    """Files in nested folders whose sorted relative paths follow the array order."""
    paths = []
    for i, a in enumerate(arrays):
        p = root / f"class_{i // 3}" / f"img_{i:02d}{ext}"
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(a).save(p)
        paths.append(p)
    return paths


# ---- input forms -------------------------------------------------------------------------
def test_every_input_form_gives_the_same_tensor(tmp_path, rgb_nhwc, expected):
    import datasets

    pil = [Image.fromarray(a) for a in rgb_nhwc]
    _write_folder(tmp_path / "imgs", rgb_nhwc)
    (tmp_path / "imgs" / "notes.txt").write_text("not an image")  # ignored
    ds = datasets.Dataset.from_dict({"picture": pil, "label": list(range(N))},
                                    features=datasets.Features({"picture": datasets.Image(),
                                                                "label": datasets.Value("int64")}))
    ds_arrays = datasets.Dataset.from_dict({"img": [a.tolist() for a in rgb_nhwc]})
    forms = {
        "numpy NHWC": rgb_nhwc,
        "numpy NCHW": np.ascontiguousarray(rgb_nhwc.transpose(0, 3, 1, 2)),
        "tensor NCHW": expected.clone(),
        "tensor NHWC": torch.from_numpy(rgb_nhwc.copy()),
        "float tensor": expected.float() / 255.0,
        "float64 numpy NHWC": rgb_nhwc / 255.0,
        "PIL list": pil,
        "list of arrays": list(rgb_nhwc),
        "list of paths": [str(p) for p in sorted((tmp_path / "imgs").rglob("*.png"))],
        "folder str": str(tmp_path / "imgs"),
        "folder Path": tmp_path / "imgs",
        "glob": str(tmp_path / "imgs" / "*" / "*.png"),
        "dataset Image feature": ds,
        "dataset array column": ds_arrays,
    }
    for name, data in forms.items():
        a = ImageAdapter()
        out = a.prepare(data)
        assert out.dtype == torch.uint8 and out.device.type == "cpu", name
        assert torch.equal(out, expected), name
        assert a.get_config()["image_size"] == [H, W] and a.get_config()["channels"] == 3, name


def test_npy_and_parquet_files(tmp_path, rgb_nhwc, expected):
    import datasets

    np.save(tmp_path / "x.npy", rgb_nhwc)
    assert torch.equal(ImageAdapter().prepare(tmp_path / "x.npy"), expected)
    ds = datasets.Dataset.from_dict({"image": [Image.fromarray(a) for a in rgb_nhwc]},
                                    features=datasets.Features({"image": datasets.Image()}))
    (tmp_path / "pq").mkdir()
    ds.to_parquet(str(tmp_path / "pq" / "train-00000-of-00001.parquet"))
    assert torch.equal(ImageAdapter().prepare(tmp_path / "pq"), expected)
    ds.to_parquet(str(tmp_path / "pq" / "test-00000-of-00001.parquet"))
    with pytest.raises(DataError, match="several splits"):
        ImageAdapter().prepare(tmp_path / "pq")
    assert torch.equal(ImageAdapter().prepare(str(tmp_path / "pq" / "test-*.parquet")), expected)


def test_grayscale_inputs_and_mixed_folder(tmp_path):
    rng = np.random.default_rng(1)
    g = rng.integers(0, 256, size=(4, 8, 8), dtype=np.uint8)
    a = ImageAdapter()
    x = a.prepare(g)
    assert x.shape == (4, 1, 8, 8) and torch.equal(x[:, 0], torch.from_numpy(g))
    assert a.get_config()["channels"] == 1
    assert torch.equal(ImageAdapter().prepare([Image.fromarray(im) for im in g]), x)
    assert torch.equal(ImageAdapter().prepare(torch.from_numpy(g).unsqueeze(-1)), x)  # (N, H, W, 1)
    # a folder mixing gray and colour images becomes RGB
    _write_folder(tmp_path / "mixed", [g[0], np.stack([g[1]] * 3, -1), g[2]])
    m = ImageAdapter().prepare(tmp_path / "mixed")
    assert m.shape == (3, 3, 8, 8)
    assert torch.equal(m[0], torch.from_numpy(g[0]).expand(3, 8, 8))
    # channels=1 turns colour into luma
    one = ImageAdapter(channels=1).prepare(tmp_path / "mixed")
    assert one.shape == (3, 1, 8, 8) and torch.equal(one[1, 0], torch.from_numpy(g[1]))


def test_different_sizes_resize_to_most_common_or_configured(tmp_path):
    rng = np.random.default_rng(2)
    sizes = [(20, 30), (16, 16), (16, 16), (40, 40)]
    _write_folder(tmp_path / "sizes", [rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8) for h, w in sizes])
    a = ImageAdapter()
    x = a.prepare(tmp_path / "sizes")
    assert x.shape == (4, 3, 16, 16) and a.get_config()["image_size"] == 16
    assert ImageAdapter(image_size=24).prepare(tmp_path / "sizes").shape == (4, 3, 24, 24)
    assert ImageAdapter(image_size=[8, 12]).prepare(tmp_path / "sizes").shape == (4, 3, 8, 12)
    # later data is brought to the size learnt from the first call
    assert a.prepare(np.zeros((2, 32, 32, 3), np.uint8)).shape == (2, 3, 16, 16)
    # ties: the first image's size
    b = ImageAdapter()
    b.prepare([np.zeros((9, 9), np.uint8), np.zeros((5, 5), np.uint8)])
    assert b.get_config()["image_size"] == 9


# ---- errors ------------------------------------------------------------------------------
def test_errors_name_the_file_or_record(tmp_path, rgb_nhwc):
    import datasets

    folder = tmp_path / "cifar"
    _write_folder(folder, rgb_nhwc[:2], ext=".jpg")
    (folder / "cat_3.jpg").write_bytes(b"definitely not a jpeg")
    with pytest.raises(DataError, match=r"cifar/cat_3\.jpg: cannot decode image"):
        ImageAdapter().prepare(folder)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty folder"):
        ImageAdapter().prepare(tmp_path / "empty")
    with pytest.raises(DataError, match="no such file or directory"):
        ImageAdapter().prepare(tmp_path / "missing")

    records = [a for a in rgb_nhwc] + [np.zeros((H, W, 4), np.uint8)]
    with pytest.raises(DataError, match="record 6: expected 3 channels, got 4"):
        ImageAdapter(channels=3).prepare(records)
    with pytest.raises(DataError, match="record 6: expected 1 or 3 channels, got 4"):
        ImageAdapter().prepare(records)
    with pytest.raises(DataError, match="expected 1 or 3 channels.*got 4"):
        ImageAdapter().prepare(np.zeros((2, 8, 8, 4), np.uint8))

    bad = torch.rand(5, 3, 8, 8)
    bad[3, 0, 1, 1] = float("nan")
    with pytest.raises(DataError, match="record 3: NaN"):
        ImageAdapter().prepare(bad)
    with pytest.raises(DataError, match=r"record 0: float pixel values must be in \[0, 1\].*divide by 255"):
        ImageAdapter().prepare(torch.rand(2, 3, 8, 8) * 255)
    with pytest.raises(DataError, match=r"record 1: integer pixel values must be in \[0, 255\]"):
        ImageAdapter().prepare(np.stack([np.zeros((8, 8), np.int64), np.full((8, 8), 300)]))
    with pytest.raises(DataError, match="expected"):
        ImageAdapter().prepare(np.zeros((2, 3, 8, 8, 3), np.uint8))
    with pytest.raises(DataError, match="looks like one"):
        ImageAdapter().prepare(np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(DataError, match="empty"):
        ImageAdapter().prepare([])
    with pytest.raises(DataError, match="unsupported"):
        ImageAdapter().prepare(42)

    ds = datasets.Dataset.from_dict({"image": [{"bytes": b"junk", "path": None}] * 3},
                                    features=datasets.Features({"image": datasets.Image()}))
    with pytest.raises(DataError, match="record 0: cannot decode image"):
        ImageAdapter().prepare(ds)
    with pytest.raises(DataError, match="no image column"):
        ImageAdapter().prepare(datasets.Dataset.from_dict({"text": ["a", "b"]}))
    with pytest.raises(DataError, match="no column 'pixels'"):
        ImageAdapter(image_column="pixels").prepare(ds)
    with pytest.raises(DataError, match="pass one split"):
        ImageAdapter().prepare(datasets.DatasetDict({"train": ds, "test": ds}))


def test_bad_config_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown image adapter option"):
        ImageAdapter(imag_size=32)
    with pytest.raises(ConfigError, match="channels"):
        ImageAdapter(channels=4)
    with pytest.raises(ConfigError, match="preset"):
        ImageAdapter(preset="strong")
    with pytest.raises(ConfigError, match="unknown image encoder"):
        ImageAdapter().build_encoder("vit_huge")
    with pytest.raises(ConfigError, match="crop_scale"):
        ImageAdapter(crop_scale=(0.0, 1.0)).views(torch.zeros(2, 3, 8, 8, dtype=torch.uint8))


# ---- fit, config, eval ----------------------------------------------------------------------
def test_fit_statistics_and_config_round_trip(expected):
    a = get_adapter("image", image_size=[H, W], cj_strength=0.7, blur_prob=0.3)
    assert isinstance(a, ImageAdapter)
    x = a.prepare(expected)
    a.fit(x)
    ref = x.double().div(255)
    np.testing.assert_allclose(a.config["mean"], ref.mean(dim=(0, 2, 3)).numpy(), rtol=1e-9)
    np.testing.assert_allclose(a.config["std"], ref.std(dim=(0, 2, 3), unbiased=False).numpy(), rtol=1e-9)
    cfg = json.loads(json.dumps(a.get_config()))  # JSON round trip
    b = ImageAdapter.from_config(cfg)
    assert b.get_config() == a.get_config()
    e = a.eval_transform(x)
    assert e.dtype == torch.float32 and e.shape == x.shape
    assert torch.equal(e, b.eval_transform(x)) and torch.equal(e, a.eval_transform(x))
    torch.testing.assert_close(e.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(e.std(dim=(0, 2, 3), unbiased=False), torch.ones(3), atol=1e-4, rtol=0)
    va = a.views(x, 2, torch.Generator().manual_seed(3))
    vb = b.views(x, 2, torch.Generator().manual_seed(3))
    assert all(torch.equal(p, q) for p, q in zip(va, vb))
    # eval_transform resizes batches of another size
    assert a.eval_transform(torch.zeros(2, 3, 24, 20, dtype=torch.uint8)).shape == (2, 3, H, W)


# ---- views and presets ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cifar_like():
    g = torch.Generator().manual_seed(0)
    # smooth random images (upsampled noise) look more like photos than white noise
    x = torch.nn.functional.interpolate(torch.rand(32, 3, 8, 8, generator=g), size=32, mode="bilinear")
    return (x * 255).round().to(torch.uint8)


def test_views_reproducible_shape_and_normalised(cifar_like):
    a = ImageAdapter()
    x = a.prepare(cifar_like)
    a.fit(x)
    before = x.clone()
    v1 = a.views(x, n_views=2, generator=torch.Generator().manual_seed(0))
    v2 = a.views(x, n_views=2, generator=torch.Generator().manual_seed(0))
    v3 = a.views(x, n_views=2, generator=torch.Generator().manual_seed(1))
    assert len(v1) == 2 and torch.equal(x, before)
    for v in v1:
        assert v.shape == x.shape and v.dtype == torch.float32 and v.device == x.device
        assert torch.isfinite(v).all()
    assert all(torch.equal(p, q) for p, q in zip(v1, v2))
    assert not torch.equal(v1[0], v3[0]) and not torch.equal(v1[0], v1[1])
    assert abs(float(torch.cat(v1).mean())) < 0.5 and 0.5 < float(torch.cat(v1).std()) < 1.5
    assert len(a.views(x, n_views=3, generator=torch.Generator().manual_seed(0))) == 3


def test_presets_and_overrides(cifar_like):
    a = ImageAdapter(image_size=32, channels=3)
    s = a.augmentation_settings()
    assert s["crop_scale"] == [0.2, 1.0] and s["blur_prob"] == 0.0 and s["cj_prob"] == 0.8
    assert s["brightness"] == pytest.approx(0.4) and s["hue"] == pytest.approx(0.1) and s["gray_prob"] == 0.2
    big = a.augmentation_settings(image_size=224)
    assert big["crop_scale"] == [0.08, 1.0] and big["blur_prob"] == 0.5 and big["blur_kernel_size"] == 23
    assert big["brightness"] == pytest.approx(0.8)
    assert ImageAdapter(image_size=32, cj_strength=1.0, hue=0.0).augmentation_settings()["hue"] == 0.0
    assert ImageAdapter(image_size=32, cj_strength=1.0).augmentation_settings()["saturation"] == pytest.approx(0.8)

    # a uniform-colour image is unchanged by crop + flip, not by colour jitter
    flat = torch.empty(16, 3, 32, 32, dtype=torch.uint8)
    flat[:, 0], flat[:, 1], flat[:, 2] = 200, 40, 90
    g = torch.Generator().manual_seed(0)
    ev = a.eval_transform(flat)
    torch.testing.assert_close(a.augment(flat, g, preset="light"), ev, atol=1e-5, rtol=0)
    torch.testing.assert_close(a.augment(flat, g, preset="none"), ev, atol=1e-5, rtol=0)
    assert (a.augment(flat, g) - ev).abs().amax() > 0.1  # simclr changes colours
    torch.testing.assert_close(a.finetune_augment(flat, g), ev, atol=1e-5, rtol=0)
    f1 = a.finetune_augment(cifar_like, torch.Generator().manual_seed(5))
    assert torch.equal(f1, a.augment(cifar_like, torch.Generator().manual_seed(5), preset="light"))
    light = a.augment(cifar_like, g, preset="light", crop_scale=(1.0, 1.0), hflip_prob=0.0)
    torch.testing.assert_close(light, a.eval_transform(cifar_like), atol=1e-5, rtol=0)
    with pytest.raises(ConfigError, match="unknown augmentation option"):
        a.augment(flat, g, preset="light", colour=1)


def test_views_on_grayscale_images():
    rng = np.random.default_rng(3)
    a = ImageAdapter(blur_prob=1.0, solarize_prob=0.5)
    x = a.prepare(rng.integers(0, 256, size=(8, 8, 8), dtype=np.uint8))
    a.fit(x)
    v = a.views(x, generator=torch.Generator().manual_seed(0))
    assert v[0].shape == (8, 1, 8, 8) and torch.isfinite(v[0]).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_views_on_gpu_match_shapes_and_seed(cifar_like):
    a = ImageAdapter()
    x = a.prepare(cifar_like).cuda()
    v1 = a.views(x, generator=torch.Generator("cuda").manual_seed(0))
    v2 = a.views(x, generator=torch.Generator("cuda").manual_seed(0))
    assert v1[0].device.type == "cuda" and all(torch.equal(p, q) for p, q in zip(v1, v2))
    # a CPU generator drives GPU batches too
    assert a.views(x, generator=torch.Generator().manual_seed(0))[0].device.type == "cuda"


# ---- encoders ----------------------------------------------------------------------------------
@pytest.mark.parametrize("size,name,kwargs,dim", [
    (8, "resnet18", {}, 512), (32, "resnet18", {}, 512), (96, "resnet18", {}, 512),
    (32, "resnet18", {"width": 0.5}, 256), (96, "resnet34", {"width": 0.125}, 64),
    (8, "small_cnn", {"embed_dim": 64}, 64), (32, "small_cnn", {}, 256), (96, "small_cnn", {"width": 0.5}, 256),
])
def test_encoders_embed_and_backprop(size, name, kwargs, dim, one_thread):
    torch.manual_seed(0)
    a = ImageAdapter(image_size=size, channels=3)
    enc = a.build_encoder(name, **kwargs)
    assert enc.embed_dim == dim == ImageAdapter.embed_dim(enc)
    x = a.eval_transform(torch.randint(0, 256, (2, 3, size, size), dtype=torch.uint8))
    z = enc(x)
    assert z.shape == (2, dim)
    z.pow(2).mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in enc.parameters() if p.requires_grad)
    assert enc.forward_tokens(x).shape[::2] == (2, dim)


def test_encoder_stem_channels_and_names(one_thread):
    assert ImageAdapter(image_size=32).build_encoder().conv1.kernel_size == (3, 3)
    std = ImageAdapter(image_size=96).build_encoder("resnet18")
    assert std.conv1.kernel_size == (7, 7) and isinstance(std.maxpool, torch.nn.MaxPool2d)
    gray = ImageAdapter(image_size=28, channels=1).build_encoder("resnet18", width=0.125)
    assert gray.conv1.in_channels == 1 and gray(torch.zeros(2, 1, 28, 28)).shape == (2, 64)
    r50 = ImageAdapter(image_size=32).build_encoder("resnet50", width=0.125)
    assert r50.embed_dim == 256 and r50(torch.zeros(2, 3, 32, 32)).shape == (2, 256)
    import torchvision

    tv = torchvision.models.resnet18(weights=None)
    ours = ImageAdapter(image_size=224).build_encoder("resnet18")
    assert isinstance(ours, torchvision.models.ResNet)
    missing = ours.load_state_dict({k: v for k, v in tv.state_dict().items() if not k.startswith("fc.")})
    assert not missing.missing_keys and not missing.unexpected_keys
    assert ImageAdapter().encoder_names() == ["resnet18", "resnet34", "resnet50", "small_cnn", "vit_tiny", "vit_small"]
    assert set(ImageAdapter.defaults) >= {"method", "epochs", "batch_size", "encoder"}
