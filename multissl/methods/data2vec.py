"""data2vec: predict a teacher's contextualised representations of the hidden tokens.

Reference: A. Baevski, W.-N. Hsu, Q. Xu, A. Babu, J. Gu, M. Auli, "data2vec: A General Framework
for Self-supervised Learning in Speech, Vision and Language", ICML 2022,
https://arxiv.org/abs/2202.03555.

- **Teacher** (sec. 3.2): an exponential moving average of the student encoder (frozen copy,
  :mod:`multissl.ema`), run on the *whole* input. Its decay rises linearly from ``ema_decay``
  (tau_0) to ``ema_end_decay`` (tau_e) over the first ``ema_anneal_end`` fraction of training,
  then stays there -- the paper's schedule with tau_n expressed as a fraction of the run.
- **Targets** (sec. 3.3): the outputs of the teacher's top K blocks (``top_k_layers``; None =
  half the depth, the paper's 6 of 12 for vision), each normalised, then averaged:
  ``y_t = 1/K sum_l norm(a_t^l)``. The paper takes each block's feed-forward output before the
  last residual connection (ablation in sec. 5.4; ``target_layer="ffn"``, the default;
  ``"block"`` takes the block outputs) and normalises with parameter-free instance norm over the
  tokens of each sample (``target_norm="instance"``, padding excluded) or parameter-free layer
  norm over each token's features (``"layer"``, which the paper found works as well for vision
  and text).
- **Student** (sec. 3.1): the same encoder sees the input with the hidden tokens' embeddings
  replaced by a learned mask embedding, and a linear head regresses the targets at the hidden
  positions with a smooth-L1 loss (sec. 3.4) of threshold ``loss_beta`` (0 = squared error),
  summed over features and scaled by 1/sqrt(dim) as in the authors' code, averaged over hidden
  tokens.
"""
from __future__ import annotations

import math
from typing import Any, ClassVar, Dict, List, Optional

import torch
import torch.nn.functional as F
from torch import nn

from multissl.ema import copy_as_teacher, ema_update
from multissl.errors import ConfigError
from multissl.methods.masked import MASK_RATIO_RULE, MaskedMethod, masked_mean
from multissl.methods.siamese import Rule
from multissl.tokens import TokenBatch

TARGET_NORMS = ("instance", "layer", "none")
TARGET_LAYERS = ("ffn", "block")


def instance_norm_tokens(x: torch.Tensor, padding_mask: Optional[torch.Tensor] = None, eps: float = 1e-5) -> torch.Tensor:
    """Normalise each feature of each sample over its (non-padding) tokens: zero mean, unit
    variance, no learned parameters. ``x``: (B, N, D)."""
    if padding_mask is None:
        return F.instance_norm(x.transpose(1, 2), eps=eps).transpose(1, 2)
    real = (~padding_mask).unsqueeze(-1).to(x.dtype)
    count = real.sum(dim=1, keepdim=True).clamp(min=1.0)
    mean = (x * real).sum(dim=1, keepdim=True) / count
    var = ((x - mean).pow(2) * real).sum(dim=1, keepdim=True) / count
    return (x - mean) / (var + eps).sqrt()


