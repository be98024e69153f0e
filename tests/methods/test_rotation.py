"""Rotation prediction (RotNet): exact rotations and labels, training, errors, pretrain()."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from multissl import pretrain
from multissl.errors import ConfigError
from multissl.methods import build_method, get_method_class, list_methods
from multissl.methods.rotation import Rotation, rotate_all

EMBED = 16


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def flat_encoder(channels: int = 1, side: int = 6) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(channels * side * side, 64), nn.ReLU(), nn.Linear(64, EMBED))


def make(seed: int = 0, **hparams) -> Rotation:
    torch.manual_seed(seed)
    return build_method("rotation", flat_encoder(), EMBED, head_hidden_dim=32, **hparams)


def test_rotations_and_labels_are_exact() -> None:
    a = torch.tensor([[1., 2., 3.], [4., 5., 6.], [7., 8., 9.]])  # no symmetry: every turn differs
    x = torch.stack([a, 10 * a]).unsqueeze(1)  # (2, 1, 3, 3)
    rotated, labels = rotate_all(x)
    quarter = torch.tensor([[3., 6., 9.], [2., 5., 8.], [1., 4., 7.]])  # counter-clockwise
    half = torch.tensor([[9., 8., 7.], [6., 5., 4.], [3., 2., 1.]])
    three_quarters = torch.tensor([[7., 4., 1.], [8., 5., 2.], [9., 6., 3.]])
    expected = [a, quarter, half, three_quarters]
    assert rotated.shape == (8, 1, 3, 3)
    assert labels.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    for k in range(4):
        assert torch.equal(rotated[2 * k, 0], expected[k])
        assert torch.equal(rotated[2 * k + 1, 0], 10 * expected[k])


def test_clips_rotate_every_frame_alike() -> None:
    clip = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).view(1, 2, 3, 4, 4)  # (B, C, T, H, W)
    rotated, labels = rotate_all(clip)
    assert rotated.shape == (4, 2, 3, 4, 4) and labels.tolist() == [0, 1, 2, 3]
    for k in range(4):
        for c in range(2):
            for t in range(3):
                assert torch.equal(rotated[k, c, t], torch.rot90(clip[0, c, t], k))


def test_non_square_images_are_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="square images, got 4x6.*image_size"):
        rotate_all(torch.zeros(2, 1, 4, 6))
    with pytest.raises(ConfigError, match="square"):
        make()([torch.zeros(2, 1, 6, 8)])


def test_registry_and_recommendations() -> None:
    assert {"rotation", "jigsaw"} <= set(list_methods())
    cls = get_method_class("rotation")
    assert cls is Rotation and cls.n_views == 1
    assert cls.adapter_defaults == {"image": {"preset": "light"}}


def test_outputs_and_gradients_reach_every_parameter() -> None:
    method = make()
    out = method([torch.randn(5, 1, 6, 6)])
    assert set(out) == {"loss", "accuracy"}
    assert out["loss"].ndim == 0 and out["loss"].requires_grad and torch.isfinite(out["loss"])
    assert out["accuracy"].ndim == 0 and not out["accuracy"].requires_grad
    correct = out["accuracy"].item() * 20  # accuracy over the 4 x 5 rotated copies
    assert abs(correct - round(correct)) < 1e-4
    out["loss"].backward()
    for name, p in method.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert any(n.startswith("encoder.") for n, _ in method.named_parameters())


def test_overfits_a_tiny_problem() -> None:
    method = make()
    x = torch.randn(8, 1, 6, 6, generator=torch.Generator().manual_seed(1))
    opt = torch.optim.AdamW(method.parameters(), lr=3e-3)
    losses = []
    for _ in range(150):
        out = method([x])
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(out["loss"].item())
    assert losses[-1] < 0.1 * losses[0]
    method.eval()
    assert method([x])["accuracy"].item() == 1.0


def test_same_seed_same_model_and_step() -> None:
    x = torch.randn(4, 1, 6, 6)
    a, b, c = make(0), make(0), make(1)
    la, lb, lc = (m([x])["loss"] for m in (a, b, c))
    assert torch.equal(la, lb) and not torch.equal(la, lc)


@pytest.mark.parametrize("hparams, match", [
    ({"head_hidden": 8}, "unknown hyperparameter.*valid: head_hidden_dim"),
    ({"head_hidden_dim": 0}, "must be >= 1"),
    ({"head_hidden_dim": 2.5}, "must be an integer"),
])
def test_invalid_hyperparameters(hparams: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        build_method("rotation", flat_encoder(), EMBED, **hparams)


def test_wrong_inputs_are_clear_errors() -> None:
    method = make()
    with pytest.raises(ValueError, match="1 view, got 2 views"):
        method([torch.zeros(2, 1, 6, 6)] * 2)
    with pytest.raises(ValueError, match="float image batch"):
        method([torch.zeros(2, 1, 6, 6, dtype=torch.uint8)])
    with pytest.raises(ConfigError, match="embed_dim=32"):
        build_method("rotation", flat_encoder(), 32)([torch.zeros(2, 1, 6, 6)])


def test_pretrain_with_rotation_uses_light_augmentation_and_embeds_images() -> None:
    images = np.random.default_rng(0).integers(0, 255, size=(24, 12, 12), dtype=np.uint8)
    model = pretrain(images, adapter="image", method="rotation", encoder="small_cnn",
                     encoder_kwargs={"width": 0.25, "embed_dim": 16}, epochs=1, batch_size=8, progress=False)
    assert model.adapter.config["preset"] == "light"
    assert model.config["method"] == "rotation" and model.config["method_hparams"] == {"head_hidden_dim": 256}
    assert model.embed(images).shape == (24, 16)
    model = pretrain(images, adapter="image", method="rotation", encoder="small_cnn", epochs=1, batch_size=8,
                     adapter_config={"preset": "none"}, progress=False)
    assert model.adapter.config["preset"] == "none"  # the caller's choice wins


def test_pretrain_on_non_square_images_names_the_fix() -> None:
    images = np.zeros((8, 10, 12), dtype=np.uint8)
    with pytest.raises(ConfigError, match="square images, got 10x12"):
        pretrain(images, adapter="image", method="rotation", encoder="small_cnn", epochs=1, batch_size=4,
                 progress=False)
