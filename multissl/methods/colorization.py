"""Colorization: predict the colours (ab in CIE Lab) of an image from its lightness (L).

Reference: R. Zhang, P. Isola, A. A. Efros, "Colorful Image Colorization", ECCV 2016,
https://arxiv.org/abs/1603.08511.

To colour a grayscale picture plausibly the network has to recognise what is in it (grass is
green, sky is blue, a tomato is red), so the encoder learns semantic features from the
colours that come for free with every image. As in the paper:

- the images are converted to CIE Lab on the training device (:mod:`multissl.methods.lab_color`);
  the encoder sees L only, the target is ab;
- ab space is quantised into a grid of ``grid``-wide cells (10, as in the paper); only the cells
  that some sRGB colour falls into are classes (:func:`ab_gamut_bins`: 261 with grid 10; the
  paper's 313 come from its own gamut computation, which we do not copy);
- the target of each pixel is a soft encoding of its true ab over the ``neighbors`` (5) nearest
  bin centres, with Gaussian weights of width ``sigma`` (5) (:func:`soft_encode`);
- the loss is the cross-entropy between the predicted distribution and the soft target, each
  pixel weighted by the rarity of its colour when ``rebalance`` is on (:func:`rebalance_weights`,
  mixing lambda 0.5): without it, the prediction drifts to the desaturated colours that dominate
  natural images;
- a picture is decoded with the annealed mean (temperature 0.38, :func:`annealed_mean`), between
  the mode (vivid but patchy) and the mean (smooth but greyish).

Two choices for a toolkit whose encoder must remain an ordinary image encoder returning (B, D):

- **Input: L replicated to the encoder's channels**, not a one-channel stem. The encoder is later
  used on colour images (fine-tuning, probing, ``SSLModel.embed``): with three input channels
  that carry the same gray image during pretraining, an RGB image afterwards is a small shift in
  the same input space (a gray image is an RGB image with R = G = B), and no layer has to be
  replaced. L / 100 is used as the gray intensity and normalised with the adapter's per-channel
  statistics, like every RGB image the encoder sees.
- **Dense head on the encoder's last feature map** (``encoder.forward_features``, exposed by the
  ResNets and ``small_cnn``): colour is a per-pixel answer, and the feature map keeps the layout
  that a pooled vector throws away. The head (conv, upsampling to 1/``output_stride`` of the
  input, as the paper predicts at 1/4 resolution, conv, 1x1 classifier) is dropped after
  pretraining. Encoders without ``forward_features`` get a decoder from the pooled (B, D)
  embedding to a 4x4 map instead, so any encoder works, with less spatial detail.

The method needs the RGB pixels back from the normalised views: the Trainer hands it the
fitted adapter (:meth:`bind_adapter`), whose mean and std it inverts. A pixel-wise
``accuracy`` (most probable bin == the true colour's nearest bin) is reported next to the loss;
the class frequencies behind the rebalancing are counted over the training batches as they come
(a buffer, so checkpoints keep it), which needs no pass over the data beforehand.
"""
from __future__ import annotations

import functools
import math
from typing import Any, Dict, List, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from multissl.errors import ConfigError
from multissl.methods.lab_color import lab_to_rgb, rgb_to_lab
from multissl.methods.pretext import PretextMethod
from multissl.methods.siamese import POSITIVE, UNIT_INTERVAL

#: grid cells per ab axis are searched within this range (sRGB's ab stays inside +-110)
AB_RANGE = 110.0
#: the decoder from a pooled embedding (encoders without ``forward_features``) starts at this side
EMBEDDING_MAP_SIDE = 4


