"""Future-frame prediction: the split into context and targets, the loss is the field's
per-frame MSE in pixels, gradients, seeds, errors, pretrain() on clips."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from multissl import pretrain
from multissl.adapters.video_encoders import SmallC3D
from multissl.errors import ConfigError
from multissl.evaluation.video_prediction import per_frame_mse
from multissl.methods import build_method, get_method_class
from multissl.methods.future_frame import FutureFrame


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def make(seed: int = 0, **hparams) -> FutureFrame:
    torch.manual_seed(seed)
    enc = SmallC3D(1, 4)
    return build_method("future_frame", enc, enc.embed_dim, **{"decoder_width": 8, **hparams})


def test_split_takes_context_and_turns_future_into_pixels() -> None:
    m = make(context_frames=2, future_frames=3)
    m.set_normalization([0.5], [0.25])
    pixels = torch.rand(2, 1, 6, 8, 8)              # (B, C, T, H, W) in [0, 1]
    x = (pixels - 0.5) / 0.25                        # what the adapter feeds
    context, future, _ = m.split(x)
    assert torch.equal(context, x[:, :, :2])          # the 6th frame is ignored
    assert future.shape == (2, 3, 1, 8, 8)
    assert torch.allclose(future, pixels[:, :, 2:5].permute(0, 2, 1, 3, 4), atol=1e-6)


def test_loss_is_the_per_frame_mse_of_the_prediction() -> None:
    m = make(context_frames=3, future_frames=2).eval()
    x = torch.rand(3, 1, 5, 16, 16)
    with torch.no_grad():
        out = m([x])
        context, future, _ = m.split(x)
        pred = m.predict(context)
    assert pred.shape == (3, 2, 1, 16, 16) and 0 <= float(pred.min()) and float(pred.max()) <= 1
    assert float(out["mse"]) == pytest.approx(float(per_frame_mse(pred, future)), rel=1e-6)
    raw = m.predict(context, clamp=False)
    assert float(out["loss"]) == pytest.approx(float(per_frame_mse(raw, future)), rel=1e-6)
    # copy-last baseline on the same batch, by hand: the last context frame vs each future frame
    last = x[:, :, 2].clamp(0, 1)
    by_hand = sum(((last - x[:, :, t].clamp(0, 1)) ** 2).flatten(1).sum(1).mean() for t in (3, 4)) / 2
    assert float(out["copy_last_mse"]) == pytest.approx(float(by_hand), rel=1e-5)


def test_past_frames_split_nearest_first_and_loss_is_the_mean_over_all_predicted_frames() -> None:
    m = make(past_frames=2, context_frames=3, future_frames=4).eval()
    x = torch.rand(3, 1, 10, 16, 16)                 # frames 0-1 past, 2-4 context, 5-8 future, 9 ignored
    context, future, past = m.split(x)
    assert torch.equal(context, x[:, :, 2:5])
    assert torch.allclose(future, x[:, :, 5:9].clamp(0, 1).permute(0, 2, 1, 3, 4))
    # nearest first: past[:, 0] is frame 1 (just before the context), past[:, 1] is frame 0
    assert torch.allclose(past[:, 0, 0], x[:, 0, 1].clamp(0, 1)) and torch.allclose(past[:, 1, 0], x[:, 0, 0].clamp(0, 1))
    calls = []
    hook = m.encoder.features.register_forward_hook(lambda *_: calls.append(1))
    with torch.no_grad():
        out = m([x])
        assert len(calls) == 1  # one encoder pass feeds both decoders
        raw_f, raw_p = m.predict(context, clamp=False), m.predict_past(context, clamp=False)
    hook.remove()
    by_hand = (4 * per_frame_mse(raw_f, future) + 2 * per_frame_mse(raw_p, past)) / 6
    assert float(out["loss"]) == pytest.approx(float(by_hand), rel=1e-6)
    assert float(out["past_mse"]) == pytest.approx(float(per_frame_mse(raw_p.clamp(0, 1), past)), rel=1e-6)
    assert float(out["mse"]) == pytest.approx(float(per_frame_mse(raw_f.clamp(0, 1), future)), rel=1e-6)
    # an untrained past decoder copies the first context frame backwards
    first = x[:, :, 2].clamp(0, 1)
    copy_first = sum(((first - x[:, :, t].clamp(0, 1)) ** 2).flatten(1).sum(1).mean() for t in (1, 0)) / 2
    assert float(out["past_mse"]) == pytest.approx(float(copy_first), rel=1e-5)


def test_past_frames_trains_both_decoders_and_defaults_to_future_only() -> None:
    m = make(past_frames=3, context_frames=3, future_frames=2)
    x = torch.zeros(4, 1, 8, 16, 16)                 # a square moving right: the past is to the left
    for t in range(8):
        x[:, :, t, 4:8, t + 2:t + 6] = 1.0
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    first = None
    for step in range(30):
        out = m([x])
        opt.zero_grad()
        out["loss"].backward()
        if step == 1:
            assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in m.past_decoder.last.parameters())
        opt.step()
        first = float(out["past_mse"]) if first is None else first
    assert float(out["past_mse"]) < 0.5 * first
    plain = make()
    assert plain.past_decoder is None and not any(k.startswith("past_decoder") for k in plain.state_dict())
    with pytest.raises(ConfigError, match="predict_past needs past_frames > 0"):
        plain.predict_past(torch.zeros(1, 1, 10, 16, 16))
    with pytest.raises(ConfigError, match="too short for 5 past \\+ 10 context \\+ 10 future frames"):
        make(past_frames=5)([torch.zeros(2, 1, 20, 16, 16)])


def test_an_untrained_predictor_is_the_copy_last_frame_baseline() -> None:
    m = make(context_frames=3, future_frames=2)
    out = m([torch.rand(3, 1, 5, 16, 16)])
    assert float(out["loss"]) == pytest.approx(float(out["copy_last_mse"]), rel=1e-6)


def test_gradients_reach_encoder_and_decoder_and_training_lowers_the_loss() -> None:
    m = make(context_frames=4, future_frames=4)
    # a bright square moving one pixel right per frame: predictable, and copying the last frame is wrong
    x = torch.zeros(4, 1, 8, 16, 16)
    for t in range(8):
        x[:, :, t, 4:8, t + 2:t + 6] = 1.0
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    losses = []
    for step in range(30):
        out = m([x])
        opt.zero_grad()
        out["loss"].backward()
        if step == 1:  # the decoder's last layer starts at zero, so the encoder's gradient from step 2
            assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in m.encoder.parameters())
            assert all(p.grad is not None for p in m.decoder.parameters())
        opt.step()
        losses.append(float(out["loss"].detach()))
    assert losses[-1] < 0.5 * losses[0]


def test_seed_reproduces() -> None:
    x = torch.rand(2, 1, 20, 16, 16)

    def after_two_steps(seed: int) -> float:
        m = make(seed=seed)
        opt = torch.optim.SGD(m.parameters(), lr=1e-3)
        for _ in range(2):
            opt.zero_grad()
            m([x])["loss"].backward()
            opt.step()
        return float(m([x])["loss"].detach())

    assert after_two_steps(1) == after_two_steps(1)
    assert after_two_steps(1) != after_two_steps(2)


def test_clips_too_short_for_10_to_10_are_a_config_error() -> None:
    m = make()
    with pytest.raises(ConfigError, match="clips of 12 frames are too short for 10 context \\+ 10 future"):
        m([torch.zeros(2, 1, 12, 16, 16)])
    with pytest.raises(ValueError, match="needs clips \\(B, 1, T, H, W\\), got \\(2, 3, 10, 16, 16\\)"):
        m([torch.zeros(2, 3, 20, 16, 16)])  # 3-channel clips for a 1-channel encoder
    with pytest.raises(ConfigError, match="decoder_width"):
        make(decoder_width=7)
    with pytest.raises(ConfigError, match="must be >= 1"):
        make(future_frames=0)


def test_bind_adapter_takes_mean_and_std_and_checks_channels() -> None:
    m = make()

    class Fake:
        config = {"channels": 1, "mean": [0.2], "std": [0.4]}

    m.bind_adapter(Fake())
    assert m.input_mean.tolist() == pytest.approx([0.2]) and m.input_std.tolist() == pytest.approx([0.4])
    Fake.config = {"channels": 3, "mean": [0.2] * 3, "std": [0.4] * 3}
    with pytest.raises(ConfigError, match="1-channel frames but the adapter's have 3"):
        m.bind_adapter(Fake())


def test_registered_and_pretrains_through_the_video_adapter() -> None:
    assert get_method_class("future_frame") is FutureFrame
    clips = np.random.default_rng(0).integers(0, 255, (6, 6, 8, 8), dtype=np.uint8)
    model = pretrain(clips, adapter="video", method="future_frame", epochs=1, batch_size=3, progress=False,
                     encoder_kwargs={"width": 4}, method_kwargs={"context_frames": 3, "future_frames": 3,
                                                                 "decoder_width": 8})
    assert model.embed(clips).shape == (6, model.embed_dim)
