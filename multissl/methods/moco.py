"""MoCo v3: a query branch with predictor against keys from a momentum (EMA) teacher.

Reference: X. Chen, S. Xie, K. He, "An Empirical Study of Training Self-Supervised Vision
Transformers", ICCV 2021, https://arxiv.org/abs/2104.02057. The momentum encoder comes from
K. He et al., "Momentum Contrast for Unsupervised Visual Representation Learning", CVPR 2020.
"""
from __future__ import annotations

from typing import Any, Dict, List

import torch
from torch import nn

from multissl.ema import copy_as_teacher, cosine_momentum, ema_update
from multissl.heads import MoCoV3PredictionHead, MoCoV3ProjectionHead
from multissl.losses.info_nce import info_nce_loss
from multissl.methods.siamese import POSITIVE, UNIT_INTERVAL, SiameseMethod, embedding_std


class MoCo(SiameseMethod):
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
        self.teacher_encoder = copy_as_teacher(self.encoder)
        self.teacher_projector = copy_as_teacher(self.projector)
        self.current_momentum = hp["momentum"]

    def forward(self, views: List[Any]) -> Dict[str, torch.Tensor]:
        h1, h2 = self.encode_views(views)
        q1, q2 = self.predictor(self.projector(h1)), self.predictor(self.projector(h2))
        with torch.no_grad():
            k1 = self.teacher_projector(self.teacher_encoder(views[0]))
            k2 = self.teacher_projector(self.teacher_encoder(views[1]))
        hp = self._hparams
        tau, gather = hp["temperature"], hp["gather_distributed"]
        loss = info_nce_loss(q1, k2, tau, gather) + info_nce_loss(q2, k1, tau, gather)
        return {"loss": loss, "std": embedding_std(h1), "momentum": loss.new_tensor(self.current_momentum)}

    @torch.no_grad()
    def on_train_step_end(self, progress: float) -> None:
        """EMA update of the teacher with the cosine-scheduled momentum at ``progress``."""
        hp = self._hparams
        self.current_momentum = cosine_momentum(progress, hp["momentum"], hp["final_momentum"])
        ema_update(self.teacher_encoder, self.encoder, self.current_momentum)
        ema_update(self.teacher_projector, self.projector, self.current_momentum)
