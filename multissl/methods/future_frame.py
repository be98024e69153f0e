"""Future-frame prediction: from the first frames of a clip, predict the frames that follow.

References: N. Srivastava, E. Mansimov, R. Salakhutdinov, "Unsupervised Learning of Video
Representations using LSTMs", ICML 2015 (the future predictor on Moving MNIST, whose encoder
is what transfers); the loss and metric are the per-frame MSE of the field as OpenSTL reports
it (Tan et al. 2023): squared error summed over C x H x W with pixels in [0, 1], averaged over
batch and time (:func:`multissl.evaluation.video_prediction.per_frame_mse`).

The encoder sees the ``context_frames`` first frames (B, C, k, H, W). A small decoder turns its
last feature map -- ``encoder.features(x)`` (B, D, t, h, w) when the encoder has a
``features`` module, as the video adapter's ``c3d_small`` does; otherwise the embedding
(B, D) as a 1x1 map -- averaged over time into ``future_frames`` frames: 2D convolutions
upsampling to the frame size, with the last context frame fed to the last layer (a skip
connection). The decoder predicts the **change** from the last context frame, its last layer
initialised at zero: training starts from the copy-last-frame baseline, and whatever does not
move need not pass through the bottleneck. Predictions are clamped to pixels in [0, 1]; the targets are the view's future frames turned
back into pixels with the adapter's mean and std (:meth:`bind_adapter`, called by the Trainer).
Only the encoder is kept by ``pretrain``; the decoder lives in checkpoints.

``past_frames`` > 0 makes the task bidirectional: the clip is ``past`` + ``context`` +
``future`` frames, and a second decoder of the same design predicts the ``past_frames`` frames
*before* the context from the same feature map, starting from the *first* context frame (nearest
frame first). An encoder trained only on the future needs to represent how a clip *ends*; asked
for the past as well, it must also represent how the clip *began* (e.g. the initial direction of
motion). The loss is the per-frame MSE over all predicted frames, past and future alike.
"""
from __future__ import annotations

