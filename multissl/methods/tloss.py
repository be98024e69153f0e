"""T-Loss: a series and its own sub-series agree, sub-series of other series do not.

Reference: J.-Y. Franceschi, A. Dieuleveut, M. Jaggi, "Unsupervised Scalable Representation
Learning for Multivariate Time Series", NeurIPS 2019, https://arxiv.org/abs/1901.10738.
Loss: :func:`multissl.losses.subseries_triplet_loss`.

Each step draws, as the paper does, one positive length ``s_pos`` uniformly in ``1 .. L`` and
one anchor length ``s_ref`` in ``s_pos .. L`` for the whole batch (``L``: the shortest series of
the batch), then per series a random anchor window of ``s_ref`` steps, a positive window of
``s_pos`` steps inside it, and ``negatives`` windows of ``s_pos`` steps from other series of the
batch -- or, with ``negative_pool`` > 0, from the batch and the last ``negative_pool`` series
of earlier batches (a first-in first-out pool of raw series, like MoCo's queue but of inputs).
With a pool at least as large as the training set every negative is a draw from the whole
training set, as in the paper.
Every window is encoded on its own, so the representation has to summarise a series from any
stretch of it -- which is what a max-pooled convolutional encoder is asked to do downstream.

One view per step: the sub-series are cut from ``views[0]``, so any augmentation the adapter
applies comes on top (the recommended time-series preset is ``none``: T-Loss's only
"augmentation" is the choice of sub-series). The draws come from the method's own random
stream (:mod:`multissl.methods.random_stream`): a seed reproduces them and a resumed checkpoint
continues them.

Works with any adapter whose views are ``{"x": (B, C, T), "mask": (B, T)}`` series batches
(the time-series adapter's) and any encoder that maps such a batch to (B, D).

    >>> method = build_method("tloss", encoder, embed_dim=128)    # K = 10 negatives
    >>> out = method([view])                                       # {"loss", "std", "positive_length"}
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional

import torch
import torch.nn.functional as F
from torch import nn

from multissl.errors import ConfigError
from multissl.losses.subseries_triplet import subseries_triplet_loss
from multissl.methods.random_stream import init_random_stream, next_generator
from multissl.methods.siamese import SiameseMethod, embedding_std


def windows(x: torch.Tensor, rows: torch.Tensor, start: torch.Tensor, length: int) -> torch.Tensor:
    """``x[rows[i], :, start[i] : start[i] + length]`` for every ``i``: (len(rows), C, length)."""
    idx = start.long().unsqueeze(1) + torch.arange(length, device=x.device).unsqueeze(0)  # (N, length)
    src = x[rows]
    return torch.gather(src, 2, idx.unsqueeze(1).expand(-1, src.shape[1], -1))


def uniform_int(low: torch.Tensor, high: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """One integer uniformly in ``[low, high]`` (inclusive) per element."""
    u = torch.rand(low.shape, generator=g, device=g.device).to(low.device)
    return low + (u * (high - low + 1).to(u.dtype)).long().clamp(max=high - low)


class TLoss(SiameseMethod):
    """Triplet loss on sub-series with time-based negative sampling (Franceschi et al. 2019).

    ``negatives`` (K, default 10: the figures the paper's tables quote), ``average_negatives``
    (True: the negatives' term divided by K, as the authors' code), ``negative_pool`` (0: negatives
    from the other series of the batch; N > 0: from the batch and the last N series of earlier
    batches, uniformly, as the paper draws them from the whole training set).
    """

    name = "tloss"
    n_views = 1
    # the paper's optimiser: Adam, lr 1e-3, no weight decay
    defaults = {"optimizer": "adamw", "lr": 1e-3, "weight_decay": 0.0}
    hparam_defaults = {"negatives": 10, "average_negatives": True, "negative_pool": 0}
    adapter_defaults = {"timeseries": {"preset": "none"}}

    def __init__(self, encoder: nn.Module, embed_dim: int, **hparams: Any) -> None:
        super().__init__(encoder, embed_dim, **hparams)
        init_random_stream(self)
        # the pool of earlier series: (N, C, T) zero-padded, and their lengths; in checkpoints
        # through get_extra_state, so a resumed run draws the negatives an unbroken one would
        self._pool_x: Optional[torch.Tensor] = None
        self._pool_len: Optional[torch.Tensor] = None

    def sample(self, mask: torch.Tensor, g: torch.Generator,
               pool_lengths: Optional[torch.Tensor] = None) -> Dict[str, Any]:
        """The step's draws for series of lengths ``mask.sum(1)``: lengths, window starts, and
        the series each negative comes from. With ``pool_lengths`` (lengths of the pool's series,
        which follow the batch's rows), negatives are drawn uniformly from the batch and the
        pool among the series at least ``s_pos`` long; their rows index that union."""
        b = mask.shape[0]
        length = mask.sum(1).long()
        shortest = int(length.min())
        if shortest < 1:
            raise ConfigError("method 'tloss': a series of the batch has no valid step")
        one = torch.ones((), dtype=torch.long, device=mask.device)
        s_pos = int(uniform_int(one, one * shortest, g))
        s_ref = int(uniform_int(one * s_pos, one * shortest, g))
        ref_start = uniform_int(torch.zeros_like(length), length - s_ref, g)
        pos_start = ref_start + uniform_int(torch.zeros_like(length), torch.full_like(length, s_ref - s_pos), g)
        k = self._hparams["negatives"]
        rows = torch.arange(b, device=mask.device).expand(k, b)
        if pool_lengths is not None:  # any long enough series of the batch or the pool, uniformly
            length = torch.cat([length, pool_lengths.to(length.device)])
            eligible = (length >= s_pos).float()
            picks = torch.multinomial(eligible.to(g.device), k * b, replacement=True, generator=g)
            neg_rows = picks.to(mask.device).view(k, b)
        elif b > 1:  # another series of the batch, uniformly
            shift = uniform_int(torch.ones_like(rows), torch.full_like(rows, b - 1), g)
            neg_rows = (rows + shift) % b
        else:
            neg_rows = rows
        neg_start = uniform_int(torch.zeros_like(neg_rows), length[neg_rows] - s_pos, g)
        return {"s_pos": s_pos, "s_ref": s_ref, "ref_start": ref_start, "pos_start": pos_start,
                "neg_rows": neg_rows, "neg_start": neg_start}

    def forward(self, views: List[Any]) -> Dict[str, torch.Tensor]:
        if not isinstance(views, (list, tuple)) or len(views) != 1 or not isinstance(views[0], dict):
            raise ValueError("method 'tloss' needs a list of 1 view, a series batch {'x': (B, C, T), 'mask': (B, T)}")
        x, mask = views[0]["x"], views[0]["mask"].bool()
        pool = int(self._hparams["negative_pool"])
        source = x
        if pool and self._pool_x is not None and self._pool_x.shape[1] == x.shape[1]:
            source = _stack_padded(x, self._pool_x.to(device=x.device, dtype=x.dtype))
            d = self.sample(mask, next_generator(self, x.device), pool_lengths=self._pool_len)
        else:
            d = self.sample(mask, next_generator(self, x.device))
        b, k = x.shape[0], self._hparams["negatives"]
        all_rows = torch.arange(b, device=x.device)

        def encode(series: torch.Tensor) -> torch.Tensor:
            steps = torch.ones(series.shape[0], series.shape[2], dtype=torch.bool, device=x.device)
            return self.encode_views([{"x": series, "mask": steps}])[0]

        ref = encode(windows(x, all_rows, d["ref_start"], d["s_ref"]))
        pos = encode(windows(x, all_rows, d["pos_start"], d["s_pos"]))
        neg = encode(windows(source, d["neg_rows"].reshape(-1), d["neg_start"].reshape(-1), d["s_pos"])).view(k, b, -1)
        loss = subseries_triplet_loss(ref, pos, neg, average_negatives=self._hparams["average_negatives"])
        if pool and self.training:
            self._remember(x, mask, pool)
        return {"loss": loss, "std": embedding_std(ref), "positive_length": torch.tensor(float(d["s_pos"]))}

    def get_extra_state(self) -> torch.Tensor:
        """The negative pool for checkpoints, as one tensor (safetensors holds only tensors):
        (N, C + 1, T), the series and then their lengths at step 0 of the extra channel; empty
        when there is no pool."""
        if self._pool_x is None:
            return torch.zeros(0)
        packed = F.pad(self._pool_x.detach().float(), (0, 0, 0, 1))
        packed[:, -1, 0] = self._pool_len.to(packed.device).float()
        return packed

    def set_extra_state(self, state: Any) -> None:
        if not torch.is_tensor(state) or state.numel() == 0:
            self._pool_x = self._pool_len = None
            return
        if state.dim() != 3 or state.shape[1] < 2:
            raise ConfigError(f"method 'tloss': a checkpoint's negative pool has shape {tuple(state.shape)}, "
                              "expected (N, C + 1, T)")
        self._pool_x = state[:, :-1].clone()
        self._pool_len = state[:, -1, 0].round().long()

    @torch.no_grad()
    def _remember(self, x: torch.Tensor, mask: torch.Tensor, pool: int) -> None:
        """Put the batch's series at the end of the pool, keeping the newest ``pool``."""
        x, length = x.detach(), mask.sum(1).long()
        if self._pool_x is not None and self._pool_x.shape[1] == x.shape[1]:
            x = _stack_padded(self._pool_x.to(x.dtype), x)
            length = torch.cat([self._pool_len.to(length.device), length])
        first = max(0, length.shape[0] - pool)
        self._pool_len = length[first:]
        self._pool_x = x[first:, :, :int(self._pool_len.max())]


def _stack_padded(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(Na, C, Ta) and (Nb, C, Tb) -> (Na + Nb, C, max(Ta, Tb)), zero-padded at the end."""
    t = max(a.shape[2], b.shape[2])
    return torch.cat([F.pad(a, (0, t - a.shape[2])), F.pad(b, (0, t - b.shape[2]))])


__all__ = ["TLoss", "windows"]
