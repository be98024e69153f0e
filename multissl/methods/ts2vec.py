"""TS2Vec: hierarchical contrast of per-time-step representations of two overlapping crops.

Reference: Z. Yue et al., "TS2Vec: Towards Universal Representation of Time Series", AAAI 2022,
https://arxiv.org/abs/2106.10466. Loss: :func:`multissl.losses.hierarchical_contrastive_loss`.

Works with any adapter whose views carry ``"mask"`` (B, T) (True at real steps) and, when they
are crops, ``"offset"`` (B,) -- the source index of each view's first step -- and with any
encoder that has ``forward_tokens(view) -> (B, T, D)`` per-step representations. The two views'
common steps are found from the offsets and lengths; the loss compares the representations of
the same source step seen in different contexts ("contextual consistency"). For the time-series
adapter it recommends the ``ts2vec`` preset (overlapping crops + timestamp masking).

No projection head: TS2Vec contrasts the encoder's own outputs, so the instance-level
embedding (max-pooled per-step representations) is trained directly.
"""
from __future__ import annotations

from typing import Any, Dict, List

import torch
import torch.distributed as dist
from torch import nn

from multissl import distributed as msd

from multissl.errors import ConfigError
from multissl.losses.hierarchical_contrastive import hierarchical_contrastive_loss
from multissl.methods.siamese import UNIT_INTERVAL, SiameseMethod, embedding_std


def aligned_overlap(z1: torch.Tensor, v1: Dict[str, Any], z2: torch.Tensor, v2: Dict[str, Any],
                    across_processes: bool = False):
    """The per-step representations of the source steps both views contain, aligned.

    ``z1`` (B, T1, D), ``z2`` (B, T2, D); view ``i`` covers source steps ``offset_i ..
    offset_i + length_i - 1``. Returns (B, L, D) pairs, L = the smallest overlap in the batch
    (every series contributes the same number of steps, starting at its overlap's start);
    ``across_processes``: the smallest over the global batch of every process.
    """
    b = z1.shape[0]
    zeros = torch.zeros(b, dtype=torch.long, device=z1.device)
    o1, o2 = v1.get("offset", zeros).long(), v2.get("offset", zeros).long()
    l1, l2 = v1["mask"].sum(1), v2["mask"].sum(1)
    start = torch.maximum(o1, o2)
    overlap = torch.minimum(o1 + l1, o2 + l2) - start
    smallest = overlap.min()
    if across_processes and msd.is_distributed():
        smallest = smallest.clone()
        dist.all_reduce(smallest, op=dist.ReduceOp.MIN)
    n = int(smallest)
    if n < 1:
        raise ConfigError("ts2vec: the two views of a series share no time step; use overlapping crops "
                          "(time-series preset 'ts2vec') or views without crops")
    steps = torch.arange(n, device=z1.device).unsqueeze(0)
    i1 = (start - o1).unsqueeze(1) + steps
    i2 = (start - o2).unsqueeze(1) + steps
    d = z1.shape[2]
    return (torch.gather(z1, 1, i1.unsqueeze(-1).expand(-1, -1, d)),
            torch.gather(z2, 1, i2.unsqueeze(-1).expand(-1, -1, d)))


class TS2Vec(SiameseMethod):
    """Hierarchical (instance + temporal) contrast of overlapping crops' per-step features.

    ``gather_distributed`` (True): under data parallelism, contrast the series of every process
    (the overlap cut to the global batch's shortest), so that 2 processes train like 1 on the
    same global batch; False keeps each process's batch apart, as the authors' single-GPU code.
    """

    name = "ts2vec"
    # TS2Vec's optimiser: AdamW, lr 1e-3 (the paper uses batch 8)
    defaults = {"optimizer": "adamw", "lr": 1e-3, "weight_decay": 1e-4}
    hparam_defaults = {"alpha": 0.5, "gather_distributed": True}
    hparam_rules = {"alpha": UNIT_INTERVAL}
    adapter_defaults = {"timeseries": {"preset": "ts2vec"}}

    def __init__(self, encoder: nn.Module, embed_dim: int, **hparams: Any) -> None:
        super().__init__(encoder, embed_dim, **hparams)
        if not callable(getattr(encoder, "forward_tokens", None)):
            raise ConfigError(f"method 'ts2vec' needs an encoder with per-time-step outputs, "
                              f"forward_tokens(view) -> (B, T, D); {type(encoder).__name__} has none")

    def forward(self, views: List[Any]) -> Dict[str, torch.Tensor]:
        if not isinstance(views, (list, tuple)) or len(views) != 2:
            raise ValueError("method 'ts2vec' needs a list of 2 views")
        v1, v2 = views
        z1, z2 = self.encoder.forward_tokens(v1), self.encoder.forward_tokens(v2)
        gather = self._hparams["gather_distributed"] and msd.is_distributed()
        a1, a2 = aligned_overlap(z1, v1, z2, v2, across_processes=gather)
        if gather:
            # the instance contrast's negatives are the other series: those of every process, as
            # one process would see them (every process then computes the same global loss;
            # multissl.distributed explains the gradients)
            a1, a2 = msd.gather(a1), msd.gather(a2)
        loss = hierarchical_contrastive_loss(a1, a2, alpha=self._hparams["alpha"])
        return {"loss": loss, "std": embedding_std(a1.amax(1)), "overlap_steps": torch.tensor(float(a1.shape[1]))}
