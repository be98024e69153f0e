"""SimSiam: predict the other view's projection, with a stop-gradient instead of a teacher.

Reference: X. Chen, K. He, "Exploring Simple Siamese Representation Learning", CVPR 2021,
https://arxiv.org/abs/2011.10566.
"""
from __future__ import annotations

from typing import Any, Dict, List

import torch
from torch import nn

from multissl.heads import SimSiamPredictionHead, SimSiamProjectionHead
from multissl.losses.negative_cosine import negative_cosine_loss
from multissl.methods.siamese import SiameseMethod, embedding_std


class SimSiam(SiameseMethod):
    """Encoder + projector ``f``, bottleneck predictor ``h``; loss
    ``D(p1, stopgrad(z2)) / 2 + D(p2, stopgrad(z1)) / 2`` with ``D`` the negative cosine
    similarity (minimum -1). Watch ``std``: SimSiam collapses (std -> 0) when the
    stop-gradient or the predictor is removed, or the learning rate is much too high.
    """

    name = "simsiam"
    defaults = {"optimizer": "adamw", "lr": 1e-3, "weight_decay": 1e-4}
    hparam_defaults = {"proj_hidden_dim": 256, "proj_dim": 256, "pred_hidden_dim": 64}

    def __init__(self, encoder: nn.Module, embed_dim: int, **hparams: Any) -> None:
        super().__init__(encoder, embed_dim, **hparams)
        hp = self._hparams
        self.projector = SimSiamProjectionHead(embed_dim, hp["proj_hidden_dim"], hp["proj_dim"])
        self.predictor = SimSiamPredictionHead(hp["proj_dim"], hp["pred_hidden_dim"], hp["proj_dim"])

    def forward(self, views: List[Any]) -> Dict[str, torch.Tensor]:
        h1, h2 = self.encode_views(views)
        z1, z2 = self.projector(h1), self.projector(h2)
        p1, p2 = self.predictor(z1), self.predictor(z2)
        loss = 0.5 * (negative_cosine_loss(p1, z2) + negative_cosine_loss(p2, z1))
        return {"loss": loss, "std": embedding_std(h1)}
