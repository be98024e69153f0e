"""Frame order (arrow of time / shuffle and learn): exact variants and labels, no static leak,
training, seeds, errors, pretrain() on clips."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from multissl import pretrain
from multissl.errors import ConfigError
from multissl.methods import build_method, get_method_class, list_methods
from multissl.methods.frame_order import FrameOrder, order_variants, random_shuffles

EMBED = 16


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def flat_encoder(frames: int = 4, side: int = 3) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(frames * side * side, 32), nn.ReLU(), nn.Linear(32, EMBED))


def make(seed: int = 0, frames: int = 4, **hparams) -> FrameOrder:
    torch.manual_seed(seed)
    return build_method("frame_order", flat_encoder(frames), EMBED, head_hidden_dim=16, **hparams)


def numbered_clips(batch: int = 2, frames: int = 4, side: int = 3) -> torch.Tensor:
    """Frame t of clip b is filled with 10 * b + t, so the order can be read off the values."""
    values = 10 * torch.arange(batch).view(-1, 1) + torch.arange(frames).view(1, -1)
    return values.float().view(batch, 1, frames, 1, 1).expand(batch, 1, frames, side, side).clone()


def frame_values(clips: torch.Tensor) -> list:
    return clips[:, 0, :, 0, 0].long().tolist()


def test_variants_and_labels_are_exact() -> None:
    x = numbered_clips()
    g = torch.Generator().manual_seed(0)
    clips, labels = order_variants(x, arrow=True, shuffled=True, generator=g)
    assert clips.shape == (6, 1, 4, 3, 3) and labels.tolist() == [0, 0, 1, 1, 2, 2]
    rows = frame_values(clips)
    assert rows[:2] == [[0, 1, 2, 3], [10, 11, 12, 13]]          # forward
    assert rows[2:4] == [[3, 2, 1, 0], [13, 12, 11, 10]]          # reversed
    for b, row in enumerate(rows[4:]):                            # shuffled: same frames, other order
        assert sorted(row) == [10 * b + t for t in range(4)]
        assert row not in ([10 * b + t for t in range(4)], [10 * b + t for t in reversed(range(4))])
    # spatial content is untouched: every frame of every copy is a constant image
    assert torch.equal(clips, clips[:, :, :, :1, :1].expand_as(clips))


def test_modes_choose_the_classes() -> None:
    x = numbered_clips()
    clips, labels = order_variants(x, arrow=True, shuffled=False)
    assert labels.tolist() == [0, 0, 1, 1] and frame_values(clips)[2] == [3, 2, 1, 0]
    clips, labels = order_variants(x, arrow=False, shuffled=True, generator=torch.Generator().manual_seed(1))
    assert labels.tolist() == [0, 0, 1, 1] and frame_values(clips)[0] == [0, 1, 2, 3]
    assert make(arrow=False).num_classes == 2 and make().num_classes == 3


def test_shuffles_are_never_the_identity_or_the_reversal() -> None:
    perm = random_shuffles(2000, 3, torch.Generator().manual_seed(0))
    rows = {tuple(r) for r in perm.tolist()}
    # of the 6 orders of 3 frames, exactly the 4 others occur
    assert rows == {(0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1)}
    assert torch.equal(random_shuffles(5, 6, torch.Generator().manual_seed(3)),
                       random_shuffles(5, 6, torch.Generator().manual_seed(3)))


def test_a_static_clip_looks_the_same_in_every_ordering() -> None:
    """Only motion tells the orderings apart: a still clip gives identical inputs, so the loss
    is exactly that of the head's output on one input, and accuracy is at chance."""
    still = torch.rand(3, 1, 1, 3, 3).expand(3, 1, 4, 3, 3).contiguous()
    clips, labels = order_variants(still, arrow=True, shuffled=True, generator=torch.Generator().manual_seed(0))
    for v in range(1, 3):
        assert torch.equal(clips[v * 3:(v + 1) * 3], clips[:3])
    m = make().eval()
    with torch.no_grad():
        logits = m.head(m.encode(clips))
    assert torch.allclose(logits[:3], logits[3:6]) and torch.allclose(logits[:3], logits[6:])


def test_gradients_reach_encoder_and_head_and_training_learns_order() -> None:
    m = make(seed=0, frames=6)
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    first = None
    for step in range(60):
        x = torch.randn(16, 1, 1, 3, 3, generator=g) + torch.linspace(-1, 1, 6).view(1, 1, 6, 1, 1)  # a ramp = motion
        out = m([x])
        opt.zero_grad()
        out["loss"].backward()
        if step == 0:
            assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in m.encoder.parameters())
            assert all(p.grad is not None for p in m.head.parameters())
            first = float(out["loss"].detach())
        opt.step()
    assert first == pytest.approx(np.log(3), abs=0.3)
    m.eval()
    with torch.no_grad():
        x = torch.randn(64, 1, 1, 3, 3, generator=g) + torch.linspace(-1, 1, 6).view(1, 1, 6, 1, 1)
        assert float(m([x])["accuracy"]) > 0.9


def test_seed_reproduces_the_shuffles_and_the_loss() -> None:
    x = numbered_clips(batch=4, frames=5)
    a, b = make(seed=3, frames=5), make(seed=3, frames=5)
    assert [float(a([x])["loss"]) for _ in range(3)] == [float(b([x])["loss"]) for _ in range(3)]
    c = make(seed=4, frames=5)
    assert float(c.rng_seed) != float(a.rng_seed)


@pytest.mark.parametrize("hparams, frames, match", [
    ({"arrow": False, "shuffled": False}, 4, "nothing to predict"),
    ({"arrow": 1}, 4, "must be a boolean"),
    ({"order": True}, 4, "unknown hyperparameter"),
])
def test_bad_config_raises_config_error(hparams, frames, match) -> None:
    with pytest.raises(ConfigError, match=match):
        make(frames=frames, **hparams)


def test_too_short_clips_are_a_config_error() -> None:
    m = make(frames=2)
    with pytest.raises(ConfigError, match="at least 3 frames, got 2"):
        m([torch.zeros(2, 1, 2, 3, 3)])
    assert float(make(frames=2, shuffled=False)([torch.randn(2, 1, 2, 3, 3)])["loss"]) > 0


def test_registered_and_pretrains_on_clips() -> None:
    assert "frame_order" in list_methods() and get_method_class("frame_order") is FrameOrder
    clips = np.random.default_rng(0).integers(0, 255, (8, 6, 8, 8), dtype=np.uint8)
    model = pretrain(clips, adapter="video", method="frame_order", epochs=1, batch_size=4, progress=False,
                     encoder_kwargs={"width": 4})
    assert model.adapter.config["preset"] == "light"  # the method's recommended augmentation
    assert model.embed(clips).shape == (8, model.embed_dim)
