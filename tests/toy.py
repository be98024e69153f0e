"""A tiny adapter and method used by the trainer / model / CLI tests (no modality needed).

The adapter takes float vectors (N, D); its views add seeded Gaussian noise on the device.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from multissl.adapters import Adapter, register_adapter
from multissl.errors import DataError
from multissl.methods.base import SSLMethod


class VectorAdapter(Adapter):
    name = "toyvector"
    defaults = {"method": "toy", "epochs": 2, "batch_size": 16, "encoder": "mlp"}

    def prepare(self, data: Any) -> torch.Tensor:
        x = torch.as_tensor(np.asarray(data), dtype=torch.float32)
        if x.ndim != 2:
            raise DataError(f"expected (N, D) vectors, got shape {tuple(x.shape)}")
        bad = (~torch.isfinite(x)).any(dim=1).nonzero()
        if len(bad):
            raise DataError(f"record {int(bad[0])}: not finite")
        return x

    def fit(self, prepared: torch.Tensor) -> "VectorAdapter":
        self.config["mean"] = prepared.mean(0).tolist()
        return self

    def eval_transform(self, batch: torch.Tensor) -> torch.Tensor:
        return batch - torch.tensor(self.config.get("mean", 0.0), device=batch.device)

    def views(self, batch: torch.Tensor, n_views: int = 2, generator: Optional[torch.Generator] = None) -> List[torch.Tensor]:
        x = self.eval_transform(batch)
        return [x + 0.1 * torch.randn(x.shape, generator=generator, device=x.device) for _ in range(n_views)]

    def build_encoder(self, name: Optional[str] = None, **kwargs: Any) -> nn.Module:
        dim = len(self.config.get("mean", [0] * 8))
        enc = nn.Sequential(nn.Linear(dim, 16), nn.ReLU(), nn.Linear(16, kwargs.get("out", 8)))
        enc.embed_dim = kwargs.get("out", 8)
        return enc


class ToyMethod(SSLMethod):
    """Cosine alignment + a uniformity term: enough to move weights deterministically."""

    name = "toy"
    defaults = {"optimizer": "adamw", "lr": 1e-2, "weight_decay": 0.0}

    def forward(self, views: List[torch.Tensor]) -> Dict[str, torch.Tensor]:
        z1, z2 = (F.normalize(self.encoder(v), dim=1) for v in views)
        align = (z1 - z2).pow(2).sum(1).mean()
        uniform = torch.pdist(z1.float()).pow(2).mul(-2).exp().mean().log()
        return {"loss": align + uniform, "align": align.detach()}


register_adapter("toyvector", VectorAdapter)


def toy_data(n: int = 64, d: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
