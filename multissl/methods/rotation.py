"""Rotation prediction (RotNet): recognise by how much an image was rotated.

Reference: S. Gidaris, P. Singh, N. Komodakis, "Unsupervised Representation Learning by
Predicting Image Rotations", ICLR 2018, https://arxiv.org/abs/1803.07728.

Telling whether an object is upright requires recognising the object, its parts and their
layout, so the encoder learns semantic features from the 4-way classification of rotations by
0, 90, 180 and 270 degrees. As in the paper, all four rotations of every image go through the
network in the same batch (it found this better than one random rotation per image), which also
makes the task deterministic: no random numbers beyond the adapter's augmentation.
"""
from __future__ import annotations

from typing import Any, Dict, List, Tuple

import torch
from torch import nn

from multissl.errors import ConfigError
from multissl.heads import MLPHead
from multissl.methods.pretext import PretextMethod, classification_outputs

NUM_ROTATIONS = 4


def rotate_all(x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Every sample of ``x`` rotated by 0, 90, 180 and 270 degrees, and the rotation labels.

    ``x`` is any batch (B, C, ..., H, W) -- images (B, C, H, W), or clips (B, C, T, H, W) whose
    frames all turn together; the last two dimensions are rotated with ``torch.rot90``, on the
    tensor's device. Label ``k`` means ``k`` quarter turns counter-clockwise (as displayed, row 0
    at the top). Returns ``(rotated (4B, C, ..., H, W), labels (4B,))`` ordered by rotation:
    rows ``k*B .. (k+1)*B - 1`` hold rotation ``k`` of the B samples.

    Raises :class:`ConfigError` for non-square images: a quarter turn would swap height and
    width, so the rotated copies could not share a batch (and the shape alone would give the
    answer away).
    """
    if x.ndim < 3:
        raise ValueError(f"rotate_all needs a batch (B, C, ..., H, W), got shape {tuple(x.shape)}")
    h, w = x.shape[-2:]
    if h != w:
        raise ConfigError(f"rotation needs square images, got {h}x{w}; resize them to a square, e.g. with the image "
                          "adapter's image_size=<int> (adapter_config={'image_size': 32})")
    rotated = torch.cat([torch.rot90(x, k, dims=(-2, -1)) for k in range(NUM_ROTATIONS)])
    labels = torch.arange(NUM_ROTATIONS, device=x.device).repeat_interleave(x.shape[0])
    return rotated, labels


class Rotation(PretextMethod):
    """Encoder + MLP head predicting one of four rotations; cross-entropy loss.

    Each step sees 4x the batch (every image in all four rotations), so ``batch_size=64`` runs
    the encoder on 256 images. Returns ``{"loss", "accuracy"}`` (accuracy over the 4B copies).

    Example::

        >>> method = Rotation(encoder, embed_dim=256)
        >>> out = method([images])          # images: float (B, C, S, S)
        >>> out["loss"].backward(); out["accuracy"]
    """

    name = "rotation"
    # A hidden layer between the encoder and the 4-way output keeps the last encoder layer from
    # specialising in rotation (the paper found the deepest conv block transfers worst).
    hparam_defaults = {"head_hidden_dim": 256}

    def __init__(self, encoder: nn.Module, embed_dim: int, **hparams: Any) -> None:
        super().__init__(encoder, embed_dim, **hparams)
        self.head = MLPHead([self.embed_dim, self._hparams["head_hidden_dim"], NUM_ROTATIONS])

    def forward(self, views: List[Any]) -> Dict[str, torch.Tensor]:
        rotated, labels = rotate_all(self.single_view(views))
        return classification_outputs(self.head(self.encode(rotated)), labels)


__all__ = ["Rotation", "rotate_all", "NUM_ROTATIONS"]
