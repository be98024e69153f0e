"""A tabular modality as a multissl plugin (the pattern any third-party adapter follows).

Views follow SCARF (Bahri et al., *SCARF: Self-Supervised Contrastive Learning using Random
Feature Corruption*, ICLR 2022): each view replaces a random ``corruption`` fraction of a row's
features by values of the same features drawn from other rows of the batch (the empirical
marginal), so every Siamese method of multissl applies to tables.
"""
from __future__ import annotations

from typing import Any, List, Optional

import numpy as np
import torch
from torch import nn

from multissl.adapters.base import Adapter
from multissl.errors import DataError

__all__ = ["TabularAdapter"]


class TabularAdapter(Adapter):
    name = "tabular"
    defaults = {"method": "simclr", "epochs": 50, "batch_size": 128, "encoder": "mlp"}

    def __init__(self, corruption: float = 0.6, mean: Optional[List[float]] = None,
                 std: Optional[List[float]] = None) -> None:
        super().__init__(corruption=corruption, mean=mean, std=std)

    def prepare(self, data: Any) -> torch.Tensor:
        x = np.asarray(data, dtype=np.float32)
        if x.ndim != 2 or len(x) == 0:
            raise DataError(f"tabular data must be a non-empty (rows, features) array, got shape {x.shape}")
        bad = np.argwhere(~np.isfinite(x))
        if len(bad):
            raise DataError(f"row {bad[0][0]}, feature {bad[0][1]}: value is {x[tuple(bad[0])]}, expected a finite number")
        return torch.from_numpy(x)

    def fit(self, prepared: torch.Tensor) -> "TabularAdapter":
        self.config["mean"] = prepared.mean(0).tolist()
        self.config["std"] = prepared.std(0).clamp_min(1e-6).tolist()
        return self

    def eval_transform(self, batch: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(self.config["mean"], device=batch.device)
        std = torch.tensor(self.config["std"], device=batch.device)
        return (batch - mean) / std

    def views(self, batch: torch.Tensor, n_views: int = 2, generator: Optional[torch.Generator] = None) -> List[torch.Tensor]:
        x = self.eval_transform(batch)
        b, f = x.shape
        out = []
        for _ in range(n_views):
            corrupt = torch.rand(b, f, generator=generator, device=x.device) < self.config["corruption"]
            donor = torch.randint(0, b, (b, f), generator=generator, device=x.device)
            marginal = x.gather(0, donor)  # feature j of a random row, per cell
            out.append(torch.where(corrupt, marginal, x))
        return out

    def build_encoder(self, name: Optional[str] = None, width: int = 256, embed_dim: int = 128) -> nn.Module:
        features = len(self.config["mean"] or [])
        if not features:
            raise DataError("fit the adapter on data before building its encoder (the width depends on the columns)")
        encoder = nn.Sequential(nn.Linear(features, width), nn.BatchNorm1d(width), nn.ReLU(),
                                nn.Linear(width, embed_dim))
        encoder.embed_dim = embed_dim
        return encoder

    def encoder_names(self) -> List[str]:
        return ["mlp"]
