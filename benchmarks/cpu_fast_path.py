"""One SimCLR training step on a CPU in float32, with channels_last, and with bf16 autocast +
channels_last: the measurements behind the Trainer's automatic CPU fast path
(``multissl.fast_path.resolve_mixed_precision`` / ``resolve_channels_last``, docs/training.md).

Each row builds the adapter's encoder from the same seed, makes two views of a fixed batch with
the adapter's own batched augmentation, and times forward + backward + AdamW step (median of
``--reps`` after two warmup steps). Real CIFAR-10 JPEGs and scikit-learn's digits where they
fit; random clips for the video row (a step's cost does not depend on the pixel values).

    python benchmarks/cpu_fast_path.py            # about 4 minutes on the 2-core CPU
    python benchmarks/cpu_fast_path.py --quick    # smaller batches, 1 rep
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cpu_name, load_cifar_shard, log, print_table, set_threads, write_json  # noqa: E402

DEFAULT_OUTPUT = str(Path(__file__).resolve().parent / "results" / "cpu_fast_path.json")
MODES = ("fp32", "fp32+channels_last", "bf16+channels_last")


def step_seconds(adapter: Any, prepared: Any, encoder: str, batch: int, mode: str, reps: int,
                 **encoder_kwargs: Any) -> float:
    from multissl.adapters.base import take
    from multissl.methods import build_method

    views = adapter.views(take(prepared, torch.arange(batch)), n_views=2, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    enc = adapter.build_encoder(encoder, **encoder_kwargs)
    method = build_method("simclr", enc, enc.embed_dim).train()
    if "channels_last" in mode:
        fmt = torch.channels_last if views[0].ndim == 4 else torch.channels_last_3d
        method = method.to(memory_format=fmt)
        views = [v.contiguous(memory_format=fmt) for v in views]
    opt = torch.optim.AdamW(method.parameters(), lr=1e-3)
    bf16 = mode.startswith("bf16")

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = method(views)["loss"]
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step()
    step()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def cases(quick: bool) -> List[Dict[str, Any]]:
    from sklearn.datasets import load_digits

    from multissl.adapters import get_adapter

    scale = 4 if quick else 1
    cifar, _ = load_cifar_shard(512 // scale)
    digits = (load_digits().images * 16).clip(0, 255).astype(np.uint8)
    clips = np.random.default_rng(0).integers(0, 256, (64 // scale, 16, 32, 32, 3), dtype=np.uint8)

    def image(size: int) -> Callable[[Any], Any]:
        return lambda x: get_adapter("image", image_size=size)

    return [
        {"model": "ResNet-18 (3x3 stem)", "data": "CIFAR-10 32x32", "batch": 128 // scale, "encoder": "resnet18",
         "adapter": image(32), "x": cifar},
        {"model": "small_cnn", "data": "CIFAR-10 32x32", "batch": 256 // scale, "encoder": "small_cnn",
         "adapter": image(32), "x": cifar},
        {"model": "ResNet-18", "data": "CIFAR-10 upscaled 64x64", "batch": 64 // scale, "encoder": "resnet18",
         "adapter": image(64), "x": cifar},
        {"model": "c3d_small", "data": "clips 8 x 32x32", "batch": 32 // scale, "encoder": "c3d_small",
         "adapter": lambda x: get_adapter("video", clip_length=8), "x": clips},
        {"model": "small_cnn", "data": "digits 8x8", "batch": 256 // scale, "encoder": "small_cnn",
         "adapter": image(8), "x": digits},
    ]


def main(argv: List[str] | None = None) -> Dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--output", default=DEFAULT_OUTPUT)
    args = p.parse_args(argv)
    set_threads(args.threads)
    from multissl.fast_path import cpu_bf16_units

    units = cpu_bf16_units()
    log(f"CPU: {cpu_name()}; native bf16: {units}; torch {torch.__version__}, {args.threads} threads, "
        f"load {os.getloadavg()[0]:.1f}")
    rows, results = [], []
    for case in cases(args.quick):
        adapter = case["adapter"](case["x"])
        prepared = adapter.prepare(case["x"])
        adapter.fit(prepared)
        secs = {m: step_seconds(adapter, prepared, case["encoder"], case["batch"], m, 1 if args.quick else args.reps)
                for m in MODES}
        log(f"{case['model']} on {case['data']}: " + ", ".join(f"{m} {s:.3f}s" for m, s in secs.items()))
        rows.append([case["model"], case["data"], f"2 x {case['batch']}", *secs.values(),
                     secs["fp32"] / secs["bf16+channels_last"]])
        results.append({k: case[k] for k in ("model", "data", "batch", "encoder")} | {"seconds_per_step": secs})
    print()
    table = print_table(rows, ["model", "data", "views", *(f"{m} s" for m in MODES), "speed-up"])
    payload = {"benchmark": "cpu_fast_path", "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S"),
               "command": " ".join(["python", "benchmarks/cpu_fast_path.py"] + (argv if argv is not None else sys.argv[1:])),
               "machine": {"cpu": cpu_name(), "cpu_count": os.cpu_count(),
                           "bf16_units": units, "torch": torch.__version__, "threads": args.threads,
                           "loadavg_at_end": list(os.getloadavg())},
               "results": results, "table": table}
    write_json(args.output, payload)
    log(f"wrote {args.output}")
    return payload


if __name__ == "__main__":
    main()
