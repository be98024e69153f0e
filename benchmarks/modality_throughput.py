"""Per-modality training throughput: end to end through the Trainer vs the model step alone.

For one modality (``--modality text|timeseries|video|signature|image``) on synthetic data of
realistic shape, with the adapter's recommended method and encoder (what ``multissl.pretrain``
picks when they are left out):

- **end to end**: ``multissl.trainer.Trainer.fit`` on the prepared data -- batch selection,
  host-to-device copy (when the data is not kept on the device), the adapter's on-device views
  or tokens, forward, backward, optimiser step -- samples/s between the end of the warmup steps
  and the end of the last step;
- **model only** (the limit): the same method, optimiser and precision stepping on views/tokens
  computed beforehand and already on the device (a few batches, cycled), so it measures only
  forward + backward + optimiser step;
- the ratio end-to-end / model-only (issue 9 asks >= 0.85 on a GPU), and peak memory of each
  phase: host (the process's resident-set high-water mark above its start, ``VmHWM``) and device
  (``torch.cuda.max_memory_allocated``).

Synthetic data is enough for throughput: the work per sample depends on shapes, not content.

    python benchmarks/modality_throughput.py --modality timeseries --quick      # CPU smoke run, seconds
    python benchmarks/modality_throughput.py --modality video --device cuda     # bf16, GPU batch sizes
    python benchmarks/modality_throughput.py --modality all --quick             # every modality in turn

Writes ``benchmarks/results/<modality>_throughput[_quick|_cuda].json`` (or ``--output``).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
MODALITIES = ("text", "timeseries", "video", "signature", "image")

#: per modality: records and batch size on CPU (--quick) and CUDA; data shapes in make_data
SIZES: Dict[str, Dict[str, int]] = {
    "text": {"quick_n": 256, "quick_batch": 32, "cuda_n": 16384, "cuda_batch": 256},
    "timeseries": {"quick_n": 256, "quick_batch": 32, "cuda_n": 16384, "cuda_batch": 256},
    "video": {"quick_n": 64, "quick_batch": 8, "cuda_n": 2048, "cuda_batch": 64},
    "signature": {"quick_n": 256, "quick_batch": 32, "cuda_n": 16384, "cuda_batch": 512},
    "image": {"quick_n": 256, "quick_batch": 32, "cuda_n": 16384, "cuda_batch": 512},
}

_WORDS = ("the a model data learns from signal noise fast slow red green blue market price rises falls "
          "video frame pen stroke series token image train test batch epoch loss view crop mask").split()


def make_data(modality: str, n: int, seed: int = 0) -> Any:
    """Synthetic raw data in a form each adapter accepts (ARCHITECTURE.md), of typical shape."""
    rng = np.random.default_rng(seed)
    if modality == "text":  # sentences of 12-40 words
        return [" ".join(rng.choice(_WORDS, size=int(rng.integers(12, 41)))) for _ in range(n)]
    if modality == "timeseries":  # 3-channel random walks of 256 steps
        return np.cumsum(rng.normal(size=(n, 3, 256)), axis=2).astype(np.float32)
    if modality == "video":  # 16 frames of 32x32 RGB with a moving square
        v = rng.integers(0, 40, size=(n, 16, 32, 32, 3), dtype=np.uint8)
        pos = rng.integers(0, 20, size=(n, 2))
        for t in range(16):
            for i in range(n):
                r, c = (pos[i] + t) % 24
                v[i, t, r:r + 8, c:c + 8] = 220
        return v
    if modality == "signature":  # pen trajectories of 150-400 samples: x, y, time, pen-down, pressure
        out = []
        for _ in range(n):
            t = int(rng.integers(150, 401))
            xy = np.cumsum(rng.normal(size=(t, 2)), axis=0)
            out.append(np.column_stack([xy, np.arange(t) * 10.0, (rng.random(t) > 0.05).astype(float),
                                        rng.random(t)]).astype(np.float32))
        return out
    if modality == "image":  # 32x32 RGB
        return rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
    raise SystemExit(f"unknown modality {modality!r}; choose from {', '.join(MODALITIES)}")


def build(modality: str) -> tuple:
    """(adapter class, method name, defaults): the adapter's recommendations, as pretrain() picks them."""
    from multissl.adapters import get_adapter_class
    from multissl.methods import get_method_class

    cls = get_adapter_class(modality)
    defaults = dict(cls.defaults)
    method = defaults.get("method", "simclr")
    if getattr(get_method_class(method), "input_kind", "views") == "tokens":
        defaults.update(getattr(cls, "token_defaults", {}))
    return cls, method, defaults


