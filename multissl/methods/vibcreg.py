"""VIbCReg: VICReg with IterNorm-whitened projections and a normalised covariance term.

Reference: D. Lee, E. Aune, "Computer Vision Self-Supervised Learning Methods on Time Series"
(VIbCReg), 2021, https://arxiv.org/abs/2109.00783.
"""
from __future__ import annotations

from typing import Any, Dict, List

import torch
from torch import nn

from multissl.errors import ConfigError
from multissl.heads import VIbCRegProjectionHead
from multissl.losses.vibcreg import vibcreg_terms
from multissl.methods.siamese import SiameseMethod, embedding_std


class VIbCReg(SiameseMethod):
    """Encoder + projector ending in IterNorm (``iternorm_groups`` groups, ``iternorm_iters``
    Newton steps); loss ``25 s + 25 [v(Z) + v(Z')] + 200 [c(Z) + c(Z')]`` (the paper's
    weights) with ``c`` the mean squared off-diagonal correlation. Returns the unweighted terms
    too."""

    name = "vibcreg"
    defaults = {"optimizer": "adamw", "lr": 1e-3, "weight_decay": 1e-4}
    hparam_defaults = {
        "proj_hidden_dim": 512,
        "proj_dim": 512,
        "iternorm_groups": 64,
        "iternorm_iters": 5,
        "sim_weight": 25.0,
        "var_weight": 25.0,
        "cov_weight": 200.0,
        "gather_distributed": True,
    }

    def __init__(self, encoder: nn.Module, embed_dim: int, **hparams: Any) -> None:
        super().__init__(encoder, embed_dim, **hparams)
        hp = self._hparams
        if hp["proj_dim"] % hp["iternorm_groups"]:
            raise ConfigError(
                f"method 'vibcreg': iternorm_groups ({hp['iternorm_groups']}) must divide proj_dim ({hp['proj_dim']})"
            )
        self.projector = VIbCRegProjectionHead(
            embed_dim, hp["proj_hidden_dim"], hp["proj_dim"], hp["iternorm_groups"], hp["iternorm_iters"]
        )

    def forward(self, views: List[Any]) -> Dict[str, torch.Tensor]:
        h1, h2 = self.encode_views(views)
        hp = self._hparams
        terms = vibcreg_terms(self.projector(h1), self.projector(h2), gather_distributed=hp["gather_distributed"])
        loss = terms.total(hp["sim_weight"], hp["var_weight"], hp["cov_weight"])
        return {
            "loss": loss,
            "std": embedding_std(h1),
            "invariance": terms.invariance.detach(),
            "variance": terms.variance.detach(),
            "covariance": terms.covariance.detach(),
        }
