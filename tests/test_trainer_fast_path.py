"""The trainer's fast-path switches (multissl/fast_path.py): fused optimiser kernels,
channels_last, torch.compile and the one-batch-ahead host->device prefetch.

The machine that runs this suite has no GPU, so these tests show what a CPU can: each switch
gives the same training as the plain run (to rounding), the automatic choices resolve as
documented for CPU and CUDA devices, and checkpoints keep plain keys under compile.
torch.compile runs with backend "aot_eager" here (tracing + AOT autograd without code
generation): inductor needs ~100 s to build one trivial kernel with gcc on this shared 2-core CPU.
"""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from torch import nn

from multissl import fast_path
from multissl.errors import ConfigError
from multissl.trainer import TrainConfig, Trainer, epoch_permutation
from tests.toy import ToyMethod, VectorAdapter, toy_data

CUDA = torch.device("cuda")  # only a device *name*: nothing here allocates on it
CPU = torch.device("cpu")


def make_toy(seed: int = 0, **cfg):
    adapter = VectorAdapter()
    data = adapter.prepare(toy_data(64))
    adapter.fit(data)
    torch.manual_seed(seed)
    method = ToyMethod(adapter.build_encoder(), 8)
    config = TrainConfig(epochs=cfg.pop("epochs", 2), batch_size=cfg.pop("batch_size", 16), seed=seed,
                         progress=False, trackers=None, **cfg)
    return Trainer(method, adapter, config), data


def weights(module: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in module.parameters()])


# ------------------------------------------------------------------------------- fused optimiser
@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_fused_optimizer_on_cpu_equals_the_plain_step(optimizer):
    # torch 2.11 has fused AdamW and SGD kernels for CPU tensors too, so True runs here
    plain, data = make_toy(optimizer=optimizer, lr=0.05, fused_optimizer=False)
    plain.fit(data)
    fused, _ = make_toy(optimizer=optimizer, lr=0.05, fused_optimizer=True)
    fused.fit(data)
    assert fused.resolved["fused_optimizer"] is True and plain.resolved["fused_optimizer"] is False
    assert all(g["fused"] for g in fused.accelerator._optimizers[0].optimizer.param_groups)
    start, _ = make_toy()
    moved = (weights(plain.method) - weights(start.method)).abs().max()
    assert moved > 1e-2  # the runs trained, so equality below is not trivially true
    assert torch.allclose(weights(fused.method), weights(plain.method), atol=1e-5, rtol=1e-5)
    assert [h["loss"] for h in fused.history] == pytest.approx([h["loss"] for h in plain.history], abs=1e-5)


def test_fused_optimizer_resolution():
    assert fast_path.resolve_fused(None, "adamw", CUDA) and fast_path.resolve_fused(None, "sgd", CUDA)
    assert not fast_path.resolve_fused(None, "adamw", CPU)
    assert not fast_path.resolve_fused(None, "lars", CUDA)  # LARS keeps its own step
    assert not fast_path.resolve_fused(False, "adamw", CUDA)
    with pytest.raises(ConfigError, match="lars"):
        fast_path.resolve_fused(True, "lars", CPU)
    with pytest.raises(ConfigError, match="fused_optimizer"):
        TrainConfig(fused_optimizer="yes").validate()


def test_lars_with_fused_true_is_a_config_error():
    trainer, data = make_toy(optimizer="lars", fused_optimizer=True)
    with pytest.raises(ConfigError, match="keeps its own step"):
        trainer.fit(data)


class Crash(Exception):
    pass


