"""Inpainting with a context encoder: fill in a hidden square of an image from its surroundings.

Reference: D. Pathak, P. Krähenbühl, J. Donahue, T. Darrell, A. A. Efros, "Context Encoders:
Feature Learning by Inpainting", CVPR 2016, https://arxiv.org/abs/1604.07379.

To paint the missing part of a picture plausibly the encoder has to understand the rest of it
(what the object is, how its parts continue), so it learns features from the pixels that were
hidden. As in the paper:

- a square region of ``mask_fraction`` of the image side (the paper: 64 of 128 px, i.e. 0.5) is
  hidden, at the centre (the paper's main setting) or, with ``random_position``, at a random
  place per image; the hidden pixels are set to 0, which in the adapter's normalised space is
  the dataset's mean colour (the paper fills with the mean pixel);
- the encoder (the one kept afterwards) embeds the masked image into its usual (B, D) vector;
  a decoder of upsampling convolutions reconstructs the image from that vector alone -- the
  embedding is the bottleneck, like the paper's channel-wise fully connected layer, so what the
  decoder needs must pass through the representation that is kept;
- the loss is the L2 error on the hidden region only (the decoder's output elsewhere is
  ignored). With ``overlap`` = p pixels the predicted region extends p pixels into the visible
  border around the hole, and those border pixels weigh ``overlap_weight`` (10) times more, which
  the paper uses for seamless boundaries (4 px at 128 px; 1 px is the same share at 32 px);
- the paper's adversarial loss (lambda_adv = 0.001) is available with ``adversarial_weight`` > 0
  and **off by default**: it makes the pictures sharper, not the features better, and costs a
  discriminator. When on, the loss is ``(1 - w) L_rec + w L_adv + L_disc``: the discriminator
  sees real images and the images with the predicted region pasted in; its own loss reaches only
  its parameters (the fakes are detached), and the generator's adversarial term is computed with
  a detached copy of its parameters, so one optimiser trains both sides correctly.

Hidden positions (``random_position``) come from a random stream derived from the method's
seed (drawn from torch's RNG at construction), a step counter and the process rank, as in
``jigsaw``: seeds reproduce runs and checkpoints resume the stream; in eval mode the positions
are fixed. ``forward(views, generator=g)`` uses ``g`` instead.
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from multissl.errors import ConfigError
from multissl.methods.pretext import PretextMethod
from multissl.methods.siamese import UNIT_INTERVAL
from multissl.methods.random_stream import init_random_stream, next_generator

#: upsampling stages of the decoder: it starts from a map of 1/2**DECODER_STAGES of the image side
DECODER_STAGES = 3


def region_geometry(height: int, width: int, mask_fraction: float, overlap: int = 0) -> Tuple[int, int]:
    """(side of the predicted square region, side of the hidden square inside it), in pixels:
    ``round(mask_fraction * min(height, width))`` and that minus ``2 * overlap``. Raises
    :class:`ConfigError` when no pixel would be hidden or the region does not fit."""
    region = int(round(mask_fraction * min(height, width)))
    hole = region - 2 * overlap
    if hole < 1 or region > min(height, width):
        raise ConfigError(f"inpainting: a {mask_fraction:g} region of {height}x{width} images is {region} px, which "
                          f"leaves no hidden pixels with overlap={overlap}; use larger images or mask_fraction, "
                          "or a smaller overlap")
    return region, hole


def region_weights(corners: torch.Tensor, height: int, width: int, region: int, overlap: int,
                   overlap_weight: float) -> Tuple[torch.Tensor, torch.Tensor]:
    """Hidden-pixel masks (B, 1, H, W) bool and loss weights (B, 1, H, W) for square regions of
    side ``region`` whose top-left corners (row, column) are ``corners`` (B, 2): weight 1 on the
    hole (the region without its ``overlap``-pixel border), ``overlap_weight`` on that border,
    0 outside the region."""
    dev = corners.device
    rows = torch.arange(height, device=dev).view(1, height, 1)
    cols = torch.arange(width, device=dev).view(1, 1, width)
    r0, c0 = corners[:, 0].view(-1, 1, 1), corners[:, 1].view(-1, 1, 1)

    def square(offset: int, side: int) -> torch.Tensor:
        return ((rows >= r0 + offset) & (rows < r0 + offset + side) & (cols >= c0 + offset)
                & (cols < c0 + offset + side))

    in_region = square(0, region)
    hole = square(overlap, region - 2 * overlap)
    weights = hole.float() + (in_region & ~hole).float() * overlap_weight
    return hole.unsqueeze(1), weights.unsqueeze(1)


def inpainting_loss(prediction: torch.Tensor, target: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Weighted mean squared error ``sum W (x_hat - x)^2 / (C sum W)`` over pixels and channels,
    with per-pixel weights ``W`` (B, 1, H, W) (0 outside the predicted region): the paper's
    masked L2 reconstruction loss, normalised per weighted pixel and channel. In float32."""
    err = (prediction.float() - target.float()).pow(2) * weights
    return err.sum() / (weights.sum() * prediction.shape[1]).clamp(min=1e-12)


