"""Barlow Twins: make the cross-correlation of the two views' projections the identity.

Reference: J. Zbontar, L. Jing, I. Misra, Y. LeCun, S. Deny, "Barlow Twins: Self-Supervised
Learning via Redundancy Reduction", ICML 2021, https://arxiv.org/abs/2103.03230.
"""
from __future__ import annotations

from typing import Any, Dict, List

import torch
from torch import nn

from multissl.heads import BarlowTwinsProjectionHead
from multissl.losses.barlow_twins import barlow_twins_loss
from multissl.methods.siamese import SiameseMethod, embedding_std


class BarlowTwins(SiameseMethod):
    """Encoder + 3-layer projector; :func:`barlow_twins_loss` over the global batch."""

    name = "barlowtwins"
    defaults = {"optimizer": "adamw", "lr": 1e-3, "weight_decay": 1e-4}
    hparam_defaults = {"proj_hidden_dim": 512, "proj_dim": 512, "lambda_": 5e-3, "gather_distributed": True}

    def __init__(self, encoder: nn.Module, embed_dim: int, **hparams: Any) -> None:
        super().__init__(encoder, embed_dim, **hparams)
        hp = self._hparams
        self.projector = BarlowTwinsProjectionHead(embed_dim, hp["proj_hidden_dim"], hp["proj_dim"])

    def forward(self, views: List[Any]) -> Dict[str, torch.Tensor]:
        h1, h2 = self.encode_views(views)
        hp = self._hparams
        loss = barlow_twins_loss(self.projector(h1), self.projector(h2), hp["lambda_"], hp["gather_distributed"])
        return {"loss": loss, "std": embedding_std(h1)}