def crash_at_views_call(trainer: Trainer, n: int) -> None:
    calls = {"n": 0}
    original = trainer.adapter.views

    def views_then_crash(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == n:
            raise Crash()
        return original(*args, **kwargs)

    trainer.adapter.views = views_then_crash


def test_resume_of_a_plain_checkpoint_with_fused_kernels(tmp_path):
    # the checkpoint's param groups say fused=False; the resumed run's choice wins, and its
    # fused step takes over the optimiser state
    full, data = make_toy(epochs=3, optimizer="adamw", fused_optimizer=False, output_dir=str(tmp_path / "full"),
                          checkpoint_every=1)
    full.fit(data)
    out = str(tmp_path / "run")
    broken, _ = make_toy(epochs=3, optimizer="adamw", fused_optimizer=False, output_dir=out, checkpoint_every=1)
    crash_at_views_call(broken, 6)
    with pytest.raises(Crash):
        broken.fit(data)
    resumed, _ = make_toy(epochs=3, optimizer="adamw", fused_optimizer=True, output_dir=out, checkpoint_every=1,
                          resume=True)
    resumed.fit(data)
    groups = resumed.accelerator._optimizers[0].optimizer.param_groups
    assert all(g["fused"] for g in groups)
    assert torch.allclose(weights(resumed.method), weights(full.method), atol=1e-5)


# ------------------------------------------------------------------------------- channels_last
def make_image(channels_last, seed: int = 0, mixed_precision: str = "no"):
    from multissl.adapters import get_adapter
    from multissl.methods import build_method

    adapter = get_adapter("image", image_size=16)
    images = np.random.default_rng(0).integers(0, 256, (32, 16, 16, 3), dtype=np.uint8)
    prepared = adapter.prepare(images)
    adapter.fit(prepared)
    torch.manual_seed(seed)
    encoder = adapter.build_encoder("small_cnn", width=0.25, embed_dim=16)
    method = build_method("simclr", encoder, 16, proj_hidden_dim=16, proj_dim=8)
    cfg = TrainConfig(epochs=1, batch_size=8, max_steps=3, optimizer="sgd", lr=0.1, seed=seed, progress=False,
                      trackers=None, channels_last=channels_last, mixed_precision=mixed_precision)
    return Trainer(method, adapter, cfg), prepared


def test_channels_last_trains_like_the_contiguous_run():
    seen = []
    plain, data = make_image(channels_last=False)
    plain.fit(data)
    fast, _ = make_image(channels_last=True)
    conv = next(m for m in fast.method.modules() if isinstance(m, nn.Conv2d))
    nhwc = lambda t: t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous()  # noqa: E731
    conv.register_forward_pre_hook(lambda m, args: seen.append((nhwc(args[0]), nhwc(m.weight))))
    fast.fit(data)
    assert plain.resolved["channels_last"] is False and fast.resolved["channels_last"] is True
    # the views (B, 3, 16, 16) and the conv weights really were in NHWC order during training
    assert len(seen) == 6 and all(view and weight for view, weight in seen)  # 3 steps x 2 views
    assert conv.weight.is_contiguous()  # handed back in the default order
    start, _ = make_image(channels_last=False)
    assert (weights(plain.method) - weights(start.method)).abs().max() > 1e-3
    assert torch.allclose(weights(fast.method), weights(plain.method), atol=1e-5, rtol=1e-4)
    assert fast.history[0]["loss"] == pytest.approx(plain.history[0]["loss"], abs=1e-5)


def test_channels_last_resolution_and_conversions():
    cnn = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten())
    mlp = nn.Sequential(nn.Linear(4, 4))
    assert fast_path.resolve_channels_last(None, "image", cnn, CUDA)
    assert fast_path.resolve_channels_last(None, "video", cnn, CUDA)
    assert fast_path.resolve_channels_last(None, "image", cnn, CPU) == torch.backends.mkldnn.is_available()
    assert not fast_path.resolve_channels_last(None, "image", mlp, CPU)
    assert not fast_path.resolve_channels_last(None, "image", mlp, CUDA)  # nothing to gain without convs
    assert not fast_path.resolve_channels_last(None, "text", cnn, CUDA)
    assert fast_path.resolve_channels_last(True, "text", mlp, CPU)

    net = nn.Sequential(nn.Conv3d(2, 4, 3), nn.Conv2d(2, 4, 3), nn.Linear(3, 3))
    fast_path.model_to_channels_last(net)
    assert net[0].weight.is_contiguous(memory_format=torch.channels_last_3d) and not net[0].weight.is_contiguous()
    assert net[1].weight.is_contiguous(memory_format=torch.channels_last) and not net[1].weight.is_contiguous()
    assert net[2].weight.is_contiguous()

    image, clip, ids = torch.rand(2, 3, 5, 5), torch.rand(2, 3, 4, 5, 5), torch.arange(8).view(2, 2, 2, 1)
    out = fast_path.views_to_channels_last([image, {"clip": clip, "ids": ids}])
    assert out[0].is_contiguous(memory_format=torch.channels_last) and torch.equal(out[0], image)
    assert out[1]["clip"].is_contiguous(memory_format=torch.channels_last_3d) and torch.equal(out[1]["clip"], clip)
    assert out[1]["ids"] is ids  # integer tensors (token ids, masks) pass unchanged


