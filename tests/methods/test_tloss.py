"""T-Loss method: sub-series sampling (positives inside their anchors, negatives from other
series, within each series' own length), training signal, reproducibility, errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from multissl.adapters.timeseries import TimeSeriesAdapter
from multissl.errors import ConfigError
from multissl.methods import build_method
from multissl.methods.tloss import windows

torch.set_num_threads(1)


def _method(**hp):
    adapter = TimeSeriesAdapter(preset="none")
    encoder = adapter.build_encoder("ts2vec", in_channels=1, width=8, depth=2, embed_dim=16)
    return build_method("tloss", encoder, embed_dim=16, **hp)


def test_windows_cut_the_requested_steps() -> None:
    x = torch.arange(2 * 3 * 10, dtype=torch.float32).view(2, 3, 10)
    w = windows(x, torch.tensor([1, 0, 1]), torch.tensor([2, 5, 0]), 4)
    assert w.shape == (3, 3, 4)
    assert torch.equal(w[0], x[1, :, 2:6]) and torch.equal(w[1], x[0, :, 5:9]) and torch.equal(w[2], x[1, :, 0:4])


def test_sampling_respects_lengths_and_containment() -> None:
    torch.manual_seed(0)
    method = _method(negatives=4)
    lengths = torch.tensor([30, 12, 25, 17, 40])
    mask = torch.arange(40).unsqueeze(0) < lengths.unsqueeze(1)
    seen_lengths = set()
    for _ in range(200):
        d = method.sample(mask, torch.Generator().manual_seed(int(torch.randint(0, 10**9, ()))))
        s_pos, s_ref = d["s_pos"], d["s_ref"]
        assert 1 <= s_pos <= s_ref <= int(lengths.min())
        assert (d["ref_start"] >= 0).all() and (d["ref_start"] + s_ref <= lengths).all()
        assert (d["pos_start"] >= d["ref_start"]).all() and (d["pos_start"] + s_pos <= d["ref_start"] + s_ref).all()
        rows = d["neg_rows"]
        assert rows.shape == (4, 5) and (rows != torch.arange(5)).all()  # never the anchor's own series
        assert (d["neg_start"] >= 0).all() and (d["neg_start"] + s_pos <= lengths[rows]).all()
        seen_lengths.add(s_pos)
    assert len(seen_lengths) > 5  # lengths really vary from step to step


def test_trains_and_gradients_flow() -> None:
    torch.manual_seed(0)
    method = _method(negatives=3)
    adapter = TimeSeriesAdapter(preset="none")
    t = np.linspace(0, 6, 48)
    x = np.stack([np.sin(t * f) for f in np.linspace(0.5, 3, 12)]).astype(np.float32)
    prepared = adapter.prepare(x)
    adapter.fit(prepared)
    view = adapter.views(prepared, n_views=1)
    out = method(view)
    assert set(out) >= {"loss", "std", "positive_length"} and torch.isfinite(out["loss"])
    out["loss"].backward()
    grads = [p.grad for p in method.encoder.parameters() if p.requires_grad]
    assert all(g is not None for g in grads) and sum(g.abs().sum() for g in grads) > 0


def test_seeded_stream_reproduces_and_advances() -> None:
    mask = torch.ones(6, 50, dtype=torch.bool)

    def draws(seed):
        torch.manual_seed(seed)
        m = _method()
        from multissl.methods.random_stream import next_generator
        return [m.sample(mask, next_generator(m, torch.device("cpu"))) for _ in range(3)]

    a, b, c = draws(1), draws(1), draws(2)
    key = [(d["s_pos"], d["s_ref"], d["ref_start"].tolist(), d["neg_rows"].tolist()) for d in a]
    assert key == [(d["s_pos"], d["s_ref"], d["ref_start"].tolist(), d["neg_rows"].tolist()) for d in b]
    assert key != [(d["s_pos"], d["s_ref"], d["ref_start"].tolist(), d["neg_rows"].tolist()) for d in c]
    assert len({(k[0], k[1]) for k in key}) > 1 or key[0][2] != key[1][2]  # steps differ


def test_bad_input_and_hyperparameters() -> None:
    method = _method()
    with pytest.raises(ValueError, match="1 view"):
        method([{"x": torch.zeros(2, 1, 5), "mask": torch.ones(2, 5, dtype=torch.bool)}] * 2)
    with pytest.raises(ConfigError, match="no valid step"):
        method([{"x": torch.zeros(2, 1, 5), "mask": torch.tensor([[True] * 5, [False] * 5])}])
    with pytest.raises(ConfigError, match="negatives"):
        _method(negatives=0)
    with pytest.raises(ConfigError, match="valid: average_negatives, negative_pool, negatives"):
        _method(temperature=0.1)
    with pytest.raises(ConfigError, match="'negative_pool' must be >= 0"):
        _method(negative_pool=-1)


def test_pretrain_uses_no_augmentation_by_default() -> None:
    from multissl import pretrain

    x = np.random.default_rng(0).standard_normal((16, 32)).astype(np.float32)
    model = pretrain(x, adapter="timeseries", method="tloss", epochs=1, batch_size=8, progress=False,
                     encoder_kwargs={"width": 8, "depth": 2, "embed_dim": 16}, seed=0)
    assert model.adapter.config["preset"] == "none"
    assert np.isfinite(model.config["history"][-1]["loss"])


def test_negative_pool_keeps_the_newest_series_and_draws_negatives_from_it() -> None:
    torch.manual_seed(0)
    method = _method(negatives=6, negative_pool=5)
    method.train()
    # three batches of 2 series, each series constant at its own id, lengths 20 and 12
    batches = []
    for step in range(3):
        ids = torch.tensor([2 * step + 1.0, 2 * step + 2.0])
        x = ids.view(2, 1, 1).expand(2, 1, 20).clone()
        mask = torch.ones(2, 20, dtype=torch.bool)
        mask[1, 12:] = False
        x[1, :, 12:] = 0
        batches.append({"x": x, "mask": mask})
    method([batches[0]])
    assert method._pool_len.tolist() == [20, 12]
    method([batches[1]])
    method([batches[2]])
    # the newest 5 of the 6 series seen, oldest first, padding trimmed to the longest
    assert method._pool_x[:, 0, 0].tolist() == [2.0, 3.0, 4.0, 5.0, 6.0]
    assert method._pool_len.tolist() == [12, 20, 12, 20, 12]
    # negatives come from the batch and the pool, only from series long enough
    lengths = torch.tensor([20, 12] + method._pool_len.tolist())
    mask = batches[0]["mask"]
    seen = set()
    for i in range(200):
        d = method.sample(mask, torch.Generator().manual_seed(i), pool_lengths=method._pool_len)
        rows = d["neg_rows"]
        assert (rows >= 0).all() and (rows < 7).all()
        assert (lengths[rows] >= d["s_pos"]).all()
        assert (d["neg_start"] + d["s_pos"] <= lengths[rows]).all()
        seen.update(rows.flatten().tolist())
    assert seen == set(range(7))  # the pool's series really are drawn
    # eval mode leaves the pool alone; the loss is finite and differentiable through the pool's windows
    method.eval()
    method([batches[0]])
    assert method._pool_x[:, 0, 0].tolist() == [2.0, 3.0, 4.0, 5.0, 6.0]
    method.train()
    out = method([batches[0]])
    out["loss"].backward()
    assert torch.isfinite(out["loss"])


def test_negative_pool_off_is_the_batch_only_sampling() -> None:
    torch.manual_seed(0)
    a = _method(negatives=3)
    torch.manual_seed(0)
    b = _method(negatives=3, negative_pool=0)
    view = {"x": torch.randn(4, 1, 30), "mask": torch.ones(4, 30, dtype=torch.bool)}
    losses = []
    for method in (a, b):
        torch.manual_seed(1)  # the same dropout draws
        losses.append(method([view])["loss"])
    assert torch.equal(losses[0], losses[1])
    assert b._pool_x is None


def test_negative_pool_is_checkpointed_and_a_resumed_run_continues_exactly(tmp_path) -> None:
    from multissl.trainer import TrainConfig, Trainer

    x = torch.randn(24, 1, 40, generator=torch.Generator().manual_seed(0)).numpy()

    def trainer(out: str, resume: bool = False) -> Trainer:
        adapter = TimeSeriesAdapter(preset="none")
        data = adapter.prepare(x)
        adapter.fit(data)
        torch.manual_seed(0)
        encoder = adapter.build_encoder("ts2vec", in_channels=1, width=8, depth=2, embed_dim=16)
        method = build_method("tloss", encoder, embed_dim=16, negatives=3, negative_pool=10)
        config = TrainConfig(epochs=2, batch_size=4, seed=0, progress=False, output_dir=out, checkpoint_every=1,
                             resume=resume, mixed_precision="no", trackers=None)
        return Trainer(method, adapter, config), data

    full, data = trainer(str(tmp_path / "full"))
    full.fit(data)
    broken, _ = trainer(str(tmp_path / "broken"))
    calls = {"n": 0}
    views = broken.adapter.views

    def views_then_crash(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:  # during step 5: the pool holds the 10 newest of 16 series seen
            raise RuntimeError("crash")
        return views(*args, **kwargs)

    broken.adapter.views = views_then_crash
    with pytest.raises(RuntimeError, match="crash"):
        broken.fit(data)
    resumed, _ = trainer(str(tmp_path / "broken"), resume=True)
    assert resumed.method._pool_x is None
    resumed.fit(data)
    for a, b in zip(full.method.encoder.parameters(), resumed.method.encoder.parameters()):
        assert torch.equal(a, b)
    assert torch.equal(full.method._pool_x, resumed.method._pool_x)
    assert torch.equal(full.method._pool_len, resumed.method._pool_len)


def test_negative_pool_state_round_trips() -> None:
    a, b = _method(negative_pool=4), _method(negative_pool=4)
    assert a.get_extra_state().numel() == 0
    a.train()
    mask = torch.ones(3, 12, dtype=torch.bool)
    mask[2, 7:] = False
    a([{"x": torch.randn(3, 1, 12), "mask": mask}])
    b.load_state_dict(a.state_dict())
    assert torch.equal(a._pool_x, b._pool_x) and a._pool_len.tolist() == b._pool_len.tolist() == [12, 12, 7]
    b.load_state_dict(_method(negative_pool=4).state_dict())  # a checkpoint taken before any step
    assert b._pool_x is None and b._pool_len is None
    with pytest.raises(ConfigError, match="negative pool has shape"):
        b.set_extra_state(torch.zeros(3, 1))