from typing import Any, Dict, List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from multissl.errors import ConfigError
from multissl.evaluation.video_prediction import per_frame_mse
from multissl.methods.pretext import PretextMethod


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class FrameDecoder(nn.Module):
    """Feature map (B, D, h, w) + last context frame -> (B, future, C, H, W) pixel predictions.

    The prediction is the last context frame (pixels) plus a change the network computes; the
    last layer starts at zero, so an untrained decoder is exactly the copy-last-frame baseline
    and learns the motion from there. Outputs are not clamped (the loss keeps its gradient);
    :meth:`FutureFrame.predict` clamps them to [0, 1].
    """

    def __init__(self, in_dim: int, channels: int, future_frames: int, width: int = 64) -> None:
        super().__init__()
        self.channels, self.future_frames = int(channels), int(future_frames)
        self.reduce = _block(in_dim, width)
        self.up1 = _block(width, width)
        self.up2 = _block(width, width // 2)
        self.last = nn.Conv2d(width // 2, self.future_frames * self.channels, 1)
        nn.init.zeros_(self.last.weight)
        nn.init.zeros_(self.last.bias)
        self.fuse = _block(width // 2 + channels, width // 2)

    def forward(self, z: torch.Tensor, last_input: torch.Tensor, last_pixels: torch.Tensor) -> torch.Tensor:
        """``last_input``: the last frame as the encoder saw it (normalised); ``last_pixels``: in [0, 1]."""
        H, W = last_input.shape[-2:]
        h = self.reduce(z)
        h = self.up1(F.interpolate(h, size=(max(1, H // 4), max(1, W // 4)), mode="bilinear", align_corners=False))
        h = self.up2(F.interpolate(h, size=(max(1, H // 2), max(1, W // 2)), mode="bilinear", align_corners=False))
        h = F.interpolate(h, size=(H, W), mode="bilinear", align_corners=False)
        delta = self.last(self.fuse(torch.cat([h, last_input], dim=1))).float()
        return last_pixels.float().unsqueeze(1) + delta.view(-1, self.future_frames, self.channels, H, W)


class FutureFrame(PretextMethod):
    """Encoder + :class:`FrameDecoder` predicting ``future_frames`` frames from ``context_frames``.

    Views are clips (B, C, T, H, W) with ``T >= context_frames + future_frames``; frames after
    the first ``context_frames + future_frames`` are ignored. Returns ``{"loss", "mse"}`` where
    both are the per-frame MSE (pixels in [0, 1], summed over C x H x W, averaged over batch and
    predicted frames; ``loss`` on the raw predictions, so that it keeps a gradient beyond [0, 1],
``mse`` on the clamped ones as reported), and the copy-last-frame baseline's ``copy_last_mse``
on the same batch.

    Example::

        >>> method = FutureFrame(encoder, embed_dim=256, context_frames=10, future_frames=10)
        >>> method.set_normalization([0.05], [0.2])   # done by the Trainer (bind_adapter)
        >>> out = method([clips])                     # clips: normalised float (B, C, 20, H, W)
        >>> out["loss"].backward(); out["mse"]
        >>> frames = method.predict(clips[:, :, :10]) # (B, 10, C, H, W) pixels in [0, 1]
    """

    name = "future_frame"
    hparam_defaults = {"context_frames": 10, "future_frames": 10, "decoder_width": 64, "past_frames": 0}
    hparam_rules = {"decoder_width": ("an even integer >= 2", lambda v: v >= 2 and v % 2 == 0)}
    adapter_defaults = {"video": {"preset": "light"}}

    def __init__(self, encoder: nn.Module, embed_dim: int, **hparams: Any) -> None:
        super().__init__(encoder, embed_dim, **hparams)
        hp = self._hparams
        # the frames' channels: those the encoder's first convolution takes (1 if it has none)
        convs = [m for m in encoder.modules() if isinstance(m, (nn.Conv3d, nn.Conv2d))]
        self.channels = int(convs[0].in_channels) if convs else 1
        self.register_buffer("input_mean", torch.zeros(self.channels))
        self.register_buffer("input_std", torch.ones(self.channels))
        self.decoder = FrameDecoder(self._feature_dim(), self.channels, hp["future_frames"], hp["decoder_width"])
        # only when asked for, so that future-only checkpoints keep their keys
        self.past_decoder = (FrameDecoder(self._feature_dim(), self.channels, hp["past_frames"], hp["decoder_width"])
                             if hp["past_frames"] else None)

    # ---- normalisation ------------------------------------------------------------------------
    def bind_adapter(self, adapter: Any) -> None:
        """Take the (fitted) video adapter's per-channel mean and std, so that views can be
        turned back into pixels in [0, 1]. Called by the Trainer before training."""
        config = getattr(adapter, "config", {}) or {}
        if config.get("channels") not in (None, self.channels):
            raise ConfigError(f"method 'future_frame': the encoder takes {self.channels}-channel frames but the "
                              f"adapter's have {config['channels']}")
        if config.get("mean") is not None and config.get("std") is not None:
            self.set_normalization(config["mean"], config["std"])

    def set_normalization(self, mean: Sequence[float], std: Sequence[float]) -> None:
        """Views are ``(pixels - mean) / std`` per channel."""
        mean = torch.as_tensor(mean, dtype=torch.float32).flatten().expand(self.channels)
        std = torch.as_tensor(std, dtype=torch.float32).flatten().expand(self.channels)
        if (std <= 0).any():
            raise ConfigError(f"future_frame: normalisation std must be positive, got {std.tolist()}")
        self.input_mean.copy_(mean)
        self.input_std.copy_(std)

    def to_pixels(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised clips (B, C, T, H, W) -> frames (B, T, C, H, W) in [0, 1]."""
        shape = (1, self.channels, 1, 1, 1)
        pix = x.float() * self.input_std.view(shape) + self.input_mean.view(shape)
        return pix.clamp(0.0, 1.0).permute(0, 2, 1, 3, 4)

    # ---- model --------------------------------------------------------------------------------
    def _feature_dim(self) -> int:
        features = getattr(self.encoder, "features", None)
        if isinstance(features, nn.Module):
            outs = [m.out_channels for m in features.modules() if isinstance(m, (nn.Conv3d, nn.Conv2d))]
            if outs:
                return int(outs[-1])
        return self.embed_dim

    def feature_map(self, context: torch.Tensor) -> torch.Tensor:
        """The encoder's last feature map of ``context`` (B, C, k, H, W), averaged over time: (B, D, h, w)."""
        features = getattr(self.encoder, "features", None)
        if isinstance(features, nn.Module):
            z = features(context)
            if z.ndim == 5:
                return z.mean(dim=2)
            if z.ndim == 4:
                return z
        return self.encode(context)[:, :, None, None]

    def _check(self, context: torch.Tensor) -> None:
        if context.ndim != 5 or context.shape[1] != self.channels:
            raise ValueError(f"future_frame needs clips (B, {self.channels}, T, H, W), got {tuple(context.shape)}")

    def _decode(self, decoder: FrameDecoder, z: torch.Tensor, context: torch.Tensor, frame: int,
                clamp: bool) -> torch.Tensor:
        """``decoder`` on the feature map ``z``, from the context's frame ``frame`` (-1: the last)."""
        start = context[:, :, frame]  # (B, C, H, W), as the encoder saw it
        pred = decoder(z, start, self.to_pixels(start.unsqueeze(2))[:, 0])
        return pred.clamp(0.0, 1.0) if clamp else pred

    def predict(self, context: torch.Tensor, clamp: bool = True) -> torch.Tensor:
        """Normalised context clips (B, C, k, H, W) -> predicted frames (B, future, C, H, W),
        clamped to [0, 1] unless ``clamp=False`` (the training loss uses the raw values)."""
        self._check(context)
        return self._decode(self.decoder, self.feature_map(context), context, -1, clamp)

    def predict_past(self, context: torch.Tensor, clamp: bool = True) -> torch.Tensor:
        """Normalised context clips (B, C, k, H, W) -> the ``past_frames`` frames before them
        (B, past, C, H, W), nearest first (index 0 is the frame just before the context)."""
        if self.past_decoder is None:
            raise ConfigError("future_frame: predict_past needs past_frames > 0")
        self._check(context)
        return self._decode(self.past_decoder, self.feature_map(context), context, 0, clamp)

    def split(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Clips (B, C, T, H, W) -> (normalised context (B, C, k, H, W), future pixels (B, f, C, H, W),
        past pixels (B, p, C, H, W), nearest first; p = ``past_frames``, empty when 0)."""
        p, k, f = (self._hparams[n] for n in ("past_frames", "context_frames", "future_frames"))
        if x.ndim != 5:
            raise ValueError(f"future_frame needs clips (B, C, T, H, W), got shape {tuple(x.shape)}")
        if x.shape[2] < p + k + f:
            past = f"{p} past + " if p else ""
            raise ConfigError(f"future_frame: clips of {x.shape[2]} frames are too short for {past}{k} context + "
                              f"{f} future frames; set the video adapter's clip_length to at least {p + k + f} "
                              "(videos need that many frames) or lower past_frames / context_frames / future_frames")
        past = self.to_pixels(x[:, :, :p].flip(2))
        return x[:, :, p:p + k], self.to_pixels(x[:, :, p + k:p + k + f]), past

    def forward(self, views: List[Any]) -> Dict[str, torch.Tensor]:
        context, future, past = self.split(self.single_view(views))
        self._check(context)
        z = self.feature_map(context)  # once, for both decoders
        raw = self._decode(self.decoder, z, context, -1, clamp=False)
        out = {"loss": per_frame_mse(raw, future)}
        with torch.no_grad():
            out["mse"] = per_frame_mse(raw.clamp(0.0, 1.0), future)
            out["copy_last_mse"] = per_frame_mse(self.to_pixels(context[:, :, -1:]).expand_as(future), future)
        if self.past_decoder is not None:
            raw_past = self._decode(self.past_decoder, z, context, 0, clamp=False)
            f, p = future.shape[1], past.shape[1]  # the loss: the mean over every predicted frame
            out["loss"] = (f * out["loss"] + p * per_frame_mse(raw_past, past)) / (f + p)
            with torch.no_grad():
                out["past_mse"] = per_frame_mse(raw_past.clamp(0.0, 1.0), past)
        return out


__all__ = ["FutureFrame", "FrameDecoder"]