# ------------------------------------------------------------------------------- mixed precision
@pytest.mark.parametrize("amx", [True, False])
def test_auto_mixed_precision_on_cpu_is_bf16_for_conv_nets_only_with_bf16_units(monkeypatch, amx):
    monkeypatch.setattr(fast_path, "cpu_has_bf16_matmul", lambda: amx)
    cnn = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten())
    mlp = nn.Sequential(nn.Linear(4, 4))
    resolve = fast_path.resolve_mixed_precision
    want = "bf16" if amx else "no"
    assert resolve("auto", "image", cnn, on_cpu=True, spatial_side=32) == want
    assert resolve("auto", "video", cnn, on_cpu=True) == want  # size unknown (a stream): the conv net decides
    assert resolve("auto", "image", cnn, on_cpu=True, spatial_side=8) == "no"  # too small to pay (8x8 digits)
    assert resolve("auto", "image", mlp, on_cpu=True, spatial_side=32) == "no"
    assert resolve("auto", "text", cnn, on_cpu=True) == "no"
    assert resolve("auto", "timeseries", cnn, on_cpu=True) == "no"
    for explicit in ("no", "bf16", "fp16"):  # an explicit choice is never second-guessed
        assert resolve(explicit, "image", cnn, on_cpu=True, spatial_side=32) == explicit


@pytest.mark.parametrize("avx512_bf16,amx,units", [(True, True, "amx"), (True, False, "avx512_bf16"),
                                                    (False, False, "none"), (False, True, "none")])
def test_cpu_bf16_detection_needs_avx512_bf16_with_or_without_amx(monkeypatch, avx512_bf16, amx, units):
    # Intel with AMX and AMD Zen 4 (AVX-512 BF16, no AMX) both run bf16 convolutions 2-4x faster
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
    assert fast_path.cpu_has_bf16_matmul() is avx512_bf16
    assert fast_path.cpu_bf16_units() == units


@pytest.mark.parametrize("units,want3d", [("amx", "bf16"), ("avx512_bf16", "no")])
def test_auto_bf16_for_3d_conv_nets_only_on_amx_cpus(monkeypatch, units, want3d):
    # torch 2.11's oneDNN bf16 Conv3d backward gives random NaN gradients on AVX-512 BF16 without AMX
    monkeypatch.setattr(fast_path, "cpu_has_bf16_matmul", lambda: True)
    monkeypatch.setattr(fast_path, "cpu_bf16_units", lambda: units)
    c3d = nn.Sequential(nn.Conv3d(1, 4, 3), nn.Flatten())
    c2d = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten())
    resolve = fast_path.resolve_mixed_precision
    assert resolve("auto", "video", c3d, on_cpu=True, spatial_side=32) == want3d
    assert resolve("auto", "image", c2d, on_cpu=True, spatial_side=32) == "bf16"
    assert resolve("auto", "video", c2d, on_cpu=True, spatial_side=32) == "bf16"  # a 2-D per-frame net
    assert resolve("bf16", "video", c3d, on_cpu=True, spatial_side=32) == "bf16"  # explicit: the user's call


def test_spatial_side_of_prepared_data():
    assert fast_path.spatial_side(torch.zeros(2, 3, 16, 12, dtype=torch.uint8)) == 12
    assert fast_path.spatial_side({"video": torch.zeros(2, 4, 3, 20, 24), "length": torch.ones(2)}) == 20
    assert fast_path.spatial_side(torch.zeros(2, 3, 50)) is None  # series: no image side


