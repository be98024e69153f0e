"""Trainer: determinism, exact resume, atomic checkpoints, accumulation, kNN monitor."""
from __future__ import annotations

import json

import pytest
import torch

from multissl.errors import ConfigError
from multissl.trainer import KNNMonitor, TrainConfig, Trainer, warmup_cosine
from tests.toy import ToyMethod, VectorAdapter, toy_data


def make(seed: int = 0, **cfg):
    adapter = VectorAdapter()
    data = adapter.prepare(toy_data(64))
    adapter.fit(data)
    torch.manual_seed(seed)
    method = ToyMethod(adapter.build_encoder(), 8)
    config = TrainConfig(epochs=cfg.pop("epochs", 3), batch_size=cfg.pop("batch_size", 16), seed=seed,
                         progress=False, **cfg)
    return Trainer(method, adapter, config), data


def weights(trainer):
    return torch.cat([p.detach().flatten() for p in trainer.method.encoder.parameters()])


def test_fit_trains_and_records_history():
    trainer, data = make()
    before = weights(trainer).clone()
    history = trainer.fit(data)
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in history)
    assert history[-1]["loss"] < history[0]["loss"]
    assert not torch.equal(before, weights(trainer))
    assert trainer.resolved["steps_per_epoch"] == 4 and trainer.resolved["total_steps"] == 12


def test_same_seed_reproduces_and_other_seed_differs():
    a, data = make(seed=1)
    a.fit(data)
    b, _ = make(seed=1)
    b.fit(data)
    c, _ = make(seed=2)
    c.fit(data)
    assert torch.equal(weights(a), weights(b))
    assert not torch.allclose(weights(a), weights(c))


class Crash(Exception):
    pass


def test_resume_continues_exactly(tmp_path):
    full, data = make(output_dir=str(tmp_path / "full"), checkpoint_every=1)
    full.fit(data)

    out = str(tmp_path / "interrupted")
    broken, _ = make(output_dir=out, checkpoint_every=1)
    calls = {"n": 0}
    original = broken.adapter.views

    def views_then_crash(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 6:  # dies during step 6, after checkpoint step_5 was written
            raise Crash()
        return original(*args, **kwargs)

    broken.adapter.views = views_then_crash
    with pytest.raises(Crash):
        broken.fit(data)
    assert broken.latest_checkpoint().name == "step_00000005"

    resumed, _ = make(output_dir=out, checkpoint_every=1, resume=True)
    history = resumed.fit(data)
    assert torch.allclose(weights(full), weights(resumed), atol=1e-6)
    assert [h["epoch"] for h in history] == [1, 2, 3]


def test_checkpoints_are_atomic_and_pruned(tmp_path):
    trainer, data = make(output_dir=str(tmp_path), checkpoint_every=2, keep_checkpoints=2)
    (tmp_path / "checkpoints").mkdir(parents=True)
    (tmp_path / "checkpoints" / ".tmp-step_00000099").mkdir()  # a save that died half-way
    trainer.fit(data)
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir() if not p.name.startswith("."))
    assert names == ["step_00000010", "step_00000012"]
    assert trainer.latest_checkpoint().name == "step_00000012"
    state = json.loads((tmp_path / "checkpoints" / "step_00000012" / "trainer_state.json").read_text())
    assert state["step"] == 12
    assert any(p.suffix == ".safetensors" for p in (tmp_path / "checkpoints" / "step_00000012").iterdir())


def test_resume_without_checkpoint_is_a_clear_error(tmp_path):
    trainer, data = make(output_dir=str(tmp_path), resume=True)
    with pytest.raises(ConfigError, match="no complete checkpoint"):
        trainer.fit(data)


def test_gradient_accumulation_halves_optimizer_steps():
    trainer, data = make(grad_accum_steps=2)
    trainer.fit(data)
    assert trainer.resolved["total_steps"] == 6


def test_knn_monitor_reports_accuracy():
    trainer, data = make(epochs=2)
    labels = (data[:, 0] > 0).long()
    history = trainer.fit(data, knn=KNNMonitor(data[:48], labels[:48], data[48:], labels[48:]))
    assert all(0.0 <= h["knn_acc"] <= 1.0 for h in history)


@pytest.mark.parametrize("bad", [dict(epochs=0), dict(batch_size=1), dict(mixed_precision="fp8"), dict(optimizer="rmsprop")])
def test_invalid_config_raises(bad):
    with pytest.raises(ConfigError):
        make(**bad)


def test_warmup_cosine_schedule_shape():
    f = warmup_cosine(total_steps=100, warmup_steps=10, min_ratio=0.1)
    assert f(0) == pytest.approx(0.1)
    assert f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0)
    assert f(55) == pytest.approx(0.1 + 0.9 * 0.5)
    assert f(100) == pytest.approx(0.1)


def test_tensorboard_tracker_writes_events(tmp_path):
    trainer, data = make(epochs=2, output_dir=str(tmp_path), trackers="tensorboard", log_every=1)
    trainer.fit(data)
    events = list((tmp_path / "logs").rglob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0


def test_tensorboard_is_the_default_tracker_when_installed(tmp_path):
    import tensorboard  # noqa: F401  (in the test extra: this test must run, not skip)
    default, data = make(epochs=1, output_dir=str(tmp_path / "default"))
    default.fit(data)
    assert default.trackers() == ["tensorboard"]
    assert list((tmp_path / "default" / "logs").rglob("events.out.tfevents.*"))
    off, _ = make(epochs=1, output_dir=str(tmp_path / "off"), trackers=None)
    off.fit(data)
    assert off.trackers() == [] and not (tmp_path / "off" / "logs").exists()
    no_dir, _ = make(epochs=1)
    assert no_dir.trackers() == []  # nowhere to write: no tracker


def test_bf16_mixed_precision_trains_on_cpu():
    trainer, data = make(epochs=2, mixed_precision="bf16")
    history = trainer.fit(data)
    assert trainer.resolved["mixed_precision"] == "bf16"
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in history)


def test_earlier_run_is_neither_mixed_in_nor_silently_deleted(tmp_path):
    first, data = make(output_dir=str(tmp_path))
    first.fit(data)
    again, _ = make(output_dir=str(tmp_path))
    with pytest.raises(ConfigError, match="earlier run"):
        again.fit(data)
    assert first.latest_checkpoint() is not None
    fresh, _ = make(output_dir=str(tmp_path), overwrite=True, epochs=1)
    fresh.fit(data)
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["step_00000004"]
