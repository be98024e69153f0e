"""multissl.sync_batchnorm in one process: it must be nn.BatchNorm exactly (values, gradients,
running statistics, eval mode), its moment combination must equal the statistics of the joined
batch, and the conversion must share parameters and come back out. The 2-process behaviour is
checked in tests/test_distributed_methods.py."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from multissl.errors import ConfigError
from multissl.iternorm import IterNorm
from multissl.sync_batchnorm import (SyncBatchNorm, combine_moments, convert_sync_batchnorm, local_moments,
                                     revert_sync_batchnorm)


def _pair(bn_cls, *args, **kwargs):
    torch.manual_seed(0)
    ref = bn_cls(*args, **kwargs).double()
    sync = SyncBatchNorm(*args, **kwargs).double()
    if ref.affine:  # non-trivial affine parameters
        with torch.no_grad():
            ref.weight.uniform_(0.5, 1.5)
            ref.bias.uniform_(-0.5, 0.5)
    sync.load_state_dict(ref.state_dict())
    return ref, sync


@pytest.mark.parametrize("bn_cls, shape", [(nn.BatchNorm1d, (6, 4)), (nn.BatchNorm1d, (5, 4, 7)),
                                           (nn.BatchNorm2d, (3, 4, 5, 2)), (nn.BatchNorm3d, (2, 4, 3, 2, 2))])
@pytest.mark.parametrize("momentum", [0.1, None])
def test_matches_batchnorm_values_grads_running_stats(bn_cls, shape, momentum) -> None:
    ref, sync = _pair(bn_cls, 4, momentum=momentum)
    g = torch.Generator().manual_seed(1)
    for _ in range(3):
        x = (torch.randn(*shape, generator=g, dtype=torch.float64) * 3 + 2).requires_grad_(True)
        xs = x.detach().clone().requires_grad_(True)
        upstream = torch.randn(*shape, generator=g, dtype=torch.float64)
        y_ref, y = ref(x), sync(xs)
        torch.testing.assert_close(y, y_ref, rtol=0, atol=1e-12)
        (y_ref * upstream).sum().backward()
        (y * upstream).sum().backward()
        torch.testing.assert_close(xs.grad, x.grad, rtol=0, atol=1e-12)
        for a, b in [(sync.weight, ref.weight), (sync.bias, ref.bias)]:
            torch.testing.assert_close(a.grad, b.grad, rtol=0, atol=1e-12)
    # unbiased variance in the running estimate, cumulative average when momentum is None
    torch.testing.assert_close(sync.running_mean, ref.running_mean, rtol=0, atol=1e-12)
    torch.testing.assert_close(sync.running_var, ref.running_var, rtol=0, atol=1e-12)
    assert int(sync.num_batches_tracked) == int(ref.num_batches_tracked) == 3
    ref.eval(), sync.eval()
    x = torch.randn(*shape, generator=g, dtype=torch.float64)
    before = sync.running_mean.clone()
    torch.testing.assert_close(sync(x), ref(x), rtol=0, atol=1e-12)
    assert torch.equal(sync.running_mean, before)  # eval mode does not update


@pytest.mark.parametrize("affine, track", [(False, True), (True, False), (False, False)])
def test_matches_batchnorm_without_affine_or_running_stats(affine, track) -> None:
    ref, sync = _pair(nn.BatchNorm1d, 3, affine=affine, track_running_stats=track)
    x = torch.randn(8, 3, dtype=torch.float64) * 2 - 1
    for mode in (True, False):  # eval without running statistics normalises with the batch
        ref.train(mode), sync.train(mode)
        torch.testing.assert_close(sync(x), ref(x), rtol=0, atol=1e-12)


def test_moment_combination_equals_the_joined_batch() -> None:
    """What the processes exchange: per-chunk moments of uneven chunks combine to the statistics
    of the whole batch (the parallel-variance formula), also with a large common offset."""
    x = torch.randn(11, 5, 3, dtype=torch.float64) + 1e4
    rows = torch.stack([local_moments(chunk) for chunk in x.split([2, 6, 3])])
    count, mean, m2 = combine_moments(rows)
    assert count.item() == 11 * 3
    flat = x.transpose(0, 1).reshape(5, -1)
    torch.testing.assert_close(mean, flat.mean(dim=1), rtol=0, atol=1e-9)
    torch.testing.assert_close(m2 / (count - 1), flat.var(dim=1), rtol=1e-10, atol=0)


def test_reduced_precision_input_keeps_its_dtype() -> None:
    bn = SyncBatchNorm(4)
    x = torch.randn(16, 4) * 5 + 3
    y = bn(x.bfloat16())
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), nn.BatchNorm1d(4)(x), rtol=0.02, atol=0.02)


def test_one_value_per_channel_is_an_error() -> None:
    with pytest.raises(ValueError, match="more than 1 value"):
        SyncBatchNorm(4)(torch.randn(1, 4))
    with pytest.raises(ValueError, match="channels"):
        SyncBatchNorm(4)(torch.randn(3, 5))


def _model() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                         nn.Sequential(nn.Linear(4 * 4 * 4, 8), nn.BatchNorm1d(8, affine=False)), IterNorm(8, 2))


def test_convert_shares_parameters_and_reverts() -> None:
    torch.manual_seed(0)
    model = _model()
    params = list(model.parameters())
    state = {k: v.clone() for k, v in model.state_dict().items()}
    model.eval()
    x = torch.randn(5, 3, 6, 6)
    y_before = model(x)

    out = convert_sync_batchnorm(model)
    assert out is model
    assert isinstance(model[1], SyncBatchNorm) and isinstance(model[4][1], SyncBatchNorm)
    assert model[5].sync is True
    assert not model[1].training  # the train/eval flag is kept
    assert all(a is b for a, b in zip(model.parameters(), params))  # an existing optimiser still works
    assert list(model.state_dict()) == list(state)  # checkpoints load either way
    torch.testing.assert_close(model(x), y_before, rtol=0, atol=0)

    model.train()
    model(x)  # updates the shared running statistics
    revert_sync_batchnorm(model)
    assert type(model[1]) is nn.BatchNorm2d and type(model[4][1]) is nn.BatchNorm1d
    assert model[5].sync is False
    assert all(a is b for a, b in zip(model.parameters(), params))
    assert not torch.equal(model[1].running_mean, state["1.running_mean"])


def test_convert_picks_torch_syncbatchnorm_for_cuda() -> None:
    """On CUDA torch's fused layer is used (built here without a GPU; it only runs on one)."""
    model = convert_sync_batchnorm(nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)), device="cuda")
    assert type(model[1]) is nn.SyncBatchNorm
    assert type(revert_sync_batchnorm(model)[1]) is nn.BatchNorm1d
    assert type(convert_sync_batchnorm(nn.BatchNorm1d(4), device="cpu")) is SyncBatchNorm