def test_cpu_image_run_resolves_auto_to_bf16_on_bf16_cpus_and_trains(monkeypatch):
    monkeypatch.setattr(fast_path, "cpu_has_bf16_matmul", lambda: True)
    fast, data = make_image(channels_last=None, mixed_precision="auto")
    fast.fit(data)
    assert fast.resolved["mixed_precision"] == "bf16"
    assert fast.resolved["channels_last"] == torch.backends.mkldnn.is_available()
    assert all(np.isfinite(h["loss"]) for h in fast.history)
    plain, _ = make_image(channels_last=False, mixed_precision="no")
    plain.fit(data)
    assert plain.resolved["mixed_precision"] == "no"
    # bf16 changes the numbers, but only by rounding: the first loss agrees to bf16 precision
    assert fast.history[0]["loss"] == pytest.approx(plain.history[0]["loss"], rel=2e-2)
    monkeypatch.setattr(fast_path, "cpu_has_bf16_matmul", lambda: False)
    off, _ = make_image(channels_last=None, mixed_precision="auto")
    off.fit(data)
    assert off.resolved["mixed_precision"] == "no"


# ------------------------------------------------------------------------------- torch.compile
def test_compile_trains_like_eager_and_hands_back_a_plain_module(monkeypatch):
    eager, data = make_toy()
    eager.fit(data)
    compiled, _ = make_toy(compile="aot_eager")
    calls = []
    inner = fast_path.compile_in_place
    monkeypatch.setattr(fast_path, "compile_in_place", lambda m, o: (calls.append(o), inner(m, o)))
    compiled.fit(data)
    assert calls == [{"backend": "aot_eager"}]
    assert compiled.method._compiled_call_impl is None  # uncompiled after fit
    assert [h["loss"] for h in compiled.history] == pytest.approx([h["loss"] for h in eager.history], abs=1e-5)
    assert torch.allclose(weights(compiled.method), weights(eager.method), atol=1e-5)


def test_compile_actually_traces_the_method():
    import torch._dynamo
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    trainer, data = make_toy(compile="aot_eager", epochs=1)
    trainer.fit(data)
    assert counters["stats"]["unique_graphs"] >= 1  # dynamo captured the forward (not silently eager)
    assert counters["aot_autograd"]["total"] >= 1


def test_compiled_checkpoints_have_plain_keys_and_resume_exactly(tmp_path):
    from safetensors.torch import load_file

    full, data = make_toy(epochs=3, compile="aot_eager", output_dir=str(tmp_path / "full"), checkpoint_every=1)
    full.fit(data)
    out = tmp_path / "run"
    broken, _ = make_toy(epochs=3, compile="aot_eager", output_dir=str(out), checkpoint_every=1)
    crash_at_views_call(broken, 6)
    with pytest.raises(Crash):
        broken.fit(data)
    ckpt = broken.latest_checkpoint()
    keys = set(load_file(str(next(ckpt.glob("*.safetensors")))))
    plain, _ = make_toy()
    assert keys == set(plain.method.state_dict())  # no "_orig_mod." prefix
    saved = tmp_path / "saved"
    shutil.copytree(ckpt, saved)  # the resumed run below prunes it
    resumed, _ = make_toy(epochs=3, compile="aot_eager", output_dir=str(out), checkpoint_every=1, resume=True)
    resumed.fit(data)
    assert torch.allclose(weights(resumed.method), weights(full.method), atol=1e-6)
    # and an eager run resumes the compiled run's checkpoint (same keys)
    eager, _ = make_toy(epochs=3, output_dir=str(tmp_path / "eager"), checkpoint_every=1, resume=str(saved))
    eager.fit(data)
    assert torch.allclose(weights(eager.method), weights(full.method), atol=1e-5)


def test_compile_option_values():
    assert fast_path.compile_options(False) is None
    assert fast_path.compile_options(True) == {}
    assert fast_path.compile_options("max-autotune") == {"mode": "max-autotune"}
    assert fast_path.compile_options("aot_eager") == {"backend": "aot_eager"}
    with pytest.raises(ConfigError, match="max-autotune"):
        TrainConfig(compile="fastest").validate()
    with pytest.raises(ConfigError):
        TrainConfig(compile=3).validate()


