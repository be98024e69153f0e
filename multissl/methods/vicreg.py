"""VICReg: invariance + variance + covariance regularisation of the two views' embeddings.

Reference: A. Bardes, J. Ponce, Y. LeCun, "VICReg: Variance-Invariance-Covariance
Regularization for Self-Supervised Learning", ICLR 2022, https://arxiv.org/abs/2105.04906.
"""
from __future__ import annotations

from typing import Any, Dict, List

import torch
from torch import nn

from multissl.heads import VICRegProjectionHead
from multissl.losses.vicreg import vicreg_terms
from multissl.methods.siamese import SiameseMethod, embedding_std


class VICReg(SiameseMethod):
    """Encoder + 3-layer expander; :func:`multissl.losses.vicreg_loss` with the variance and
    covariance terms over the global batch. Also returns the unweighted terms."""

    name = "vicreg"
    defaults = {"optimizer": "adamw", "lr": 1e-3, "weight_decay": 1e-4}
    hparam_defaults = {
        "proj_hidden_dim": 512,
        "proj_dim": 512,
        "sim_weight": 25.0,
        "var_weight": 25.0,
        "cov_weight": 1.0,
        "gather_distributed": True,
    }

    def __init__(self, encoder: nn.Module, embed_dim: int, **hparams: Any) -> None:
        super().__init__(encoder, embed_dim, **hparams)
        hp = self._hparams
        self.projector = VICRegProjectionHead(embed_dim, hp["proj_hidden_dim"], hp["proj_dim"])

    def forward(self, views: List[Any]) -> Dict[str, torch.Tensor]:
        h1, h2 = self.encode_views(views)
        hp = self._hparams
        terms = vicreg_terms(self.projector(h1), self.projector(h2), gather_distributed=hp["gather_distributed"])
        loss = terms.total(hp["sim_weight"], hp["var_weight"], hp["cov_weight"])
        return {
            "loss": loss,
            "std": embedding_std(h1),
            "invariance": terms.invariance.detach(),
            "variance": terms.variance.detach(),
            "covariance": terms.covariance.detach(),
        }
