"""How often a bf16 ``Conv3d`` backward returns NaN gradients on this CPU (the check behind the
fast path's rule that 3-D conv nets get automatic bf16 only on AMX CPUs, docs/training.md).

For each shape, the same convolution (3x3x3, padding 1, no bias) and the same input are run
``--trials`` times under ``torch.autocast("cpu", torch.bfloat16)``, forward + backward; a trial
is bad when the weight or input gradient has a non-finite value. float32 is run alongside as the
control. On the project's Zen 4 EPYC (AVX-512 BF16, no AMX) with torch 2.11, inputs 2 frames
deep gave NaN in roughly 5-30 % of the trials; every Conv2d shape tried was clean.

    python benchmarks/conv3d_bf16_nan.py            # about a minute on 2 cores
"""
from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import log, print_table, set_threads, write_json  # noqa: E402

DEFAULT_OUTPUT = str(Path(__file__).resolve().parent / "results" / "conv3d_bf16_nan.json")
#: (batch, channels, frames, height, width)
SHAPES = [(16, 64, 2, 4, 4), (8, 32, 2, 2, 2), (16, 128, 2, 8, 8), (16, 64, 4, 8, 8), (16, 64, 1, 4, 4),
          (16, 64, 3, 4, 4)]


def bad_trials(shape: tuple, trials: int, bf16: bool, seed: int = 0) -> int:
    torch.manual_seed(seed)
    conv = torch.nn.Conv3d(shape[1], shape[1] * 2, 3, padding=1, bias=False)
    x = torch.randn(*shape)
    bad = 0
    for _ in range(trials):
        c = copy.deepcopy(conv)
        xx = x.clone().requires_grad_(True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            y = c(xx)
        y.float().sum().backward()
        bad += int(not (torch.isfinite(c.weight.grad).all() and torch.isfinite(xx.grad).all()))
    return bad


def main(argv: List[str] | None = None) -> Dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=int, default=40)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--output", default=DEFAULT_OUTPUT)
    args = p.parse_args(argv)
    set_threads(args.threads)
    from multissl.fast_path import cpu_bf16_units

    units = cpu_bf16_units()
    log(f"native bf16: {units}; torch {torch.__version__}, {args.threads} threads, {args.trials} trials per shape")
    rows, results = [], []
    t0 = time.perf_counter()
    for shape in SHAPES:
        b, f = bad_trials(shape, args.trials, True), bad_trials(shape, args.trials, False)
        rows.append(["x".join(map(str, shape)), f"{b}/{args.trials}", f"{f}/{args.trials}"])
        results.append({"shape_bcthw": list(shape), "bf16_bad": b, "fp32_bad": f, "trials": args.trials})
    print()
    print_table(rows, ["input (B x C x T x H x W)", "bf16 NaN trials", "fp32 NaN trials"])
    payload = {"benchmark": "conv3d_bf16_nan", "bf16_units": units, "torch": torch.__version__,
               "threads": args.threads, "seconds": round(time.perf_counter() - t0, 1), "results": results}
    write_json(args.output, payload)
    log(f"wrote {args.output}")
    return payload


if __name__ == "__main__":
    main()