class ContextDecoder(nn.Module):
    """Embedding (B, D) -> image (B, C, H, W): a linear layer to a ``dim``-channel map of
    1/8 of the image side, three (x2 bilinear upsampling, 3x3 conv, BatchNorm, ReLU) stages, a
    3x3 conv to C channels, resized to (H, W) when the side is not a multiple of 8."""

    def __init__(self, embed_dim: int, channels: int, height: int, width: int, dim: int) -> None:
        super().__init__()
        self.size = (height, width)
        scale = 2**DECODER_STAGES
        self.start = (max(1, math.ceil(height / scale)), max(1, math.ceil(width / scale)))
        self.dim = dim
        self.project = nn.Linear(embed_dim, dim * self.start[0] * self.start[1])
        self.stages = nn.ModuleList(
            nn.Sequential(nn.Conv2d(dim, dim, 3, padding=1, bias=False), nn.BatchNorm2d(dim), nn.ReLU(inplace=True))
            for _ in range(DECODER_STAGES))
        self.out = nn.Conv2d(dim, channels, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.project(z)).view(z.shape[0], self.dim, *self.start)
        for stage in self.stages:
            h = stage(F.interpolate(h, scale_factor=2, mode="bilinear", align_corners=False))
        h = self.out(h)
        if tuple(h.shape[-2:]) != self.size:
            h = F.interpolate(h, size=self.size, mode="bilinear", align_corners=False)
        return h