def _hwm_reset() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _status_mb(field: str) -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


class Meter:
    """Peak host RSS (VmHWM, reset at the start) above the RSS at the start, and peak CUDA memory."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def __enter__(self) -> "Meter":
        import gc

        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        _hwm_reset()
        self.start = _status_mb("VmRSS")
        return self

    def __exit__(self, *exc: Any) -> None:
        self.host_peak_mb = _status_mb("VmHWM") - self.start
        self.host_rss_start_mb = self.start
        self.device_peak_mb = (torch.cuda.max_memory_allocated(self.device) / 2**20
                               if self.device.type == "cuda" else None)


def run(modality: str, args: argparse.Namespace) -> Dict[str, Any]:
    from multissl.adapters import get_adapter
    from multissl.methods import build_method
    from multissl.trainer import TrainConfig, Trainer, build_optimizer, step_generator
    from multissl.adapters.base import take, to_device

    device = torch.device(args.device)
    cuda = device.type == "cuda"
    sizes = SIZES[modality]
    n = args.num_records or (sizes["cuda_n"] if cuda else sizes["quick_n"] if args.quick else 4 * sizes["quick_n"])
    batch = args.batch_size or (sizes["cuda_batch"] if cuda else sizes["quick_batch"])
    warmup = args.warmup if args.warmup is not None else (10 if cuda else 2)
    steps = args.steps if args.steps is not None else (40 if cuda else 4 if args.quick else 10)
    n = max(n, batch * 2)
    precision = "bf16" if cuda and torch.cuda.is_bf16_supported() else "no"

    t = time.perf_counter()
    raw = make_data(modality, n, args.seed)
    cls, method_name, defaults = build(modality)
    adapter = get_adapter(modality)
    prepared = adapter.prepare(raw)
    adapter.fit(prepared)
    prep_s = time.perf_counter() - t
    del raw

    def new_method() -> Any:
        torch.manual_seed(args.seed)
        enc = adapter.build_encoder(defaults.get("encoder"))
        mk = dict(getattr(adapter, "method_defaults", {}).get(method_name, {}))
        return build_method(method_name, enc, adapter.embed_dim(enc), **mk)

    # ---- end to end: the Trainer, timed from the end of warmup to the end of the last step
    method = new_method()
    stamps: List[float] = []
    hook = method.on_train_step_end

    def stamp(progress: float) -> None:
        if cuda and len(stamps) + 1 in (warmup, warmup + steps):
            torch.cuda.synchronize(device)
        stamps.append(time.perf_counter())
        hook(progress)

    method.on_train_step_end = stamp
    cfg = TrainConfig(epochs=10_000, batch_size=batch, seed=args.seed, progress=False, trackers=None,
                      max_steps=warmup + steps, mixed_precision=precision)
    with Meter(device) as e2e_mem:
        trainer = Trainer(method, adapter, cfg)
        trainer.fit(prepared)
    e2e_rate = steps * batch / (stamps[warmup + steps - 1] - stamps[warmup - 1])
    on_device = cuda  # the Trainer's default: prepared data kept on the GPU when it fits (< 2 GiB)

    # ---- model only: views/tokens precomputed on the device, cycled
    method = new_method()
    bind = getattr(method, "bind_adapter", None)
    if bind is not None:
        bind(adapter)
    method.to(device).train()
    optimizer = build_optimizer(method, trainer.resolved["optimizer"], trainer.resolved["lr"],
                                trainer.resolved["weight_decay"], 0.9)
    tokens = getattr(method, "input_kind", "views") == "tokens"
    inputs = []
    for i in range(4):
        idx = torch.arange(i * batch, (i + 1) * batch) % n
        b = to_device(take(prepared, idx), device)
        g = step_generator(device, args.seed, i, 0)
        inputs.append((adapter.tokens(b, generator=g) if tokens else adapter.views(b, n_views=method.n_views, generator=g), g))
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if precision == "bf16" else None)

    def model_step(i: int) -> None:
        x, g = inputs[i % len(inputs)]
        from contextlib import nullcontext

        with autocast or nullcontext():
            out = method(x, generator=g) if tokens else method(x)
        out["loss"].backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        method.on_train_step_end(0.5)

    with Meter(device) as model_mem:
        for i in range(warmup):
            model_step(i)
        if cuda:
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        for i in range(steps):
            model_step(warmup + i)
        if cuda:
            torch.cuda.synchronize(device)
        model_rate = steps * batch / (time.perf_counter() - t0)

    return {"modality": modality, "method": method_name, "encoder": defaults.get("encoder"), "records": n,
            "batch_size": batch, "warmup_steps": warmup, "timed_steps": steps, "precision": precision,
            "data_on_device": on_device, "prepare_seconds": prep_s,
            "end_to_end_samples_per_s": e2e_rate, "model_only_samples_per_s": model_rate,
            "ratio": e2e_rate / model_rate,
            "end_to_end_host_peak_mb": e2e_mem.host_peak_mb, "model_only_host_peak_mb": model_mem.host_peak_mb,
            "host_rss_start_mb": e2e_mem.host_rss_start_mb,
            "end_to_end_device_peak_mb": e2e_mem.device_peak_mb, "model_only_device_peak_mb": model_mem.device_peak_mb}


def machine(device: str, threads: int) -> Dict[str, Any]:
    info: Dict[str, Any] = {"device": device, "platform": platform.platform(), "cpu_count": os.cpu_count(),
                            "torch": torch.__version__, "torch_threads": threads,
                            "loadavg_at_start": list(os.getloadavg())}
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    else:
        info["note"] = "CPU run; on the project machine: 2-core CPU, no GPU, shared with other jobs"
    return info


def main(argv: Optional[List[str]] = None) -> List[Dict[str, Any]]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--modality", required=True, choices=MODALITIES + ("all",))
    p.add_argument("--device", default="cpu", help="cpu or cuda[:i]")
    p.add_argument("--quick", action="store_true", help="small CPU run (seconds per modality)")
    p.add_argument("--num-records", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--warmup", type=int, default=None)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", default=None, help="JSON file (one modality) or folder (--modality all; one fresh "
                   "process per modality)")
    args = p.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        p.error("--device cuda but torch.cuda.is_available() is False")
    torch.set_num_threads(args.threads)
    suffix = "_cuda" if args.device.startswith("cuda") else "_quick" if args.quick else ""
    argv = list(argv if argv is not None else sys.argv[1:])
    if args.modality == "all":
        # one fresh process per modality: each one's peak memory is its own, not the leftovers of the last
        import subprocess

        folder = Path(args.output) if args.output else REPO / "benchmarks" / "results"
        rest = ["--device", args.device, "--threads", str(args.threads), "--seed", str(args.seed)]
        rest += ["--quick"] if args.quick else []
        for flag in ("num_records", "batch_size", "warmup", "steps"):
            if getattr(args, flag) is not None:
                rest += ["--" + flag.replace("_", "-"), str(getattr(args, flag))]
        results = []
        for m in MODALITIES:
            out = folder / f"{m}_throughput{suffix}.json"
            subprocess.run([sys.executable, __file__, "--modality", m, "--output", str(out), *rest], check=True)
            results.append(json.loads(out.read_text()))
        return results
    r = run(args.modality, args)
    r["machine"] = machine(args.device, args.threads)
    r["command"] = " ".join(["python", "benchmarks/modality_throughput.py"] + argv)
    dev = r["end_to_end_device_peak_mb"]
    print(f"{args.modality:>10}  {r['method']:>8}/{r['encoder']:<12} batch {r['batch_size']:>4}  "
          f"end-to-end {r['end_to_end_samples_per_s']:9.1f}/s  model-only {r['model_only_samples_per_s']:9.1f}/s  "
          f"ratio {r['ratio']:.2f}  host peak {r['end_to_end_host_peak_mb']:.0f}/{r['model_only_host_peak_mb']:.0f} MB"
          + (f"  device peak {dev:.0f}/{r['model_only_device_peak_mb']:.0f} MB" if dev is not None else ""),
          flush=True)
    out = Path(args.output) if args.output else REPO / "benchmarks" / "results" / f"{args.modality}_throughput{suffix}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(r, indent=2, default=str))
    return [r]


if __name__ == "__main__":
    main()
