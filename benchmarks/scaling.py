"""Streaming pretraining as the dataset grows: samples/s and peak RSS at 10k, 100k and 1M records.

Writes N small grayscale images (8x8 uint8, a fixed-size-list Parquet column of shape (1, 8, 8),
row groups of 4,096 rows) into a temporary folder, then pretrains one epoch of SimCLR on each size
with ``multissl.streaming.ParquetStream`` (image adapter, on-device SimCLR views, a two-layer MLP
encoder 64-256-64: small on purpose, so that 1M records fit in a few minutes on this CPU and the
data path -- Parquet reads, decoding, shuffling, augmentation -- is most of each step, where any
slowdown with size would show).

Each size runs in its own child process (``--child``), so the RSS of one size cannot leak into
the next; the child reports its resident-set high-water mark (``VmHWM`` from /proc/self/status)
and its RSS after imports, before any data is touched. Throughput is measured over the epoch
after the first ``--warmup`` steps (timestamps from the method's per-step hook), as wall-clock
samples/s and as samples per CPU-second of the child (all its threads; other jobs' load on a
shared machine changes the first, not the second). The first size is measured again after the
largest, and its median over both ends is the baseline.

Targets (issue 9): samples/s within 20% of the 10k figure, peak RSS growth < 200 MB from 10k to
1M. Prints a table and writes ``benchmarks/results/scaling.json``.

    nice -n 10 .venv/bin/python benchmarks/scaling.py                  # 10k, 100k, 1M (~10 min on 2 loaded cores)
    .venv/bin/python benchmarks/scaling.py --sizes 2000 20000 --quick  # smoke run
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

REPO = Path(__file__).resolve().parent.parent
ROW_GROUP = 4096


def write_parquet(path: Path, n: int, seed: int = 0, chunk: int = 65536) -> None:
    """n random 8x8 images with a little structure (a bright square at a random place), written in
    chunks so this process never holds the whole dataset either."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    schema = pa.schema([("image", pa.list_(pa.list_(pa.list_(pa.uint8(), 8), 8), 1))])
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, n, chunk):
            m = min(chunk, n - start)
            x = rng.integers(0, 64, size=(m, 1, 8, 8), dtype=np.uint8)
            r, c = rng.integers(0, 5, size=(2, m))
            for dr in range(4):
                for dc in range(4):
                    x[np.arange(m), 0, r + dr, c + dc] = 200
            flat = pa.array(x.reshape(-1))
            col = pa.FixedSizeListArray.from_arrays(flat, 8)
            col = pa.FixedSizeListArray.from_arrays(col, 8)
            col = pa.FixedSizeListArray.from_arrays(col, 1)
            table = pa.Table.from_arrays([col], schema=schema)
            writer.write_table(table, row_group_size=ROW_GROUP)