class Discriminator(nn.Module):
    """Real image or image with an inpainted region? Two strided 4x4 convs with LeakyReLU,
    global average pooling, a linear logit. No BatchNorm: the generator's term runs it with
    detached parameters through ``torch.func.functional_call``, which must not touch BN statistics."""

    def __init__(self, channels: int, dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(channels, dim, 4, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True),
                                 nn.Conv2d(dim, 2 * dim, 4, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True),
                                 nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * dim, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(1)


class Inpainting(PretextMethod):
    """Context encoder: the encoder embeds the masked image, :class:`ContextDecoder` paints the
    hidden region; masked L2 loss (+ optional adversarial loss, off by default).

    Returns ``{"loss", "reconstruction"}`` (+ ``"adversarial"``, ``"discriminator"`` when
    ``adversarial_weight > 0``). The decoder is built at the first batch (it needs the image
    size and channels, unless ``image_shape=(C, H, W)`` is given), initialised from the method's
    seed; build the optimiser after it exists -- the Trainer does, as :meth:`bind_adapter` builds
    it for the adapter's image size.

    Example::

        >>> method = Inpainting(encoder, embed_dim=256)   # centre square of half the side
        >>> out = method([images])                        # normalised float (B, C, H, W)
        >>> out["loss"].backward()
        >>> pictures = method.inpaint(images)             # {"masked", "inpainted"}
    """

    name = "inpainting"
    hparam_defaults = {
        "mask_fraction": 0.5,
        "random_position": False,
        "overlap": None,           # None: predict the hole only; p: also a p-pixel visible border
        "overlap_weight": 10.0,
        "decoder_dim": 64,
        "adversarial_weight": 0.0,  # the paper: 0.001; off by default
    }
    hparam_rules = {
        "mask_fraction": ("in (0, 1)", lambda v: 0.0 < v < 1.0),
        "adversarial_weight": UNIT_INTERVAL,
    }

    def __init__(self, encoder: nn.Module, embed_dim: int, image_shape: Optional[Tuple[int, int, int]] = None,
                 **hparams: Any) -> None:
        super().__init__(encoder, embed_dim, **hparams)
        init_random_stream(self)
        self.decoder: Optional[ContextDecoder] = None
        self.discriminator: Optional[Discriminator] = None
        self.image_shape: Optional[Tuple[int, int, int]] = None
        if image_shape is not None:
            self.build_decoder(*image_shape)

    # ---- construction -------------------------------------------------------------------------
    def build_decoder(self, channels: int, height: int, width: int) -> None:
        """Create the decoder (and discriminator) for (C, H, W) images; checks the region fits."""
        hp = self._hparams
        region_geometry(height, width, hp["mask_fraction"], hp["overlap"] or 0)
        if self.image_shape == (channels, height, width):
            return
        if self.image_shape is not None:
            raise ConfigError(f"inpainting was built for {self.image_shape} images, got {(channels, height, width)}; "
                              "resize them to one size (the image adapter's image_size)")
        device = self.rng_seed.device
        self.image_shape = (channels, height, width)
        # initialised from the method's own seed, not from whatever torch's RNG holds at the first
        # batch: the same seed gives the same decoder however the method was built and called
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(self.rng_seed) % (2**63 - 1))
            self.decoder = ContextDecoder(self.embed_dim, channels, height, width, hp["decoder_dim"]).to(device)
            if hp["adversarial_weight"] > 0:
                self.discriminator = Discriminator(channels, hp["decoder_dim"]).to(device)

    def bind_adapter(self, adapter: Any) -> None:
        """Build the decoder for the adapter's image size and channels before the optimiser is made."""
        config = getattr(adapter, "config", {}) or {}
        size, channels = config.get("image_size"), config.get("channels")
        if size is not None and channels is not None:
            h, w = (size, size) if isinstance(size, int) else size
            self.build_decoder(int(channels), int(h), int(w))

    # ---- masking ------------------------------------------------------------------------------
    def make_masks(self, x: torch.Tensor, generator: Optional[torch.Generator] = None
                   ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(masked images, hidden (B, 1, H, W) bool, loss weights (B, 1, H, W))`` for ``x``."""
        hp = self._hparams
        b, _, height, width = x.shape
        overlap = hp["overlap"] or 0
        region, _ = region_geometry(height, width, hp["mask_fraction"], overlap)
        if hp["random_position"]:
            g = generator if generator is not None else next_generator(self, x.device)
            corners = torch.stack([torch.randint(0, height - region + 1, (b,), generator=g, device=x.device),
                                   torch.randint(0, width - region + 1, (b,), generator=g, device=x.device)], dim=1)
        else:
            corners = torch.tensor([(height - region) // 2, (width - region) // 2], device=x.device).expand(b, 2)
        hidden, weights = region_weights(corners, height, width, region, overlap, hp["overlap_weight"])
        return x.masked_fill(hidden, 0.0), hidden, weights

    # ---- training -----------------------------------------------------------------------------
    def reconstruct(self, masked: torch.Tensor) -> torch.Tensor:
        """The decoder's image (B, C, H, W) from the encoder's embedding of ``masked``."""
        self.build_decoder(*masked.shape[1:])
        return self.decoder(self.encode(masked))

    def forward(self, views: List[Any], generator: Optional[torch.Generator] = None) -> Dict[str, torch.Tensor]:
        x = self.single_view(views)
        if x.ndim != 4:
            raise ValueError(f"inpainting needs images (B, C, H, W), got shape {tuple(x.shape)}")
        masked, hidden, weights = self.make_masks(x, generator)
        prediction = self.reconstruct(masked)
        rec = inpainting_loss(prediction, x, weights)
        out = {"reconstruction": rec.detach()}
        w_adv = self._hparams["adversarial_weight"]
        if w_adv <= 0:
            out["loss"] = rec
            return out
        region = weights > 0
        fake = torch.where(region, prediction.to(x.dtype), x)
        d_real, d_fake = self.discriminator(x), self.discriminator(fake.detach())
        d_loss = F.softplus(-d_real.float()).mean() + F.softplus(d_fake.float()).mean()  # BCE, real=1, fake=0
        frozen = {k: v.detach() for k, v in self.discriminator.named_parameters()}
        g_loss = F.softplus(-functional_call(self.discriminator, frozen, (fake,)).float()).mean()
        out.update(loss=(1.0 - w_adv) * rec + w_adv * g_loss + d_loss, adversarial=g_loss.detach(),
                   discriminator=d_loss.detach())
        return out

    @torch.no_grad()
    def inpaint(self, x: torch.Tensor, generator: Optional[torch.Generator] = None) -> Dict[str, torch.Tensor]:
        """``{"masked", "inpainted"}`` for normalised images ``x``: the encoder's input, and the
        image with the predicted pixels in the hidden region (normalised space)."""
        masked, hidden, _ = self.make_masks(x, generator)
        prediction = self.reconstruct(masked)
        return {"masked": masked, "inpainted": torch.where(hidden, prediction.to(x.dtype), x)}


__all__ = ["ContextDecoder", "Discriminator", "Inpainting", "inpainting_loss", "region_geometry", "region_weights"]
