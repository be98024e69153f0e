"""Colorization (Zhang et al. 2016): Lab conversion, ab bins, soft targets, rebalancing,
annealed mean, the loss against a hand computation, training, errors, pretrain()."""
from __future__ import annotations


import numpy as np
import pytest
import torch
from torch import nn

from multissl import pretrain
from multissl.errors import ConfigError, DataError
from multissl.methods import build_method, get_method_class, list_methods
from multissl.methods.colorization import (Colorization, ab_gamut_bins, annealed_mean, check_colour_images,
                                           rebalance_weights, smoothed_prior, soft_encode)
from multissl.methods.lab_color import lab_to_rgb, rgb_to_lab


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


class TinyConv(nn.Module):
    """A feature-map encoder like the image adapter's: forward_features + pooled forward."""

    def __init__(self, dim: int = 16) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, dim, 3, stride=2, padding=1), nn.BatchNorm2d(dim), nn.ReLU())
        self.embed_dim = dim

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).mean(dim=(-2, -1))


def make(seed: int = 0, encoder: nn.Module = None, **hparams) -> Colorization:
    torch.manual_seed(seed)
    return build_method("colorization", encoder or TinyConv(), 16, head_dim=16, **hparams)


def colour_images(n: int = 6, side: int = 8, seed: int = 0) -> torch.Tensor:
    """Images of two halves in two random saturated colours, RGB in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    x = torch.empty(n, 3, side, side)
    x[..., : side // 2] = torch.rand(n, 3, 1, 1, generator=g)
    x[..., side // 2:] = torch.rand(n, 3, 1, 1, generator=g)
    return x


# ---- Lab ----------------------------------------------------------------------------------------
# sRGB (D65) -> L*a*b* reference values from the CIE formulas (as printed by colour-science
# calculators and skimage.color.rgb2lab)
KNOWN = [
    ((1.0, 0.0, 0.0), (53.2408, 80.0925, 67.2032)),
    ((0.0, 1.0, 0.0), (87.7347, -86.1827, 83.1793)),
    ((0.0, 0.0, 1.0), (32.2970, 79.1875, -107.8602)),
    ((1.0, 1.0, 1.0), (100.0, 0.0, 0.0)),
    ((0.0, 0.0, 0.0), (0.0, 0.0, 0.0)),
    ((0.5, 0.5, 0.5), (53.3890, 0.0, 0.0)),
]


@pytest.mark.parametrize("rgb, lab", KNOWN)
def test_rgb_to_lab_known_colours(rgb, lab) -> None:
    got = rgb_to_lab(torch.tensor(rgb, dtype=torch.float64).view(1, 3, 1, 1))[0, :, 0, 0]
    assert torch.allclose(got, torch.tensor(lab, dtype=torch.float64), atol=2e-3), got


def test_rgb_to_lab_matches_skimage_when_installed() -> None:
    skcolor = pytest.importorskip("skimage.color")
    rgb = np.random.default_rng(0).random((5, 7, 3))
    ours = rgb_to_lab(torch.from_numpy(rgb).permute(2, 0, 1)[None])[0].permute(1, 2, 0).numpy()
    assert np.allclose(ours, skcolor.rgb2lab(rgb), atol=1e-3)


def test_lab_round_trip_and_shapes() -> None:
    rgb = torch.rand(4, 3, 5, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    lab = rgb_to_lab(rgb)
    assert lab.shape == rgb.shape
    assert lab[:, 0].min() >= 0 and lab[:, 0].max() <= 100
    assert torch.allclose(lab_to_rgb(lab), rgb, atol=1e-9)
    with pytest.raises(ValueError, match=r"\(B, 3, \.\.\.\)"):
        rgb_to_lab(torch.zeros(2, 1, 4, 4))


# ---- bins, soft targets, prior, decoding ----------------------------------------------------------
def test_gamut_bins_are_grid_centres_that_srgb_colours_reach() -> None:
    centres = ab_gamut_bins(10.0)
    assert centres.shape == (261, 2)
    assert torch.equal(centres, torch.round(centres / 10) * 10)  # on the grid
    assert len(torch.unique(centres, dim=0)) == len(centres)
    # the primaries' ab fall into bins; grey (0, 0) does; a far-out corner does not
    for ab in ([80.0, 70.0], [-90.0, 80.0], [80.0, -110.0], [0.0, 0.0]):
        assert (centres == torch.tensor(ab)).all(dim=1).any(), ab
    assert not (centres == torch.tensor([-100.0, -100.0])).all(dim=1).any()
    # every sRGB colour's nearest grid centre is a bin
    lab = rgb_to_lab(torch.rand(1, 3, 4000, generator=torch.Generator().manual_seed(1)))[0, 1:].T
    nearest = torch.round(lab / 10) * 10
    assert (torch.cdist(nearest, centres).min(dim=1).values < 1e-4).all()


def test_soft_targets_sum_to_one_and_favour_the_nearest_bin() -> None:
    centres = ab_gamut_bins(10.0)
    ab = torch.tensor([[3.0, -2.0], [41.0, 18.0], [-55.5, 60.2], [0.0, 0.0]])
    z = soft_encode(ab, centres, neighbors=5, sigma=5.0)
    assert z.shape == (4, len(centres))
    assert torch.allclose(z.sum(dim=1), torch.ones(4))
    assert ((z > 0).sum(dim=1) == 5).all()
    nearest = torch.cdist(ab, centres).argmin(dim=1)
    assert torch.equal(z.argmax(dim=1), nearest)
    # the formula on one pixel: Gaussian weights of the 5 nearest distances, normalised
    d = torch.cdist(ab[:1], centres)[0]
    near = d.topk(5, largest=False)
    w = torch.exp(-near.values**2 / 50.0)
    assert torch.allclose(z[0, near.indices], w / w.sum(), atol=1e-6)


def test_soft_targets_far_outside_the_gamut_stay_finite() -> None:
    z = soft_encode(torch.tensor([[500.0, 500.0]]), ab_gamut_bins(10.0))
    assert torch.isfinite(z).all() and abs(float(z.sum()) - 1) < 1e-6


def test_annealed_mean_of_a_one_hot_distribution_is_the_bin_centre() -> None:
    centres = ab_gamut_bins(10.0)
    for q in (0, 17, len(centres) - 1):
        p = torch.zeros(1, len(centres), 1, 1)
        p[0, q] = 1.0
        ab = annealed_mean(p, centres, temperature=0.38)
        assert ab.shape == (1, 2, 1, 1)
        assert torch.allclose(ab[0, :, 0, 0], centres[q], atol=1e-4)


def test_annealed_mean_between_mode_and_mean() -> None:
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0]])
    p = torch.tensor([[0.75, 0.25]])
    # T = 1: the mean; T = 0.5: weights p^2 normalised (0.9, 0.1); T -> 0: the mode
    assert torch.allclose(annealed_mean(p, centres, 1.0), torch.tensor([[2.5, 0.0]]), atol=1e-5)
    assert torch.allclose(annealed_mean(p, centres, 0.5), torch.tensor([[1.0, 0.0]]), atol=1e-5)
    assert torch.allclose(annealed_mean(p, centres, 0.01), torch.tensor([[0.0, 0.0]]), atol=1e-4)


def test_rebalance_weights_formula() -> None:
    p = torch.tensor([0.7, 0.2, 0.1, 0.0])
    w = rebalance_weights(p, lam=0.5)
    raw = 1.0 / (0.5 * p + 0.5 / 4)
    assert torch.allclose(w, raw / (p * raw).sum())
    assert abs(float((p * w).sum()) - 1.0) < 1e-6
    assert w[3] > w[2] > w[1] > w[0]  # rarer colours weigh more
    assert torch.allclose(rebalance_weights(p, lam=1.0), torch.ones(4))  # lam = 1: no rebalancing


def test_smoothed_prior_spreads_mass_to_neighbours() -> None:
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [100.0, 0.0]])
    p = smoothed_prior(torch.tensor([10.0, 0.0, 0.0]), centres, sigma=5.0)
    assert abs(float(p.sum()) - 1) < 1e-6 and p[0] > p[1] > 0 and p[2] < 1e-20
    assert torch.allclose(smoothed_prior(torch.zeros(3), centres), torch.full((3,), 1 / 3))


# ---- the method ----------------------------------------------------------------------------------
def test_registry_and_hparams() -> None:
    assert "colorization" in list_methods()
    cls = get_method_class("colorization")
    assert cls is Colorization and cls.n_views == 1
    assert make().hparams() == {"grid": 10.0, "neighbors": 5, "sigma": 5.0, "rebalance": True,
                                "rebalance_lambda": 0.5, "temperature": 0.38, "head_dim": 16, "output_stride": 4}


def test_loss_equals_hand_computed_cross_entropy() -> None:
    method = make(rebalance=False, output_stride=8)  # 8x8 images -> one prediction per image
    x = colour_images(3)
    method.eval()
    out = method([x])
    lab = rgb_to_lab(x)
    ab = lab[:, 1:].mean(dim=(-2, -1))  # the target of the single output cell: the mean ab
    logits = method.logits(lab[:, :1])[:, :, 0, 0]
    centres = method.bin_centres
    expected = 0.0
    for i in range(3):
        d = ((centres - ab[i]) ** 2).sum(dim=1).sqrt()
        near = d.argsort()[:5]
        w = torch.exp(-d[near] ** 2 / 50.0)
        w = w / w.sum()
        logp = logits[i] - torch.logsumexp(logits[i], dim=0)
        expected += -(w * logp[near]).sum() / 3
    assert torch.allclose(out["loss"], expected, atol=1e-5)
    predicted = logits.argmax(dim=1)
    true_bin = torch.cdist(ab, centres).argmin(dim=1)
    assert abs(out["accuracy"].item() - (predicted == true_bin).float().mean().item()) < 1e-6


def test_rebalancing_weights_each_pixel_by_its_colour() -> None:
    method = make(output_stride=8)
    x = colour_images(3)
    method.train()
    method([x])  # counts this batch's colours first, then weights by them
    assert method.bin_counts.sum() == 3
    method.eval()
    plain = make(rebalance=False, output_stride=8)
    plain.load_state_dict(method.state_dict())
    plain.eval()
    lab = rgb_to_lab(x)
    ab = lab[:, 1:].mean(dim=(-2, -1))
    nearest = torch.cdist(ab, method.bin_centres).argmin(dim=1)
    weights = method.class_weights()[nearest]
    logits = method.logits(lab[:, :1])[:, :, 0, 0]
    targets = soft_encode(ab, method.bin_centres)
    per_pixel = -(targets * torch.log_softmax(logits, dim=1)).sum(dim=1)
    assert torch.allclose(method([x])["loss"], (weights * per_pixel).mean(), atol=1e-5)
    assert torch.allclose(plain([x])["loss"], per_pixel.mean(), atol=1e-5)
    assert method.majority_accuracy() == pytest.approx(float(method.bin_counts.max()) / 3)


def test_normalisation_is_inverted_before_lab() -> None:
    mean, std = [0.4, 0.5, 0.6], [0.2, 0.25, 0.3]
    x = colour_images(4)
    a = make(rebalance=False)
    b = make(rebalance=False)
    b.set_normalization(mean, std)
    a.eval(), b.eval()
    normalised = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    la, lb = a._lab([x]), b._lab([normalised])
    assert torch.allclose(la, lb, atol=1e-4)
    # the encoder sees L on every channel, normalised like RGB images are
    g = b.gray_input(lb[:, :1])
    assert torch.allclose(g * torch.tensor(std).view(1, 3, 1, 1) + torch.tensor(mean).view(1, 3, 1, 1),
                          (lb[:, :1] / 100).expand(-1, 3, -1, -1), atol=1e-5)


def test_gradients_reach_encoder_and_head() -> None:
    method = make()
    out = method([colour_images()])
    assert set(out) == {"loss", "accuracy"} and out["loss"].requires_grad and not out["accuracy"].requires_grad
    out["loss"].backward()
    for name, p in method.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_encoder_without_feature_map_uses_the_pooled_embedding() -> None:
    flat = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 16))
    method = make(encoder=flat)
    assert not method.uses_feature_map and method.head.from_embedding is not None
    out = method([colour_images()])
    out["loss"].backward()
    assert flat[1].weight.grad.abs().sum() > 0
    assert method.logits(torch.rand(2, 1, 8, 8) * 100).shape == (2, 261, 2, 2)


def test_learns_to_colour_a_tiny_problem() -> None:
    method = make(rebalance=False)
    x = colour_images(6)
    opt = torch.optim.AdamW(method.parameters(), lr=1e-2)
    losses = []
    for _ in range(60):
        out = method([x])
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(out["loss"].item())
    assert losses[-1] < 0.3 * losses[0]
    method.eval()
    pictures = method.colorize(x)
    assert set(pictures) == {"gray", "predicted", "truth"}
    assert all(p.shape == x.shape and p.min() >= 0 and p.max() <= 1 for p in pictures.values())
    assert torch.allclose(pictures["truth"], x, atol=1e-4)
    gray = pictures["gray"]
    assert torch.allclose(gray[:, 0], gray[:, 1], atol=1e-3) and torch.allclose(gray[:, 1], gray[:, 2], atol=1e-3)
    # the prediction is closer to the truth in ab than the gray image is
    ab_err = (rgb_to_lab(pictures["predicted"])[:, 1:] - rgb_to_lab(x)[:, 1:]).abs().mean()
    gray_err = rgb_to_lab(x)[:, 1:].abs().mean()
    assert ab_err < 0.6 * gray_err


def test_same_seed_same_model_and_loss() -> None:
    x = colour_images()
    la, lb, lc = (m([x])["loss"] for m in (make(0), make(0), make(1)))
    assert torch.equal(la, lb) and not torch.equal(la, lc)


def test_grayscale_inputs_are_refused() -> None:
    with pytest.raises(ConfigError, match="colorization needs colour images, got 1-channel"):
        make()([torch.zeros(2, 1, 8, 8)])
    with pytest.raises(DataError, match="data.npz: colorization needs colour images.*R = G = B"):
        check_colour_images(torch.full((4, 3, 8, 8), 77, dtype=torch.uint8), "data.npz")
    with pytest.raises(DataError, match="1-channel"):
        check_colour_images(torch.zeros(4, 1, 8, 8, dtype=torch.uint8))
    check_colour_images((colour_images() * 255).to(torch.uint8))  # colour: passes


@pytest.mark.parametrize("hparams, match", [
    ({"bins": 8}, "unknown hyperparameter.*valid: grid"),
    ({"rebalance_lambda": 1.5}, "rebalance_lambda.*in \\[0, 1\\]"),
    ({"temperature": 0.0}, "temperature.*> 0"),
    ({"neighbors": 0}, "must be >= 1"),
])
def test_invalid_hyperparameters(hparams: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        build_method("colorization", TinyConv(), 16, **hparams)


def test_pretrain_binds_the_adapter_normalisation_and_embeds_colour_images() -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, size=(16, 12, 12, 3), dtype=np.uint8)
    model = pretrain(images, adapter="image", method="colorization", encoder="small_cnn",
                     encoder_kwargs={"width": 0.25, "embed_dim": 16}, method_kwargs={"head_dim": 8},
                     epochs=1, batch_size=8, progress=False)
    assert model.config["method"] == "colorization" and model.adapter.config["preset"] == "light"
    assert model.embed(images).shape == (16, 16)
    with pytest.raises(ConfigError, match="colour images, got 1-channel"):
        pretrain(images[..., 0], adapter="image", method="colorization", encoder="small_cnn", epochs=1,
                 batch_size=8, progress=False)