def _rss_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child(args: argparse.Namespace) -> Dict[str, Any]:
    """One size: pretrain one epoch streaming from ``args.data``; report timing and memory."""
    import torch

    torch.set_num_threads(args.threads)
    from multissl.adapters import get_adapter
    from multissl.methods import build_method
    from multissl.streaming import ParquetStream
    from multissl.trainer import TrainConfig, Trainer

    rss_start = _rss_mb("VmRSS")
    adapter = get_adapter("image", image_size=8, channels=1)
    stream = ParquetStream(args.data, adapter, shuffle_window=args.window, prefetch=2, fit_rows=10000)
    adapter.fit(stream.sample())
    torch.manual_seed(0)
    encoder = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 64))
    method = build_method("simclr", encoder, 64)
    stamps: List[float] = []
    cpu_stamps: List[float] = []
    hook = method.on_train_step_end

    def stamp(progress: float) -> None:
        stamps.append(time.perf_counter())
        cpu_stamps.append(time.process_time())  # all threads of this process (the prefetch thread too)
        hook(progress)

    method.on_train_step_end = stamp
    config = TrainConfig(epochs=1, batch_size=args.batch_size, seed=0, progress=False, trackers=None,
                         max_steps=args.max_steps)
    trainer = Trainer(method, adapter, config)
    t0 = time.perf_counter()
    history = trainer.fit(stream)
    wall = time.perf_counter() - t0
    steps = len(stamps)
    w = min(args.warmup, steps - 2)
    rate = (steps - 1 - w) * args.batch_size / (stamps[-1] - stamps[w])
    cpu_rate = (steps - 1 - w) * args.batch_size / (cpu_stamps[-1] - cpu_stamps[w])
    return {"records": len(stream), "steps": steps, "warmup_steps": w, "batch_size": args.batch_size,
            "samples_per_s": rate, "samples_per_cpu_s": cpu_rate, "loadavg_end": list(os.getloadavg()), "epoch_seconds": wall, "loss": history[-1]["loss"],
            "rss_start_mb": rss_start, "peak_rss_mb": _rss_mb("VmHWM"), "row_groups": len(stream.blocks),
            "file_mb": Path(args.data).stat().st_size / 2**20}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--window", type=int, default=65536, help="shuffle window (rows)")
    p.add_argument("--warmup", type=int, default=3, help="steps left out of the samples/s figure")
    p.add_argument("--max-steps", type=int, default=None, help="cap the epoch (quick runs); default: the full epoch")
    p.add_argument("--threads", type=int, default=1, help="torch threads per child (1: the other core decodes)")
    p.add_argument("--repeats", type=int, default=3, help="runs of each size up to --repeat-below records (median)")
    p.add_argument("--repeat-below", type=int, default=100_000)
    p.add_argument("--quick", action="store_true", help="smoke run: small sizes unless --sizes is given, 30 steps")
    p.add_argument("--workdir", default=None, help="where the Parquet files go (default: a temporary folder)")
    p.add_argument("--output", default=str(REPO / "benchmarks" / "results" / "scaling.json"))
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        Path(args.result).write_text(json.dumps(child(args)))
        return
    if args.quick:
        if args.sizes == p.get_default("sizes"):
            args.sizes = [2_000, 20_000]
        args.max_steps = args.max_steps or 30

    rows = []
    env = dict(os.environ, PYTHONPATH=str(REPO))

    def measure(path: Path, result: Path, times: int) -> List[Dict[str, Any]]:
        cmd = [sys.executable, __file__, "--child", "--data", str(path), "--result", str(result),
               "--batch-size", str(args.batch_size), "--window", str(args.window), "--warmup", str(args.warmup),
               "--threads", str(args.threads)] + (["--max-steps", str(args.max_steps)] if args.max_steps else [])
        runs = []
        for _ in range(times):
            subprocess.run(cmd, check=True, env=env)
            runs.append(json.loads(result.read_text()))
        return runs

    def summarise(runs: List[Dict[str, Any]]) -> Dict[str, Any]:
        import statistics

        return dict(runs[0], samples_per_s=statistics.median(x["samples_per_s"] for x in runs),
                    samples_per_s_runs=[x["samples_per_s"] for x in runs],
                    samples_per_cpu_s=statistics.median(x["samples_per_cpu_s"] for x in runs),
                    samples_per_cpu_s_runs=[x["samples_per_cpu_s"] for x in runs],
                    peak_rss_mb=max(x["peak_rss_mb"] for x in runs), epoch_seconds=max(x["epoch_seconds"] for x in runs))

    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        all_runs: Dict[int, List[Dict[str, Any]]] = {}
        for n in args.sizes:
            path = Path(tmp) / f"images_{n}.parquet"
            t = time.perf_counter()
            write_parquet(path, n)
            write_s = time.perf_counter() - t
            # short epochs are timed over few steps: repeat them (fresh processes) and take the median
            all_runs[n] = measure(path, Path(tmp) / f"result_{n}.json", args.repeats if n <= args.repeat_below else 1)
            r = summarise(all_runs[n])
            r["write_seconds"] = write_s
            rows.append(r)
            print(f"{n:>9,d} records: {r['samples_per_s']:8.0f} samples/s ({r['samples_per_cpu_s']:.0f} per CPU-s), "
                  f"peak RSS {r['peak_rss_mb']:.0f} MB ({r['steps']} steps, {r['epoch_seconds']:.0f} s)", flush=True)
            if n != args.sizes[0]:
                path.unlink()
        if len(args.sizes) > 1:
            # the first size again at the end: on a shared machine the load changes over the minutes
            # the large sizes take, so the baseline is the median over both ends of the run
            n = args.sizes[0]
            all_runs[n] += measure(Path(tmp) / f"images_{n}.parquet", Path(tmp) / f"result_{n}.json",
                                   args.repeats if n <= args.repeat_below else 1)
            rows[0] = dict(summarise(all_runs[n]), write_seconds=rows[0]["write_seconds"])
            print(f"{n:>9,d} records again: samples/s runs {[round(x) for x in rows[0]['samples_per_s_runs']]}", flush=True)

    base = rows[0]
    print(f"\n{'records':>10} {'file MB':>8} {'steps':>6} {'samples/s':>10} {'vs first':>9} {'per CPU-s':>10} "
          f"{'vs first':>9} {'peak RSS MB':>12} {'growth MB':>10}")
    for r in rows:
        r["throughput_ratio"] = r["samples_per_s"] / base["samples_per_s"]
        r["cpu_throughput_ratio"] = r["samples_per_cpu_s"] / base["samples_per_cpu_s"]
        r["rss_growth_mb"] = r["peak_rss_mb"] - base["peak_rss_mb"]
        print(f"{r['records']:>10,d} {r['file_mb']:>8.1f} {r['steps']:>6d} {r['samples_per_s']:>10.0f} "
              f"{r['throughput_ratio']:>8.2f}x {r['samples_per_cpu_s']:>10.0f} {r['cpu_throughput_ratio']:>8.2f}x "
              f"{r['peak_rss_mb']:>12.0f} {r['rss_growth_mb']:>+10.0f}")
    growth = max(r["rss_growth_mb"] for r in rows)
    # wall-clock samples/s on a machine shared with other jobs moves with their load; samples per
    # CPU-second of this process (all its threads) is the figure that load does not change
    checks = {"throughput_within_20pct": all(abs(r["throughput_ratio"] - 1) <= 0.2 for r in rows),
              "cpu_throughput_within_20pct": all(abs(r["cpu_throughput_ratio"] - 1) <= 0.2 for r in rows),
              "rss_growth_below_200mb": growth < 200}
    for key, label in (("throughput_ratio", "samples/s (wall)"), ("cpu_throughput_ratio", "samples per CPU-second")):
        lo, hi = min(r[key] for r in rows), max(r[key] for r in rows)
        ok = all(abs(r[key] - 1) <= 0.2 for r in rows)
        print(f"{label}: {lo:.2f}x-{hi:.2f}x of the first size (target within 20%): {'met' if ok else 'MISSED'}")
    print(f"peak RSS growth: {growth:+.0f} MB (target < 200 MB): {'met' if checks['rss_growth_below_200mb'] else 'MISSED'}")
    out = {"benchmark": "scaling", "command": " ".join([os.path.relpath(sys.executable, REPO)] + sys.argv),
           "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "threads": args.threads,
                       "note": "2-core CPU, no GPU, shared with other jobs"},
           "settings": {"batch_size": args.batch_size, "shuffle_window": args.window, "row_group": ROW_GROUP,
                        "max_steps": args.max_steps, "repeats": args.repeats, "repeat_below": args.repeat_below, "warmup_steps": args.warmup, "encoder": "MLP 64-256-64",
                        "method": "simclr", "data": "8x8 uint8 grayscale images, Parquet fixed-size-list column"},
           "rows": rows, "checks": checks}
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(out, indent=2))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
