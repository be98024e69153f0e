"""BYOL: predict the EMA teacher's projection of the other view.

Reference: J.-B. Grill et al., "Bootstrap Your Own Latent: A New Approach to Self-Supervised
Learning", NeurIPS 2020, https://arxiv.org/abs/2006.07733.
"""
from __future__ import annotations

from typing import Any, Dict, List

import torch
from torch import nn

from multissl.heads import BYOLPredictionHead, BYOLProjectionHead
from multissl.losses.negative_cosine import negative_cosine_loss
from multissl.methods.siamese import UNIT_INTERVAL, MomentumTeacherMethod, embedding_std


class BYOL(MomentumTeacherMethod):
    """Online network encoder + projector + predictor; target network = EMA copy of encoder +
    projector. Loss ``(D(p1, t2) + D(p2, t1)) / 2`` with ``D`` the negative cosine similarity
    (range [-1, 1]; the paper's ``2 - 2 cos`` form has the same minimiser). The target's
    momentum follows BYOL's cosine schedule from ``momentum`` to ``final_momentum``; call
    :meth:`on_train_step_end` after every optimiser step.
    """

    name = "byol"
    defaults = {"optimizer": "adamw", "lr": 1e-3, "weight_decay": 1e-4}
    hparam_defaults = {
        "proj_hidden_dim": 512,
        "proj_dim": 128,
        "pred_hidden_dim": 512,
        # The paper's 0.996 is for ~300k steps; small datasets take few steps, so move faster.
        "momentum": 0.99,
        "final_momentum": 1.0,
    }
    hparam_rules = {"momentum": UNIT_INTERVAL, "final_momentum": UNIT_INTERVAL}

    def __init__(self, encoder: nn.Module, embed_dim: int, **hparams: Any) -> None:
        super().__init__(encoder, embed_dim, **hparams)
        hp = self._hparams
        self.projector = BYOLProjectionHead(embed_dim, hp["proj_hidden_dim"], hp["proj_dim"])
        self.predictor = BYOLPredictionHead(hp["proj_dim"], hp["pred_hidden_dim"], hp["proj_dim"])
        self._init_teacher()

    def forward(self, views: List[Any]) -> Dict[str, torch.Tensor]:
        h1, h2 = self.encode_views(views)
        p1, p2 = self.predictor(self.projector(h1)), self.predictor(self.projector(h2))
        t1, t2 = self.teacher(views[0]), self.teacher(views[1])
        loss = 0.5 * (negative_cosine_loss(p1, t2) + negative_cosine_loss(p2, t1))
        return {"loss": loss, "std": embedding_std(h1), "momentum": self.logged_value("current_momentum", loss)}