# ------------------------------------------------------------------------------- prefetch
def test_prefetcher_hands_out_batch_i_and_fetches_i_plus_1_ahead():
    fetched = []

    def fetch(i):
        fetched.append(i)
        return torch.full((2,), float(i))

    pre = fast_path.DevicePrefetcher(fetch, CPU, stop=4, ahead=True)
    assert float(pre.get(0)[0]) == 0 and fetched == [0, 1]  # batch 1 is on its way before step 0 runs
    assert float(pre.get(1)[0]) == 1 and fetched == [0, 1, 2]
    assert float(pre.get(3)[0]) == 3 and fetched == [0, 1, 2, 3]  # out of sequence (a resume): fetched now
    assert pre.prefetched == 1  # only batch 1 came from the fetch ahead; nothing past stop=4 was fetched
    plain = fast_path.DevicePrefetcher(fetch, CPU, stop=4, ahead=False)
    fetched.clear()
    assert float(plain.get(2)[0]) == 2 and fetched == [2]


def test_trainer_batches_are_the_hand_computed_slices_with_and_without_fetch_ahead(monkeypatch):
    """The loader's batch i is this rank's slice of the epoch's permutation, across epoch
    boundaries and accumulation; fetching ahead (forced on CPU) changes neither batches nor weights."""
    def run(ahead):
        seen = []
        trainer, data = make_toy(epochs=2, batch_size=16, grad_accum_steps=2)
        original = trainer.adapter.views

        def record(batch, *a, **k):
            seen.append(batch.clone())
            return original(batch, *a, **k)

        trainer.adapter.views = record
        if ahead:
            base = fast_path.DevicePrefetcher

            class Ahead(base):
                def __init__(self, fetch, device, stop, ahead):
                    super().__init__(fetch, device, stop, ahead=True)
                    made.append(self)

            made = []
            monkeypatch.setattr(fast_path, "DevicePrefetcher", Ahead)
            trainer.fit(data)
            monkeypatch.setattr(fast_path, "DevicePrefetcher", base)
            assert made[0].prefetched == len(seen) - 1
        else:
            trainer.fit(data)
        return seen, weights(trainer.method), data

    seen, w, data = run(ahead=False)
    # 64 records, batch 16 -> 4 micro-batches per epoch, 2 per step, 2 steps per epoch, 2 epochs
    expected = [data[epoch_permutation(64, 0, e)[b * 16:(b + 1) * 16]] for e in range(2) for b in range(4)]
    assert len(seen) == 8 and all(torch.equal(s, x) for s, x in zip(seen, expected))
    seen_ahead, w_ahead, _ = run(ahead=True)
    assert all(torch.equal(s, x) for s, x in zip(seen_ahead, expected))
    assert torch.equal(w_ahead, w)


@pytest.mark.parametrize("name", ["byol", "moco"])
def test_compiled_ema_method_does_not_recompile_every_step(name):
    # the EMA momentum changes after every step; read inside the compiled forward it would make
    # dynamo recompile at each step (and give up after its cache limit, running eagerly)
    import torch._dynamo
    from torch._dynamo.utils import counters
    from multissl.methods import build_method

    def run(compile):
        adapter = VectorAdapter()
        data = adapter.prepare(toy_data(64))
        adapter.fit(data)
        torch.manual_seed(0)
        method = build_method(name, adapter.build_encoder(), 8)
        cfg = TrainConfig(epochs=2, batch_size=16, seed=0, progress=False, trackers=None, compile=compile)
        trainer = Trainer(method, adapter, cfg)
        trainer.fit(data)
        return trainer

    torch._dynamo.reset()
    counters.clear()
    compiled = run("aot_eager")
    assert compiled.resolved["total_steps"] == 8
    # traced once (plus the part after the logged value), not once per step as before
    # SSLMethod.logged_value: 8 graphs for 8 steps
    assert 1 <= counters["stats"]["unique_graphs"] <= 2
    eager = run(False)
    assert [h["loss"] for h in compiled.history] == pytest.approx([h["loss"] for h in eager.history], abs=1e-5)