# ---------------------------------------------------------------- the trainer's switches
class _RecordingToy:
    """Builds a toy method whose encoder has BatchNorm and records the norm layer's class at
    every training forward."""

    @staticmethod
    def make(**cfg):
        from multissl.trainer import TrainConfig, Trainer
        from tests.toy import ToyMethod, VectorAdapter, toy_data

        seen = []

        class Recording(ToyMethod):
            def forward(self, views):
                seen.append(type(self.encoder[1]))
                return super().forward(views)

        adapter = VectorAdapter()
        data = adapter.prepare(toy_data(32))
        adapter.fit(data)
        torch.manual_seed(0)
        # no bias before the BatchNorm: its gradient is 0 up to rounding noise, which AdamW would
        # scale up to full steps and so make two equal runs differ
        encoder = nn.Sequential(nn.Linear(8, 16, bias=False), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 8))
        method = Recording(encoder, 8)
        trainer = Trainer(method, adapter, TrainConfig(epochs=1, batch_size=8, progress=False, trackers=None, **cfg))
        trainer.fit(data)
        return method, seen


def test_trainer_converts_only_when_asked_or_distributed_and_reverts() -> None:
    plain, seen_plain = _RecordingToy.make()  # one process, sync_batchnorm=None: no conversion
    assert set(seen_plain) == {nn.BatchNorm1d}
    synced, seen_synced = _RecordingToy.make(sync_batchnorm=True)
    assert set(seen_synced) == {SyncBatchNorm}
    assert type(synced.encoder[1]) is nn.BatchNorm1d  # reverted: the saved model has plain layers
    # one process: the same training up to float32 rounding (the statistics are summed differently)
    for a, b in zip(plain.state_dict().values(), synced.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_trainer_deterministic_switch() -> None:
    import os

    before = torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark, os.environ.get(
        "CUBLAS_WORKSPACE_CONFIG")
    try:
        _RecordingToy.make(deterministic=True)
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.backends.cudnn.benchmark is False and torch.backends.cudnn.deterministic is True
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] in (":4096:8", ":16:8")
        assert not torch.is_deterministic_algorithms_warn_only_enabled()
        _RecordingToy.make(deterministic="warn")  # ops without a deterministic kernel only warn
        assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
        with pytest.raises(ConfigError, match="deterministic must be"):
            _RecordingToy.make(deterministic="yes")
    finally:
        torch.use_deterministic_algorithms(before[0])
        torch.backends.cudnn.benchmark = before[1]
        if before[2] is None:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
