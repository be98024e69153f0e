"""Few-label fine-tuning: an encoder plus a linear head trained end to end on labelled data.

The same function trains the SSL-pretrained encoder and the from-scratch one, so both get the
same augmentations (``adapter.finetune_augment``), optimiser, schedule and number of steps:
the comparison differs only in the starting weights.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Dict, Iterator, Optional, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from multissl import fast_path
from multissl.adapters.base import Adapter, Prepared, num_records, take, to_device
from multissl.errors import ConfigError

Array = Union[np.ndarray, torch.Tensor]


@dataclass
class FinetuneConfig:
    steps: int = 300
    batch_size: int = 64
    lr: float = 1e-3  # head learning rate
    encoder_lr_ratio: float = 1.0  # encoder lr = lr * ratio (0 freezes the encoder)
    # LP-FT (Kumar et al. 2022, "Fine-Tuning can Distort Pretrained Features"): train the head
    # alone on frozen features for this many steps first, then everything for `steps`.
    probe_steps: int = 0
    weight_decay: float = 1e-4
    label_smoothing: float = 0.0
    augment: bool = True
    seed: int = 0
    device: Optional[str] = None
    # "auto": the Trainer's rule (multissl.fast_path.resolve_mixed_precision): bf16 autocast on
    # GPUs, and for image/video conv nets on CPUs with bf16 matrix units; "no" or "bf16" to force
    mixed_precision: str = "auto"


class Classifier(nn.Module):
    def __init__(self, encoder: nn.Module, embed_dim: int, num_classes: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(embed_dim, num_classes)

    def forward(self, x: Any) -> torch.Tensor:
        return self.head(self.encoder(x))


def _labels(y: Array) -> torch.Tensor:
    return y.long() if torch.is_tensor(y) else torch.as_tensor(np.asarray(y), dtype=torch.long)


@torch.no_grad()
def _logits(model: Classifier, adapter: Adapter, data: Prepared, batch_size: int, bf16: bool,
            channels_last: bool) -> Iterator[torch.Tensor]:
    """The model's logits for ``data``, one batch of records after another."""
    model.eval()
    device = next(model.parameters()).device
    n = num_records(data)
    for s in range(0, n, batch_size):
        batch = to_device(take(data, torch.arange(s, min(n, s + batch_size))), device)
        x = adapter.eval_transform(batch)
        if channels_last:
            x = fast_path.views_to_channels_last(x)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            yield model(x)


def predict(model: Classifier, adapter: Adapter, data: Prepared, batch_size: int = 256,
            bf16: bool = False, channels_last: bool = False) -> torch.Tensor:
    """The predicted class of every record of ``data`` (argmax of the logits)."""
    return torch.cat([z.argmax(1).cpu() for z in _logits(model, adapter, data, batch_size, bf16, channels_last)])


def predict_proba(model: Classifier, adapter: Adapter, data: Prepared, batch_size: int = 256,
                  bf16: bool = False, channels_last: bool = False) -> torch.Tensor:
    """Class probabilities (softmax of the logits, float32, on the CPU) for every record of ``data``."""
    return torch.cat([z.float().softmax(1).cpu()
                      for z in _logits(model, adapter, data, batch_size, bf16, channels_last)])


def finetune(encoder: nn.Module, adapter: Adapter, train: Prepared, train_y: Array, test: Optional[Prepared] = None,
             test_y: Optional[Array] = None, embed_dim: Optional[int] = None, num_classes: Optional[int] = None,
             config: Optional[FinetuneConfig] = None, copy_encoder: bool = True) -> Dict[str, Any]:
    """Fine-tune ``encoder`` (copied unless ``copy_encoder=False``) with a linear head.

    Returns ``{"model": Classifier, "accuracy": float | None, "mixed_precision": "bf16" | "no"}``
    (accuracy on ``test`` if given). The fast path follows the Trainer's automatic rules
    (``cfg.mixed_precision``, and channels_last for image/video conv nets); the model is
    handed back in float32 weights and the default memory order.
    """
    cfg = config or FinetuneConfig()
    device = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    y = _labels(train_y)
    n = num_records(train)
    if n != len(y):
        raise ValueError(f"{n} training records but {len(y)} labels")
    num_classes = num_classes or int(y.max()) + 1
    embed_dim = embed_dim or Adapter.embed_dim(encoder)
    torch.manual_seed(cfg.seed)
    enc = copy.deepcopy(encoder) if copy_encoder else encoder
    model = Classifier(enc, embed_dim, num_classes).to(device)
    precision = fast_path.resolve_mixed_precision(cfg.mixed_precision, adapter.name, model, device.type == "cpu",
                                                  fast_path.spatial_side(train))
    if precision not in ("no", "bf16"):
        raise ConfigError(f"finetune supports mixed_precision auto|no|bf16, got {cfg.mixed_precision!r}")
    bf16 = precision == "bf16"
    channels_last = fast_path.resolve_channels_last(None, adapter.name, model, device)
    if channels_last:
        fast_path.model_to_channels_last(model)
    groups = [{"params": model.head.parameters(), "lr": cfg.lr}]
    if cfg.encoder_lr_ratio > 0:
        groups.append({"params": model.encoder.parameters(), "lr": cfg.lr * cfg.encoder_lr_ratio})
    else:
        for p in model.encoder.parameters():
            p.requires_grad_(False)
    opt = torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.steps)
    data = to_device(train, device)
    y = y.to(device)
    bs = min(cfg.batch_size, n)
    g_perm = torch.Generator().manual_seed(cfg.seed)
    g_aug = torch.Generator(device=device)
    g_aug.manual_seed(cfg.seed + 12345)
    perm, pos = torch.randperm(n, generator=g_perm), 0

    def next_batch() -> Any:
        nonlocal perm, pos
        if pos + bs > n:
            perm, pos = torch.randperm(n, generator=g_perm), 0
        idx = perm[pos:pos + bs].to(device)
        pos += bs
        batch = take(data, idx)
        x = adapter.finetune_augment(batch, generator=g_aug) if cfg.augment else adapter.eval_transform(batch)
        return (fast_path.views_to_channels_last(x) if channels_last else x), y[idx]

    def autocast() -> Any:
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)

    if cfg.probe_steps > 0:
        model.encoder.eval()
        head_opt = torch.optim.AdamW(model.head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        for _ in range(cfg.probe_steps):
            x, t = next_batch()
            with torch.no_grad(), autocast():
                h = model.encoder(x)
            with autocast():
                loss = F.cross_entropy(model.head(h), t, label_smoothing=cfg.label_smoothing)
            head_opt.zero_grad(set_to_none=True)
            loss.backward()
            head_opt.step()
    model.train()
    if cfg.encoder_lr_ratio <= 0:
        model.encoder.eval()  # frozen encoder: keep its BN statistics fixed too
    for _ in range(cfg.steps):
        x, t = next_batch()
        with autocast():
            loss = F.cross_entropy(model(x), t, label_smoothing=cfg.label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    acc = None
    if test is not None and test_y is not None:
        acc = float((predict(model, adapter, test, bf16=bf16, channels_last=channels_last)
                     == _labels(test_y)).float().mean())
    if channels_last:
        fast_path.model_to_contiguous(model)
    return {"model": model, "accuracy": acc, "mixed_precision": precision}
