"""MoCo v3: a query branch with predictor against keys from a momentum (EMA) teacher.

Reference: X. Chen, S. Xie, K. He, "An Empirical Study of Training Self-Supervised Vision
Transformers", ICCV 2021, https://arxiv.org/abs/2104.02057. The momentum encoder comes from
K. He et al., "Momentum Contrast for Unsupervised Visual Representation Learning", CVPR 2020.
"""
from __future__ import annotations

from typing import Any, Dict, List

import torch
from torch import nn

from multissl.heads import MoCoV3PredictionHead, MoCoV3ProjectionHead
from multissl.losses.info_nce import info_nce_loss
from multissl.methods.siamese import POSITIVE, UNIT_INTERVAL, MomentumTeacherMethod, embedding_std


class MoCo(MomentumTeacherMethod):
    """MoCo v3 (no queue): queries ``q = predictor(projector(encoder(x)))``, keys from the
    EMA copy of encoder + projector, symmetric InfoNCE ``ctr(q1, k2) + ctr(q2, k1)`` with keys
    gathered from every process. The teacher's momentum follows a cosine schedule from
    ``momentum`` to ``final_momentum``; call :meth:`on_train_step_end` after every optimiser
    step.
    """

    name = "moco"
    defaults = {"optimizer": "adamw", "lr": 1e-3, "weight_decay": 1e-4}
    hparam_defaults = {
        "proj_hidden_dim": 512,
        "proj_dim": 128,
        "pred_hidden_dim": 512,
        "temperature": 0.2,
        "momentum": 0.99,
        "final_momentum": 1.0,
        "gather_distributed": True,
    }
    hparam_rules = {"temperature": POSITIVE, "momentum": UNIT_INTERVAL, "final_momentum": UNIT_INTERVAL}

    def __init__(self, encoder: nn.Module, embed_dim: int, **hparams: Any) -> None:
        super().__init__(encoder, embed_dim, **hparams)
        hp = self._hparams
        self.projector = MoCoV3ProjectionHead(embed_dim, hp["proj_hidden_dim"], hp["proj_dim"])
        self.predictor = MoCoV3PredictionHead(hp["proj_dim"], hp["pred_hidden_dim"], hp["proj_dim"])
        self._init_teacher()

    def forward(self, views: List[Any]) -> Dict[str, torch.Tensor]:
        h1, h2 = self.encode_views(views)
        q1, q2 = self.predictor(self.projector(h1)), self.predictor(self.projector(h2))
        k1, k2 = self.teacher(views[0]), self.teacher(views[1])
        hp = self._hparams
        tau, gather = hp["temperature"], hp["gather_distributed"]
        loss = info_nce_loss(q1, k2, tau, gather) + info_nce_loss(q2, k1, tau, gather)
        return {"loss": loss, "std": embedding_std(h1), "momentum": self.logged_value("current_momentum", loss)}