def data2vec_targets(layers: List[torch.Tensor], top_k: int, norm: str = "instance",
                     padding_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Average of the top ``top_k`` of ``layers`` (each (B, N, D)), each normalised first."""
    if not 1 <= top_k <= len(layers):
        raise ConfigError(f"top_k_layers must be in [1, {len(layers)}], got {top_k}")
    out = []
    for a in layers[-top_k:]:
        a = a.float()
        if norm == "instance":
            a = instance_norm_tokens(a, padding_mask)
        elif norm == "layer":
            a = F.layer_norm(a, a.shape[-1:])
        out.append(a)
    return torch.stack(out).mean(dim=0)


def data2vec_loss(pred: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor, beta: float) -> torch.Tensor:
    """Smooth-L1 (``beta`` > 0) or squared error (``beta`` = 0) per feature, summed over the D
    features, divided by sqrt(D), averaged over the hidden tokens ``mask`` (B, N)."""
    pred, targets = pred.float(), targets.float()
    if beta > 0:
        per = F.smooth_l1_loss(pred, targets, reduction="none", beta=beta)
    else:
        per = (pred - targets).pow(2)
    per_token = per.sum(dim=-1) / math.sqrt(pred.shape[-1])
    return masked_mean(per_token, mask)


def linear_decay(progress: float, start: float, end: float, anneal_end: float) -> float:
    """``start`` -> ``end`` linearly over ``progress`` in [0, anneal_end], then ``end``."""
    if anneal_end <= 0 or progress >= anneal_end:
        return end
    return start + (end - start) * max(0.0, progress) / anneal_end


class Data2Vec(MaskedMethod):
    """Student encoder + mask embedding + linear regression head; EMA teacher for targets.

    Hyperparameters: ``mask_ratio`` (0.6, the paper's image setting; text uses 0.15),
    ``top_k_layers`` (None: half the depth, rounded up), ``target_layer`` ("ffn" | "block"),
    ``target_norm`` ("instance" | "layer" | "none"), ``loss_beta`` (2.0; 0 = MSE),
    ``ema_decay`` (0.998), ``ema_end_decay`` (0.9999), ``ema_anneal_end`` (0.5 of the run).
    The paper's tau_0 = 0.999 suits its hundreds of thousands of updates; small runs of a few
    thousand steps need a teacher that moves faster at first.

    Example::

        >>> d2v = Data2Vec(vit, embed_dim=vit.embed_dim)
        >>> out = d2v(adapter.tokens(batch, generator=g), generator=g)
        >>> out["loss"].backward(); optimizer.step(); d2v.on_train_step_end(step / total)
    """

    name = "data2vec"
    defaults = {"optimizer": "adamw", "lr": 1e-3, "weight_decay": 0.05}
    hparam_defaults: ClassVar[Dict[str, Any]] = {
        "mask_ratio": 0.6, "top_k_layers": None, "target_layer": "ffn", "target_norm": "instance",
        "loss_beta": 2.0, "ema_decay": 0.998, "ema_end_decay": 0.9999, "ema_anneal_end": 0.5,
    }
    hparam_rules: ClassVar[Dict[str, Rule]] = {
        "mask_ratio": MASK_RATIO_RULE,
        "target_layer": (" or ".join(map(repr, TARGET_LAYERS)), lambda v: v in TARGET_LAYERS),
        "target_norm": (" or ".join(map(repr, TARGET_NORMS)), lambda v: v in TARGET_NORMS),
        "ema_decay": ("in [0, 1]", lambda v: 0.0 <= v <= 1.0),
        "ema_end_decay": ("in [0, 1]", lambda v: 0.0 <= v <= 1.0),
        "ema_anneal_end": ("in [0, 1]", lambda v: 0.0 <= v <= 1.0),
    }

    def __init__(self, encoder: nn.Module, embed_dim: int, **hparams: Any) -> None:
        super().__init__(encoder, embed_dim, **hparams)
        depth = getattr(encoder, "depth", None) or len(getattr(encoder, "blocks", []))
        if not depth:
            raise ConfigError("method 'data2vec': the encoder has no blocks (needs a `depth` or `blocks`)")
        k = self._hparams["top_k_layers"] or math.ceil(depth / 2)
        if k > depth:
            raise ConfigError(f"method 'data2vec': top_k_layers {k} exceeds the encoder's depth {depth}")
        self._hparams["top_k_layers"] = int(k)
        self.mask_embedding = nn.Parameter(torch.zeros(self.embed_dim))
        nn.init.trunc_normal_(self.mask_embedding, std=0.02)
        self.regression_head = nn.Linear(self.embed_dim, self.embed_dim)
        self.teacher_encoder = copy_as_teacher(self.encoder)
        self.current_decay = self._hparams["ema_decay"]

    @torch.no_grad()
    def targets(self, token_batch: TokenBatch) -> torch.Tensor:
        """The teacher's averaged, normalised top-K layer outputs (B, N, dim) on the full input."""
        teacher = self.teacher_encoder
        was_training = teacher.training
        teacher.eval()  # no dropout in the teacher: targets of the whole, clean input
        try:
            x, pad = teacher.tokenize(token_batch.inputs)
            if token_batch.padding_mask is not None:
                pad = token_batch.padding_mask if pad is None else (pad | token_batch.padding_mask)
            target_layer = True if self._hparams["target_layer"] == "block" else "ffn"
            _, layers = teacher.encode(x, pad, return_layers=target_layer)
        finally:
            teacher.train(was_training)
        return data2vec_targets(layers, self._hparams["top_k_layers"], self._hparams["target_norm"], pad)

    def forward(self, token_batch: TokenBatch, generator: Optional[torch.Generator] = None) -> Dict[str, torch.Tensor]:
        x, pad = self.tokenize(token_batch)
        mask = self.sample_mask(token_batch, pad, generator)
        x = torch.where(mask.unsqueeze(-1), self.mask_embedding.to(x.dtype), x)
        pred = self.regression_head(self.encoder.encode(x, pad))
        targets = self.targets(token_batch)
        loss = data2vec_loss(pred, targets, mask, self._hparams["loss_beta"])
        return {"loss": loss, "target_std": targets[mask].std().detach() if mask.any() else loss.detach() * 0,
                "ema_decay": self.logged_value("current_decay", loss)}

    @torch.no_grad()
    def on_train_step_end(self, progress: float) -> None:
        hp = self._hparams
        self.current_decay = linear_decay(progress, hp["ema_decay"], hp["ema_end_decay"], hp["ema_anneal_end"])
        ema_update(self.teacher_encoder, self.encoder, self.current_decay)


__all__ = ["Data2Vec", "data2vec_loss", "data2vec_targets", "instance_norm_tokens", "linear_decay"]
