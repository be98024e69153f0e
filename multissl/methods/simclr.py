"""SimCLR: contrast two augmented views of each sample against the rest of the batch.

Reference: T. Chen, S. Kornblith, M. Norouzi, G. Hinton, "A Simple Framework for Contrastive
Learning of Visual Representations", ICML 2020, https://arxiv.org/abs/2002.05709.
"""
from __future__ import annotations

from typing import Any, Dict, List

import torch
from torch import nn

from multissl.heads import SimCLRProjectionHead
from multissl.losses.ntxent import nt_xent_loss
from multissl.methods.siamese import POSITIVE, SiameseMethod, embedding_std


class SimCLR(SiameseMethod):
    """Encoder + projector ``g``; NT-Xent over the global batch (negatives from all processes).

    Example::

        >>> method = SimCLR(encoder, embed_dim=128, temperature=0.5)
        >>> out = method([view1, view2]); out["loss"].backward()
    """

    name = "simclr"
    defaults = {"optimizer": "adamw", "lr": 1e-3, "weight_decay": 1e-4}
    hparam_defaults = {"proj_hidden_dim": 512, "proj_dim": 128, "temperature": 0.5, "gather_distributed": True}
    hparam_rules = {"temperature": POSITIVE}

    def __init__(self, encoder: nn.Module, embed_dim: int, **hparams: Any) -> None:
        super().__init__(encoder, embed_dim, **hparams)
        hp = self._hparams
        self.projector = SimCLRProjectionHead(embed_dim, hp["proj_hidden_dim"], hp["proj_dim"])

    def forward(self, views: List[Any]) -> Dict[str, torch.Tensor]:
        h1, h2 = self.encode_views(views)
        hp = self._hparams
        loss = nt_xent_loss(self.projector(h1), self.projector(h2), hp["temperature"], hp["gather_distributed"])
        return {"loss": loss, "std": embedding_std(h1)}
