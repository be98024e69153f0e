"""Inpainting with a context encoder (Pathak et al. 2016): masks and weights, the loss against
its formula, what the encoder sees, gradients, the optional adversarial loss, seeds, pretrain()."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from multissl import pretrain
from multissl.errors import ConfigError
from multissl.methods import build_method, get_method_class, list_methods
from multissl.methods.inpainting import Inpainting, inpainting_loss, region_geometry, region_weights

EMBED = 16


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def conv_encoder() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                         nn.Linear(32, EMBED))


def make(seed: int = 0, **hparams) -> Inpainting:
    torch.manual_seed(seed)
    return build_method("inpainting", conv_encoder(), EMBED, decoder_dim=8, **hparams)


def images(n: int = 4, side: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, side, side, generator=torch.Generator().manual_seed(seed))


def test_registry_and_defaults() -> None:
    assert "inpainting" in list_methods()
    cls = get_method_class("inpainting")
    assert cls is Inpainting and cls.n_views == 1
    assert make().hparams() == {"mask_fraction": 0.5, "random_position": False, "overlap": None,
                                "overlap_weight": 10.0, "decoder_dim": 8, "adversarial_weight": 0.0}


def test_centre_region_and_overlap_weights_are_exact() -> None:
    assert region_geometry(8, 8, 0.5) == (4, 4)
    assert region_geometry(8, 8, 0.5, overlap=1) == (4, 2)
    hidden, w = region_weights(torch.tensor([[2, 2]]), 8, 8, region=4, overlap=1, overlap_weight=10.0)
    expected = torch.zeros(8, 8)
    expected[2:6, 2:6] = 10.0  # the visible border of the predicted region
    expected[3:5, 3:5] = 1.0  # the hole
    assert torch.equal(w[0, 0], expected)
    assert torch.equal(hidden[0, 0], expected == 1.0)
    with pytest.raises(ConfigError, match="no hidden pixels with overlap=2"):
        region_geometry(8, 8, 0.5, overlap=2)


def test_loss_formula_on_a_hand_computed_case() -> None:
    pred = torch.zeros(1, 2, 2, 2)
    target = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[0.0, 1.0], [0.0, 2.0]]]])
    weights = torch.tensor([[[[1.0, 0.0], [10.0, 1.0]]]])
    # sum W * err^2 over both channels: 1*(1+0) + 10*(9+0) + 1*(16+4) = 111; C * sum W = 2 * 12
    assert torch.allclose(inpainting_loss(pred, target, weights), torch.tensor(111.0 / 24.0))


def test_method_loss_is_masked_l2_of_its_reconstruction() -> None:
    method = make(overlap=1)
    x = images()
    method.eval()
    out = method([x])
    masked, hidden, weights = method.make_masks(x)
    assert (masked[hidden.expand_as(x)] == 0).all()  # hidden pixels filled with the mean (0)
    assert torch.equal(masked[~hidden.expand_as(x)], x[~hidden.expand_as(x)])  # the rest untouched
    prediction = method.reconstruct(masked)
    assert prediction.shape == x.shape
    expected = ((prediction - x) ** 2 * weights).sum() / (3 * weights.sum())
    assert torch.allclose(out["loss"], expected, atol=1e-6)
    assert set(out) == {"loss", "reconstruction"}  # adversarial loss off by default
    assert method.discriminator is None


def test_the_encoder_never_sees_the_hidden_pixels() -> None:
    method = make()
    method.eval()
    x = images()
    _, hidden, _ = method.make_masks(x)
    y = torch.where(hidden, torch.randn_like(x) * 5, x)  # different content in the hole only
    assert not torch.equal(x, y)
    assert torch.equal(method.reconstruct(method.make_masks(x)[0]), method.reconstruct(method.make_masks(y)[0]))


def test_random_positions_vary_reproducibly() -> None:
    method = make(random_position=True)
    x = images(16)
    _, h1, _ = method.make_masks(x, torch.Generator().manual_seed(3))
    _, h2, _ = method.make_masks(x, torch.Generator().manual_seed(3))
    _, h3, _ = method.make_masks(x, torch.Generator().manual_seed(4))
    assert torch.equal(h1, h2) and not torch.equal(h1, h3)
    assert (h1.sum(dim=(1, 2, 3)) == 16).all()  # a 4x4 square each
    assert len({tuple(m.nonzero()[0].tolist()) for m in h1}) > 1  # not all at the same place
    method.train()
    a, b = method.make_masks(x)[1], method.make_masks(x)[1]  # the training stream moves on
    assert not torch.equal(a, b)
    method.eval()
    assert torch.equal(method.make_masks(x)[1], method.make_masks(x)[1])  # eval: fixed


def test_gradients_reach_encoder_and_decoder() -> None:
    method = make()
    method([images()])  # builds the decoder
    out = method([images()])
    out["loss"].backward()
    for name, p in method.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert any(n.startswith("decoder.") for n, _ in method.named_parameters())


def test_adversarial_loss_trains_each_side_on_its_own_objective() -> None:
    method = make(adversarial_weight=0.5)
    x = images()
    out = method([x], generator=torch.Generator().manual_seed(0))
    assert set(out) == {"loss", "reconstruction", "adversarial", "discriminator"}
    expected = 0.5 * out["reconstruction"] + 0.5 * out["adversarial"] + out["discriminator"]
    assert torch.allclose(out["loss"], expected, atol=1e-6)
    out["loss"].backward()
    d_grads = {n: p.grad.clone() for n, p in method.discriminator.named_parameters()}
    assert all(g.abs().sum() > 0 for g in d_grads.values())
    assert all(p.grad.abs().sum() > 0 for p in method.decoder.parameters())
    # the discriminator's gradient comes from its own loss only, not from the generator's term
    method.zero_grad()
    masked, _, weights = method.make_masks(x)
    fake = torch.where(weights > 0, method.reconstruct(masked), x).detach()
    d_loss = nn.functional.softplus(-method.discriminator(x)).mean() + \
        nn.functional.softplus(method.discriminator(fake)).mean()
    d_loss.backward()
    for n, p in method.discriminator.named_parameters():
        assert torch.allclose(p.grad, d_grads[n], atol=1e-6), n


def test_learns_to_fill_a_predictable_hole() -> None:
    method = make()
    x = images(4).abs()  # constant images: the hole's colour is visible around it
    x = x.mean(dim=(-2, -1), keepdim=True).expand_as(x).contiguous()
    method([x])
    opt = torch.optim.AdamW(method.parameters(), lr=1e-2)
    losses = []
    for _ in range(80):
        out = method([x])
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(out["loss"].item())
    assert losses[-1] < 0.1 * losses[0]
    method.eval()
    pictures = method.inpaint(x)
    assert set(pictures) == {"masked", "inpainted"} and pictures["inpainted"].shape == x.shape


def test_same_seed_same_model_and_loss() -> None:
    x = images()
    la, lb, lc = (m([x])["loss"] for m in (make(0), make(0), make(1)))
    assert torch.equal(la, lb) and not torch.equal(la, lc)


@pytest.mark.parametrize("hparams, match", [
    ({"mask_ratio": 0.5}, "unknown hyperparameter.*valid: adversarial_weight"),
    ({"mask_fraction": 1.0}, "mask_fraction.*in \\(0, 1\\)"),
    ({"overlap": 0}, "must be >= 1"),
    ({"adversarial_weight": 2.0}, "in \\[0, 1\\]"),
])
def test_invalid_hyperparameters(hparams: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        build_method("inpainting", conv_encoder(), EMBED, **hparams)


def test_one_image_size_per_method() -> None:
    method = make()
    method([images(2, 8)])
    with pytest.raises(ConfigError, match="built for \\(3, 8, 8\\) images, got \\(3, 12, 12\\)"):
        method([images(2, 12)])


def test_trainer_builds_the_decoder_before_the_optimiser_so_it_trains() -> None:
    from multissl.adapters import get_adapter
    from multissl.trainer import TrainConfig, Trainer

    data = np.random.default_rng(0).integers(0, 255, size=(16, 12, 12, 3), dtype=np.uint8)
    adapter = get_adapter("image", preset="light")
    prepared = adapter.prepare(data)
    adapter.fit(prepared)
    torch.manual_seed(0)
    encoder = adapter.build_encoder("small_cnn", width=0.25, embed_dim=16)
    method = build_method("inpainting", encoder, 16, decoder_dim=8)
    assert method.decoder is None
    initial = {}
    build = method.build_decoder

    def remember_initial_weights(*shape):
        build(*shape)
        if not initial:
            initial.update({k: v.clone() for k, v in method.decoder.state_dict().items()})

    method.build_decoder = remember_initial_weights
    history = Trainer(method, adapter, TrainConfig(epochs=2, batch_size=8, progress=False)).fit(prepared)
    assert len(history) == 2 and all(np.isfinite(h["loss"]) for h in history)
    assert method.image_shape == (3, 12, 12)
    assert not torch.equal(method.decoder.project.weight, initial["project.weight"])


def test_pretrain_with_inpainting_embeds_images() -> None:
    data = np.random.default_rng(0).integers(0, 255, size=(16, 12, 12, 3), dtype=np.uint8)
    model = pretrain(data, adapter="image", method="inpainting", encoder="small_cnn",
                     encoder_kwargs={"width": 0.25, "embed_dim": 16}, method_kwargs={"decoder_dim": 8},
                     epochs=1, batch_size=8, progress=False)
    assert model.config["method"] == "inpainting"
    assert model.embed(data).shape == (16, 16)