@functools.lru_cache(maxsize=8)
def _gamut_bins(grid: float, samples: int) -> torch.Tensor:
    g = torch.linspace(0.0, 1.0, samples, dtype=torch.float64)
    rgb = torch.stack(torch.meshgrid(g, g, g, indexing="ij")).reshape(1, 3, -1)
    ab = rgb_to_lab(rgb)[0, 1:]
    cells = int(math.ceil(AB_RANGE / grid))
    idx = torch.round(ab / grid).long() + cells  # nearest grid centre, shifted to >= 0
    side = 2 * cells + 1
    occupied = torch.bincount(idx[0] * side + idx[1], minlength=side * side).nonzero().flatten()
    centres = torch.stack([occupied // side, occupied % side], dim=1) - cells
    return (centres.double() * grid).float()


def ab_gamut_bins(grid: float = 10.0, samples: int = 129) -> torch.Tensor:
    """Centres (Q, 2) of the ``grid``-wide ab cells (centres at multiples of ``grid``) that some
    sRGB colour falls into, found on a ``samples``^3 lattice over the sRGB cube; ordered by a,
    then b. Deterministic; 261 bins for grid 10 (a denser lattice finds the same)."""
    if not grid > 0:
        raise ConfigError(f"colorization: the ab grid size must be positive, got {grid!r}")
    return _gamut_bins(float(grid), int(samples)).clone()


def soft_encode(ab: torch.Tensor, centres: torch.Tensor, neighbors: int = 5, sigma: float = 5.0) -> torch.Tensor:
    """Soft targets (N, Q) for ab values (N, 2): Gaussian weights ``exp(-d^2 / (2 sigma^2))`` on the
    ``neighbors`` nearest bin centres (d: Euclidean distance in ab), normalised to sum to 1;
    every other bin gets 0. The nearest bin always gets the largest share."""
    d2 = torch.cdist(ab.float(), centres.float()).pow(2)  # (N, Q)
    k = min(int(neighbors), centres.shape[0])
    near_d2, near_idx = d2.topk(k, dim=1, largest=False)
    # subtracting the nearest distance keeps far-from-gamut colours from underflowing to 0/0
    w = torch.exp(-(near_d2 - near_d2[:, :1]) / (2.0 * sigma**2))
    w = w / w.sum(dim=1, keepdim=True)
    return torch.zeros_like(d2).scatter_(1, near_idx, w)


def smoothed_prior(counts: torch.Tensor, centres: torch.Tensor, sigma: float = 5.0) -> torch.Tensor:
    """Empirical bin distribution from ``counts`` (Q,), smoothed with a Gaussian of width
    ``sigma`` over the bin centres in ab space (as the paper smooths its ImageNet prior).
    Uniform when nothing has been counted yet."""
    total = counts.sum()
    if total <= 0:
        return torch.full_like(counts, 1.0 / counts.numel(), dtype=torch.float32)
    p = counts.float() / total
    kernel = torch.exp(-torch.cdist(centres.float(), centres.float()).pow(2) / (2.0 * sigma**2))
    kernel = kernel / kernel.sum(dim=0, keepdim=True)  # each bin's mass spreads to its neighbours, total kept
    p = kernel @ p
    return p / p.sum()


def rebalance_weights(prior: torch.Tensor, lam: float = 0.5) -> torch.Tensor:
    """Per-bin weights ``w ∝ ((1 - lam) p + lam / Q) ** -1``, scaled so that ``sum_q p_q w_q = 1``
    (the expected weight of a pixel stays 1, so the loss keeps its scale): rare colours count
    more, and ``lam`` (0.5) bounds how much."""
    q = prior.numel()
    w = 1.0 / ((1.0 - lam) * prior + lam / q)
    return w / (prior * w).sum()


def annealed_mean(probs: torch.Tensor, centres: torch.Tensor, temperature: float = 0.38, dim: int = 1) -> torch.Tensor:
    """ab from a distribution over bins: ``sum_q f_T(z)_q c_q`` with ``f_T(z) = z^(1/T) / sum z^(1/T)``
    (T -> 0: the mode, T = 1: the mean). ``probs`` has the Q bins in dimension ``dim``; the result
    has 2 (a, b) there. A one-hot distribution gives its bin's centre."""
    logp = probs.clamp(min=1e-30).log() / temperature
    f = torch.softmax(logp, dim=dim)
    f = f.movedim(dim, -1)
    return (f @ centres.to(f.dtype)).movedim(-1, dim)


class ColorizationHead(nn.Module):
    """Feature map (B, D, h, w) -> bin logits (B, Q, H', W'): 3x3 conv, bilinear upsampling to
    the output size, 3x3 conv, 1x1 classifier (BatchNorm + ReLU after the convs). Encoders with
    no feature map give a pooled (B, D) embedding instead, mapped to a 4x4 map by a linear layer."""

    def __init__(self, in_dim: int, hidden_dim: int, num_bins: int, from_embedding: bool = False) -> None:
        super().__init__()
        self.from_embedding = (nn.Linear(in_dim, hidden_dim * EMBEDDING_MAP_SIDE**2) if from_embedding else None)
        first = hidden_dim if from_embedding else in_dim
        self.conv_in = nn.Sequential(nn.Conv2d(first, hidden_dim, 3, padding=1, bias=False),
                                     nn.BatchNorm2d(hidden_dim), nn.ReLU(inplace=True))
        self.conv_out = nn.Sequential(nn.Conv2d(hidden_dim, hidden_dim, 3, padding=1, bias=False),
                                      nn.BatchNorm2d(hidden_dim), nn.ReLU(inplace=True))
        self.classifier = nn.Conv2d(hidden_dim, num_bins, 1)

    def forward(self, h: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
        if self.from_embedding is not None:
            h = self.from_embedding(h).view(h.shape[0], -1, EMBEDDING_MAP_SIDE, EMBEDDING_MAP_SIDE)
        h = self.conv_in(h)
        if tuple(h.shape[-2:]) != tuple(size):
            h = F.interpolate(h, size=size, mode="bilinear", align_corners=False)
        return self.classifier(self.conv_out(h))


class Colorization(PretextMethod):
    """Encoder on L + :class:`ColorizationHead` classifying each pixel's ab bin; rebalanced
    soft-target cross-entropy. Returns ``{"loss", "accuracy"}`` (per-pixel top-1 over bins).

    Views must be colour images (3 channels); grayscale ones raise :class:`ConfigError`.

    Example::

        >>> method = Colorization(encoder, embed_dim=256)
        >>> method.set_normalization(mean, std)   # done by the Trainer (bind_adapter)
        >>> out = method([images])                # normalised float (B, 3, H, W)
        >>> out["loss"].backward(); out["accuracy"]
        >>> rgb = method.colorize(images)         # (B, 3, H, W) in [0, 1], from L alone
    """

    name = "colorization"
    hparam_defaults = {
        "grid": 10.0,          # ab cell width
        "neighbors": 5,        # bins sharing each soft target
        "sigma": 5.0,          # Gaussian width of the soft targets and of the prior smoothing
        "rebalance": True,
        "rebalance_lambda": 0.5,
        "temperature": 0.38,   # annealed-mean decoding
        "head_dim": 128,
        "output_stride": 4,    # predict at 1/4 of the input resolution, as in the paper
    }
    hparam_rules = {
        "grid": ("in (0, 110]", lambda v: 0 < v <= AB_RANGE),
        "sigma": POSITIVE,
        "rebalance_lambda": UNIT_INTERVAL,
        "temperature": POSITIVE,
    }

    def __init__(self, encoder: nn.Module, embed_dim: int, **hparams: Any) -> None:
        super().__init__(encoder, embed_dim, **hparams)
        hp = self._hparams
        centres = ab_gamut_bins(hp["grid"])
        self.register_buffer("bin_centres", centres, persistent=False)  # derived from grid
        # pixels per nearest bin seen in training, for the rebalancing prior
        self.register_buffer("bin_counts", torch.zeros(len(centres), dtype=torch.float64))
        # the adapter's normalisation, inverted to get RGB back (identity until bound)
        self.register_buffer("input_mean", torch.zeros(3))
        self.register_buffer("input_std", torch.ones(3))
        self.uses_feature_map = callable(getattr(encoder, "forward_features", None))
        self.head = ColorizationHead(self.embed_dim, hp["head_dim"], len(centres),
                                     from_embedding=not self.uses_feature_map)

    @property
    def num_bins(self) -> int:
        return int(self.bin_centres.shape[0])

    # ---- normalisation ----------------------------------------------------------------------
    def bind_adapter(self, adapter: Any) -> None:
        """Take the (fitted) image adapter's per-channel mean and std, so that views can be
        turned back into RGB. Called by the Trainer before training."""
        config = getattr(adapter, "config", {}) or {}
        if getattr(adapter, "name", "image") != "image":
            raise ConfigError(f"method 'colorization' needs the image adapter, got {adapter.name!r}")
        if config.get("channels") == 1:
            raise ConfigError(_GRAY_MESSAGE.format(what="1-channel (grayscale) images"))
        if config.get("mean") is not None and config.get("std") is not None:
            self.set_normalization(config["mean"], config["std"])

    def set_normalization(self, mean: Any, std: Any) -> None:
        """Views are ``(rgb - mean) / std`` per channel; three values each (or one for all)."""
        mean = torch.as_tensor(mean, dtype=torch.float32).flatten().expand(3)
        std = torch.as_tensor(std, dtype=torch.float32).flatten().expand(3)
        if (std <= 0).any():
            raise ConfigError(f"colorization: normalisation std must be positive, got {std.tolist()}")
        self.input_mean.copy_(mean)
        self.input_std.copy_(std)

    def to_rgb(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised views (B, 3, H, W) -> RGB in [0, 1]."""
        return (x.float() * self.input_std.view(1, 3, 1, 1) + self.input_mean.view(1, 3, 1, 1)).clamp(0.0, 1.0)

    def gray_input(self, lightness: torch.Tensor) -> torch.Tensor:
        """L (B, 1, H, W) in [0, 100] -> the encoder's input: L / 100 on all three channels,
        normalised like every other image the encoder sees."""
        g = (lightness / 100.0).expand(-1, 3, -1, -1)
        return (g - self.input_mean.view(1, 3, 1, 1)) / self.input_std.view(1, 3, 1, 1)

    # ---- prediction ---------------------------------------------------------------------------
    def _lab(self, views: List[Any]) -> torch.Tensor:
        x = self.single_view(views)
        if x.ndim != 4:
            raise ValueError(f"colorization needs images (B, C, H, W), got shape {tuple(x.shape)}")
        if x.shape[1] != 3:
            raise ConfigError(_GRAY_MESSAGE.format(what=f"{x.shape[1]}-channel images"))
        with torch.autocast(x.device.type, enabled=False):  # Lab in float32 under mixed precision too
            return rgb_to_lab(self.to_rgb(x))

    def output_size(self, height: int, width: int) -> Tuple[int, int]:
        s = self._hparams["output_stride"]
        return (max(1, math.ceil(height / s)), max(1, math.ceil(width / s)))

    def logits(self, lightness: torch.Tensor) -> torch.Tensor:
        """Bin logits (B, Q, H/stride, W/stride) predicted from L (B, 1, H, W)."""
        x = self.gray_input(lightness)
        if self.uses_feature_map:
            h = self.encoder.forward_features(x)
            if h.ndim != 4 or h.shape[1] != self.embed_dim:
                raise ConfigError(f"method 'colorization': encoder.forward_features must return (B, embed_dim="
                                  f"{self.embed_dim}, h, w), got {tuple(h.shape)}")
        else:
            h = self.encode(x)
        return self.head(h, self.output_size(*lightness.shape[-2:]))

    def forward(self, views: List[Any]) -> Dict[str, torch.Tensor]:
        lab = self._lab(views)
        logits = self.logits(lab[:, :1])
        b, q, h, w = logits.shape
        # the target at the prediction's resolution: ab averaged over each output cell
        ab = F.interpolate(lab[:, 1:], size=(h, w), mode="area") if (h, w) != tuple(lab.shape[-2:]) else lab[:, 1:]
        ab = ab.permute(0, 2, 3, 1).reshape(-1, 2)
        with torch.autocast(ab.device.type, enabled=False):
            targets = soft_encode(ab, self.bin_centres, self._hparams["neighbors"], self._hparams["sigma"])
        nearest = targets.argmax(dim=1)
        if self.training:
            with torch.no_grad():
                self.bin_counts += torch.bincount(nearest, minlength=q).to(self.bin_counts.dtype)
        flat = logits.float().permute(0, 2, 3, 1).reshape(-1, q)
        pixel_loss = -(targets * F.log_softmax(flat, dim=1)).sum(dim=1)
        if self._hparams["rebalance"]:
            pixel_loss = pixel_loss * self.class_weights()[nearest]
        accuracy = (flat.detach().argmax(dim=1) == nearest).float().mean()
        return {"loss": pixel_loss.mean(), "accuracy": accuracy}

    @torch.no_grad()
    def class_weights(self) -> torch.Tensor:
        """Rebalancing weight of each bin from the colours counted so far (all 1 if rebalance is off)."""
        if not self._hparams["rebalance"]:
            return torch.ones(self.num_bins, device=self.bin_centres.device)
        prior = smoothed_prior(self.bin_counts, self.bin_centres, self._hparams["sigma"])
        return rebalance_weights(prior, self._hparams["rebalance_lambda"])

    def majority_accuracy(self) -> float:
        """Share of the most frequent bin among the training pixels counted so far: the pixel
        accuracy of always predicting it (the pretext task's chance level)."""
        total = float(self.bin_counts.sum())
        return float(self.bin_counts.max()) / total if total > 0 else 1.0 / self.num_bins

    @torch.no_grad()
    def predict_ab(self, views: List[Any]) -> Tuple[torch.Tensor, torch.Tensor]:
        """(Lab of the input (B, 3, H, W), predicted ab (B, 2, H, W)): annealed mean of the
        predicted distribution, upsampled bilinearly to the input size."""
        lab = self._lab(views)
        probs = torch.softmax(self.logits(lab[:, :1]).float(), dim=1)
        ab = annealed_mean(probs, self.bin_centres, self._hparams["temperature"])
        return lab, F.interpolate(ab, size=lab.shape[-2:], mode="bilinear", align_corners=False)

    @torch.no_grad()
    def colorize(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """For normalised colour images (B, 3, H, W): ``{"gray", "predicted", "truth"}``, each RGB
        (B, 3, H, W) in [0, 1] -- the L the network saw, L with the predicted ab, the original."""
        lab, ab = self.predict_ab([x])
        lightness = lab[:, :1]
        zeros = torch.zeros_like(ab)
        return {"gray": lab_to_rgb(torch.cat([lightness, zeros], dim=1)),
                "predicted": lab_to_rgb(torch.cat([lightness, ab], dim=1)),
                "truth": lab_to_rgb(lab)}


_GRAY_MESSAGE = ("colorization needs colour images, got {what}: predicting colour from grayscale images teaches "
                 "nothing; use colour images (e.g. CIFAR-10) or another method (rotation, jigsaw, simclr)")


def check_colour_images(images: torch.Tensor, where: str = "the images", min_chroma: float = 2.0) -> None:
    """Raise :class:`~multissl.errors.DataError` unless uint8 ``images`` (N, C, H, W) have colour:
    3 channels and a mean chroma ``sqrt(a^2 + b^2)`` of at least ``min_chroma`` (Lab units) over
    (a sample of) the pixels -- RGB files holding gray pictures (R = G = B) have chroma 0."""
    from multissl.errors import DataError

    if images.ndim != 4 or images.shape[1] != 3:
        raise DataError(f"{where}: " + _GRAY_MESSAGE.format(what=f"{images.shape[1] if images.ndim == 4 else '?'}"
                                                           "-channel (grayscale) images"))
    sample = images[:: max(1, len(images) // 512)][:512]
    lab = rgb_to_lab(sample.float() / 255.0)
    chroma = float(lab[:, 1:].pow(2).sum(dim=1).sqrt().mean())
    if chroma < min_chroma:
        raise DataError(f"{where}: " + _GRAY_MESSAGE.format(
            what=f"images without colour (mean chroma {chroma:.2f} < {min_chroma} in Lab, i.e. R = G = B)"))


__all__ = ["Colorization", "ColorizationHead", "ab_gamut_bins", "annealed_mean", "check_colour_images",
           "rebalance_weights", "smoothed_prior", "soft_encode"]
