"""TS2Vec method: alignment of the two crops' common steps, training signal, errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from multissl.adapters.timeseries import TimeSeriesAdapter
from multissl.errors import ConfigError
from multissl.methods import build_method
from multissl.methods.ts2vec import aligned_overlap

torch.set_num_threads(1)


def test_aligned_overlap_pairs_the_same_source_steps():
    # per-step "features" = the source index, so aligned pairs must be equal
    src = torch.arange(30, dtype=torch.float32).view(1, 30, 1).expand(2, -1, 1)
    o1, o2 = torch.tensor([0, 5]), torch.tensor([4, 2])
    l1, l2 = torch.tensor([20, 15]), torch.tensor([16, 20])

    def view(o, l):
        t = int(l.max())
        idx = (o.unsqueeze(1) + torch.arange(t)).clamp(max=29)
        z = torch.gather(src, 1, idx.unsqueeze(-1))
        return z, {"offset": o, "mask": torch.arange(t).unsqueeze(0) < l.unsqueeze(1)}

    z1, v1 = view(o1, l1)
    z2, v2 = view(o2, l2)
    a1, a2 = aligned_overlap(z1, v1, z2, v2)
    assert torch.equal(a1, a2)
    assert a1.shape[1] == 15  # min over the batch of the overlaps (16 and 15)
    assert a1[0, 0, 0] == 4 and a1[1, 0, 0] == 5


def test_views_without_shared_steps_raise():
    z = torch.zeros(1, 5, 2)
    with pytest.raises(ConfigError, match="share no time step"):
        aligned_overlap(z, {"offset": torch.tensor([0]), "mask": torch.ones(1, 5, dtype=torch.bool)},
                        z, {"offset": torch.tensor([10]), "mask": torch.ones(1, 5, dtype=torch.bool)})


def test_needs_an_encoder_with_per_step_outputs():
    with pytest.raises(ConfigError, match="forward_tokens"):
        build_method("ts2vec", nn.Linear(3, 4), 4)
    with pytest.raises(ConfigError, match="alpha"):
        build_method("ts2vec", TimeSeriesAdapter().build_encoder(in_channels=1), 128, alpha=1.5)


def test_a_few_steps_lower_the_loss_on_real_crops():
    ad = TimeSeriesAdapter(preset="ts2vec")
    rng = np.random.default_rng(0)
    t = np.arange(64)
    x = np.sin(rng.uniform(0.1, 0.5, (16, 1, 1)) * t) + rng.normal(0, 0.05, (16, 1, 64))
    data = ad.prepare(x)
    ad.fit(data)
    torch.manual_seed(0)
    enc = ad.build_encoder(width=16, depth=4, embed_dim=16, dropout=0.0)
    m = build_method("ts2vec", enc, 16)
    opt = torch.optim.Adam(m.parameters(), 3e-3)
    g = torch.Generator().manual_seed(0)
    fixed = ad.views(data, generator=torch.Generator().manual_seed(123))
    before = m(fixed)["loss"].item()
    for _ in range(30):
        out = m(ad.views(data, generator=g))
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
    assert m(fixed)["loss"].item() < before
    assert all(p.grad is not None for p in enc.parameters())


def test_works_with_another_adapters_per_step_encoder():
    from multissl import pretrain

    rng = np.random.default_rng(0)
    sigs = [np.column_stack([rng.normal(0, 1, (n, 2)).cumsum(0), np.arange(n) * 10.0]) for n in (30, 40, 35, 50)]
    model = pretrain(sigs, adapter="signature", method="ts2vec", epochs=1, batch_size=4, progress=False,
                     encoder_kwargs={"width": 8, "depth": 2, "embed_dim": 8})
    assert np.isfinite(model.embed(sigs)).all()
