"""End-to-end SimCLR training throughput: multissl vs lightly, in one process, same network.

Both sides train SimCLR on the same real CIFAR-10 images (JPEG-decoded once from one Parquet
shard) with the same ResNet-18 (3x3 stem, stride 1, no max-pool, fc = identity; lightly gets
torchvision's resnet18 modified that way and loaded with multissl's initial weights), the same
batch size, projection width, NT-Xent temperature, SGD settings and per-step cosine schedule:

- lightly, as its users write it: ``SimCLRTransform(input_size=32, cj_strength=0.5,
  gaussian_blur=0.0)`` per image in a ``torch.utils.data.DataLoader`` with CPU workers,
  ``SimCLRProjectionHead``, ``NTXentLoss``, a plain training loop. The number of DataLoader
  workers is swept (CPU: 0, 1, 2) and lightly's best is the reference. Precision as its users
  get it: float32 on a CPU (lightly's and Lightning's default), bf16 autocast on CUDA (the
  issue's reference run).
- lightly tuned (CPU): the same plus the two lines an expert adds on a CPU with bf16 matrix
  units, bf16 autocast and channels_last (model and inputs), with 0 and 1 workers: what
  lightly can reach when its user knows the trick multissl applies automatically.
- multissl, through its ``Trainer`` (what ``multissl.pretrain`` runs): uint8 tensors, batched
  augmentation on the training device with the same strengths (crop scale 0.08-1, jitter
  0.4/0.4/0.4/0.1 with p 0.8, grayscale p 0.2, flip p 0.5, no blur), with the Trainer's
  automatic fast path (bf16 autocast and channels_last on CUDA, and on CPUs with AVX-512 BF16).

Measured: images/s = steps * batch / wall time between the end of the warmup steps and the end
of the last step (data + augmentation + forward + backward + optimiser step), median over the
rounds (sides alternate within a round, so background load hits both), and peak memory (CPU:
the process's resident-set high-water mark above its RSS at the start, reset per side, plus
the DataLoader workers' private memory; GPU: ``torch.cuda.max_memory_allocated``; see
``_common.MemoryMeter``). A short breakdown then times, for one batch, multissl's
augmentation, lightly's per-image transforms (in one process) and the model step alone.

    python benchmarks/image_throughput.py                      # 2-core CPU defaults
    python benchmarks/image_throughput.py --device cuda        # bf16, batch 512, 8 workers
    python benchmarks/image_throughput.py --quick              # smoke run (a few minutes on 2 loaded cores)
    python benchmarks/image_throughput.py --device cuda --no-lightly --compile default   # multissl's fast-path switches
    python benchmarks/image_throughput.py --device cuda --no-lightly --channels-last off --fused off

``--channels-last``, ``--fused`` and ``--compile`` set the Trainer's ``channels_last``,
``fused_optimizer`` and ``compile`` options (docs/training.md, "The fast path on a GPU"); with
``auto`` (the default) the Trainer decides: both on for a ResNet on CUDA, off on CPU.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (SIMCLR, LightlySimCLR, MemoryMeter, PILDataset, StepClock, copy_weights, count_params,  # noqa: E402
                     lightly_transform, load_cifar_shard, log, machine_info, print_table, set_threads,
                     simclr_lr, torchvision_resnet18, train_lightly, write_json)

DEFAULT_OUTPUT = str(Path(__file__).resolve().parent / "results" / "image_throughput.json")


def parse_args(argv: List[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", help="cpu or cuda[:i] (default: cpu)")
    p.add_argument("--batch-size", type=int, default=None, help="default: 128 on CPU, 512 on CUDA")
    p.add_argument("--num-images", type=int, default=None, help="images decoded from the shard (default: 4096 CPU, 10000 CUDA)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first (default: 3 CPU: oneDNN sets its bf16 kernels up in the first ones; 20 CUDA)")
    p.add_argument("--steps", type=int, default=None, help="timed steps per run (default: 8 CPU, 50 CUDA)")
    p.add_argument("--rounds", type=int, default=2, help="alternating rounds; the median is reported (default: 2)")
    p.add_argument("--workers", default=None, help="lightly DataLoader workers to try, comma-separated "
                   "(default: 0,1,2 on CPU, 8 on CUDA); lightly's best is the reference")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default: 2)")
    p.add_argument("--width", type=float, default=1.0, help="ResNet-18 width multiplier (default: 1.0)")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                   help="auto: multissl's Trainer decides (TrainConfig.mixed_precision='auto'); lightly as written "
                        "runs fp32 on CPU, bf16 autocast on CUDA. fp32/bf16 force both")
    p.add_argument("--tuned-workers", default=None,
                   help="workers for the 'lightly tuned' side (bf16 autocast + channels_last), comma-separated, "
                        "'' for none (default: 0,1 on CPU, none on CUDA)")
    p.add_argument("--shard", default="train-00000-of-00005.parquet")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-breakdown", action="store_true", help="skip the per-part timing breakdown")
    p.add_argument("--quick", action="store_true", help="tiny smoke run: 256 images, batch 32, 1+2 steps, 1 round")
    p.add_argument("--output", default=DEFAULT_OUTPUT, help=f"JSON results (default: {DEFAULT_OUTPUT})")
    p.add_argument("--channels-last", choices=["auto", "on", "off"], default="auto",
                   help="multissl: TrainConfig.channels_last (auto: on for CUDA conv models)")
    p.add_argument("--fused", choices=["auto", "on", "off"], default="auto",
                   help="multissl: TrainConfig.fused_optimizer (auto: on for CUDA)")
    p.add_argument("--compile", default="off", metavar="off|on|MODE|BACKEND",
                   help="multissl: TrainConfig.compile, e.g. on, max-autotune, aot_eager (default: off); "
                        "the warmup steps absorb the compilation")
    p.add_argument("--no-lightly", action="store_true", help="time multissl only (variants of its switches)")
    args = p.parse_args(argv)
    cuda = args.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        p.error("--device cuda but torch.cuda.is_available() is False")
    args.batch_size = args.batch_size or (512 if cuda else 128)
    args.num_images = args.num_images or (10000 if cuda else 4096)
    args.warmup = args.warmup if args.warmup is not None else (20 if cuda else 3)
    args.steps = args.steps if args.steps is not None else (50 if cuda else 8)
    args.workers = [int(w) for w in (args.workers or ("8" if cuda else "0,1,2")).split(",")]
    tuned = args.tuned_workers if args.tuned_workers is not None else ("" if cuda else "0,1")
    args.tuned_workers = [int(w) for w in tuned.split(",") if w.strip()]
    if args.no_lightly:
        args.workers, args.tuned_workers, args.no_breakdown = [], [], True  # the breakdown compares with lightly
    switch = {"auto": None, "on": True, "off": False}
    args.channels_last_opt, args.fused_opt = switch[args.channels_last], switch[args.fused]
    args.compile_opt = {"off": False, "on": True}.get(args.compile, args.compile)
    if args.quick:
        args.num_images, args.batch_size, args.warmup, args.steps, args.rounds = 256, 32, 1, 2, 1
    args.multissl_precision = {"auto": "auto", "fp32": "no", "bf16": "bf16"}[args.precision]
    args.bf16 = args.precision == "bf16" or (args.precision == "auto" and cuda)  # lightly as written
    need = (args.warmup + args.steps) * args.batch_size
    if need > args.num_images:
        # one epoch covers the whole run on both sides: no DataLoader restart inside the timed window
        args.num_images = need
    return args


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        from multissl.adapters import get_adapter

        self.args = args
        self.device = torch.device(args.device)
        t0 = time.perf_counter()
        self.images, _ = load_cifar_shard(args.num_images, args.shard)
        log(f"decoded {len(self.images)} CIFAR-10 JPEGs from {args.shard} in {time.perf_counter() - t0:.1f}s")
        # multissl's augmentation set to lightly's SimCLRTransform(input_size=32, cj_strength=0.5,
        # gaussian_blur=0.0): crop scale (0.08, 1) (multissl's preset uses 0.2 at 32 px).
        self.adapter = get_adapter("image", image_size=32, cj_strength=0.5, blur_prob=0.0, crop_scale=[0.08, 1.0])
        self.prepared = self.adapter.prepare(self.images)
        self.adapter.fit(self.prepared)
        torch.manual_seed(args.seed)
        self.init_encoder = self.adapter.build_encoder("resnet18", width=args.width)
        self.embed_dim = self.init_encoder.embed_dim
        self.hidden = self.embed_dim  # lightly's CIFAR-10 setting: SimCLRProjectionHead(512, 512, 128)
        self.lr = simclr_lr(args.batch_size)
        self.total_steps = args.warmup + args.steps

    # ---------------------------------------------------------------- sides
    def new_encoder(self) -> torch.nn.Module:
        enc = self.adapter.build_encoder("resnet18", width=self.args.width)
        copy_weights(self.init_encoder, enc)
        return enc

    def multissl_method(self) -> Any:
        from multissl.methods import build_method

        return build_method("simclr", self.new_encoder(), self.embed_dim, proj_hidden_dim=self.hidden,
                            proj_dim=SIMCLR["proj_out"], temperature=SIMCLR["temperature"])

    def run_multissl(self) -> Dict[str, Any]:
        from multissl.trainer import TrainConfig, Trainer

        a = self.args
        method = self.multissl_method()
        clock = StepClock(a.warmup, a.steps, self.device)
        inner = method.on_train_step_end

        def hook(progress: float) -> None:  # called by the Trainer after every optimiser step
            inner(progress)
            clock.tick()

        method.on_train_step_end = hook  # type: ignore[method-assign]
        cfg = TrainConfig(epochs=1, batch_size=a.batch_size, max_steps=self.total_steps, optimizer="sgd", lr=self.lr,
                          weight_decay=SIMCLR["weight_decay"], momentum=SIMCLR["momentum"], warmup_epochs=0.0,
                          mixed_precision=a.multissl_precision, progress=False, seed=a.seed,
                          channels_last=a.channels_last_opt, fused_optimizer=a.fused_opt, compile=a.compile_opt)
        with MemoryMeter(self.device) as mem:
            trainer = Trainer(method, self.adapter, cfg)
            trainer.fit(self.prepared)
        if clock.step != self.total_steps:
            raise RuntimeError(f"multissl ran {clock.step} steps, expected {self.total_steps}")
        secs = clock.seconds()
        return {"images_per_s": a.steps * a.batch_size / secs, "seconds": secs, "memory": mem.result(),
                "resolved": trainer.resolved}

    def lightly_model(self) -> LightlySimCLR:
        backbone = torchvision_resnet18(self.args.width, in_channels=3)
        copy_weights(self.init_encoder, backbone)
        return LightlySimCLR(backbone, self.embed_dim, self.hidden, SIMCLR["proj_out"], SIMCLR["temperature"])

    def lightly_loader(self, workers: int) -> torch.utils.data.DataLoader:
        dataset = PILDataset(self.images, lightly_transform(32))
        g = torch.Generator().manual_seed(self.args.seed)
        return torch.utils.data.DataLoader(dataset, batch_size=self.args.batch_size, shuffle=True, drop_last=True,
                                           num_workers=workers, pin_memory=self.device.type == "cuda", generator=g)

    def run_lightly(self, workers: int, tuned: bool = False) -> Dict[str, Any]:
        a = self.args
        model = self.lightly_model()
        clock = StepClock(a.warmup, a.steps, self.device)
        with MemoryMeter(self.device) as mem:
            loader = self.lightly_loader(workers)
            train_lightly(model, loader, epochs=1, total_steps=self.total_steps, lr=self.lr, device=self.device,
                          bf16=a.bf16 or tuned, channels_last=tuned, clock=clock)
            del loader  # workers shut down inside the meter
        if clock.step != self.total_steps:
            raise RuntimeError(f"lightly ran {clock.step} steps, expected {self.total_steps}")
        secs = clock.seconds()
        return {"images_per_s": a.steps * a.batch_size / secs, "seconds": secs, "memory": mem.result()}

    # ---------------------------------------------------------------- breakdown
    def breakdown(self, resolved: Dict[str, Any], reps: int = 3) -> Dict[str, float]:
        """Seconds per batch of each part, measured in isolation (median of ``reps``); multissl's
        model step with the precision and memory format its Trainer ``resolved``."""
        a, dev = self.args, self.device
        sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)

        def timed(fn) -> float:
            fn()  # warm
            out = []
            for _ in range(reps):
                sync()
                t = time.perf_counter()
                fn()
                sync()
                out.append(time.perf_counter() - t)
            return statistics.median(out)

        idx = torch.arange(a.batch_size)
        batch = self.prepared[idx].to(dev)
        gen = torch.Generator(device=dev)
        gen.manual_seed(0)
        res: Dict[str, float] = {}
        res["multissl_views_s"] = timed(lambda: self.adapter.views(batch, n_views=2, generator=gen))
        ds = PILDataset(self.images[: a.batch_size], lightly_transform(32))
        res["lightly_transform_1proc_s"] = timed(lambda: torch.utils.data.default_collate([ds[i] for i in range(len(ds))]))

        from multissl.trainer import build_optimizer

        views = self.adapter.views(batch, n_views=2, generator=gen)

        def model_step(model: torch.nn.Module, forward, bf16: bool, channels_last: bool) -> float:
            fmt = torch.channels_last if channels_last else torch.contiguous_format
            model = model.to(dev, memory_format=fmt).train()
            x = [v.contiguous(memory_format=fmt) for v in views]
            opt = build_optimizer(model, "sgd", self.lr, SIMCLR["weight_decay"], SIMCLR["momentum"])

            def step() -> None:
                with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
                    loss = forward(model, x)
                loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)

            return timed(step)

        m_bf16, m_cl = resolved["mixed_precision"] == "bf16", bool(resolved["channels_last"])
        res["multissl_model_step_s"] = model_step(self.multissl_method(), lambda m, x: m(x)["loss"], m_bf16, m_cl)
        res["lightly_model_step_s"] = model_step(self.lightly_model(), lambda m, x: m(x[0], x[1]), a.bf16, False)
        if a.tuned_workers:
            res["lightly_tuned_model_step_s"] = model_step(self.lightly_model(), lambda m, x: m(x[0], x[1]), True, True)
        return res


def main(argv: List[str] | None = None) -> Dict[str, Any]:
    args = parse_args(argv)
    set_threads(args.threads)
    info = machine_info(args.device)
    log(f"machine: {info['cpu']} ({info['cpu_count']} CPUs, {info['torch_threads']} torch threads), "
        f"torch {info['torch']}, lightly {info['lightly']}, multissl {info['multissl']}, load {info['loadavg_at_start']}")
    bench = Bench(args)
    log(f"ResNet-18 (width {args.width}, 3x3 stem): {count_params(bench.init_encoder):,} params; batch {args.batch_size}, "
        f"{args.warmup} warmup + {args.steps} timed steps, {args.rounds} round(s), "
        f"multissl precision {args.multissl_precision}, lightly {'bf16 autocast' if args.bf16 else 'fp32'} "
        f"with workers {args.workers}, lightly tuned (bf16 + channels_last) with workers {args.tuned_workers}")

    lightly_names = [f"lightly_w{w}" for w in args.workers]
    tuned_names = [f"lightly-tuned_w{w}" for w in args.tuned_workers]
    runs: Dict[str, List[Dict[str, Any]]] = {name: [] for name in ["multissl"] + lightly_names + tuned_names}
    for r in range(args.rounds):
        # alternate the order between rounds so drift in background load does not favour one side
        order = list(runs)
        if r % 2 == 1:
            order = order[::-1]
        for name in order:
            res = (bench.run_multissl() if name == "multissl"
                   else bench.run_lightly(int(name.split("_w")[1]), tuned=name.startswith("lightly-tuned")))
            res["loadavg_1min_after"] = os.getloadavg()[0]  # other work on the machine shows up here
            runs[name].append(res)
            mem = res["memory"]
            peak = mem.get("cuda_max_allocated_mib", mem["cpu_peak_above_baseline_mib"])
            log(f"round {r + 1}/{args.rounds} {name:11s}: {res['images_per_s']:7.1f} img/s  ({res['seconds']:.1f}s timed)  "
                f"peak {peak} MiB  load {res['loadavg_1min_after']:.1f}")

    def summary(name: str) -> Dict[str, Any]:
        rs = runs[name]
        ips = [x["images_per_s"] for x in rs]
        mem_key = "cuda_max_allocated_mib" if args.device.startswith("cuda") else "cpu_peak_above_baseline_mib"
        return {"images_per_s_median": statistics.median(ips), "images_per_s_runs": ips,
                "loadavg_1min_after_runs": [x["loadavg_1min_after"] for x in rs],
                "peak_memory_mib": max(x["memory"][mem_key] for x in rs), "memory_runs": [x["memory"] for x in rs]}

    results = {name: summary(name) for name in runs}
    m_ips = results["multissl"]["images_per_s_median"]
    mem_label = "peak GPU MiB" if args.device.startswith("cuda") else "peak CPU MiB"
    resolved = runs["multissl"][0]["resolved"]
    switches = {k: resolved.get(k) for k in ("mixed_precision", "channels_last", "fused_optimizer", "compile")}
    print()
    best = best_tuned = ratio = ratio_tuned = None
    if lightly_names:
        best = max(lightly_names, key=lambda n: results[n]["images_per_s_median"])
        l_ips = results[best]["images_per_s_median"]
        ratio = m_ips / l_ips
        if tuned_names:
            best_tuned = max(tuned_names, key=lambda n: results[n]["images_per_s_median"])
            ratio_tuned = m_ips / results[best_tuned]["images_per_s_median"]

        def label(name: str) -> str:
            if name == "multissl":
                return f"multissl ({'bf16' if switches['mixed_precision'] == 'bf16' else 'fp32'}" + \
                       (", channels_last)" if switches["channels_last"] else ")")
            side = "lightly tuned (bf16, channels_last)" if name.startswith("lightly-tuned") else \
                f"lightly ({'bf16' if args.bf16 else 'fp32'})"
            return f"{side}, {name.split('_w')[1]} workers" + (" *" if name == best else "")

        rows = [[label(name), results[name]["images_per_s_median"], results[name]["images_per_s_median"] / l_ips,
                 results[name]["peak_memory_mib"]] for name in runs]
        table = print_table(rows, ["side", "images/s", "vs lightly*", mem_label])
        print(f"\nmultissl / lightly as its users run it (best: {best.split('_w')[1]} workers) = {ratio:.2f}x   "
              f"[target on the 2-core CPU: >= 1.5x -> {'met' if ratio >= 1.5 else 'NOT met'}]")
        if best_tuned:
            print(f"multissl / lightly tuned by hand (best: {best_tuned.split('_w')[1]} workers) = {ratio_tuned:.2f}x")
    else:
        table = print_table([["multissl", m_ips, results["multissl"]["peak_memory_mib"]]], ["side", "images/s", mem_label])
    print(f"multissl fast-path switches: {switches}")

    breakdown = None
    if not args.no_breakdown:
        breakdown = bench.breakdown(resolved, reps=1 if args.quick else 3)
        b = breakdown
        print("\nper batch of", args.batch_size, "(seconds, measured in isolation, median):")
        parts = [
            ["multissl augmentation (2 views, batched)", b["multissl_views_s"]],
            ["lightly SimCLRTransform x batch (1 process)", b["lightly_transform_1proc_s"]],
            ["multissl model fwd+bwd+step (its resolved precision/format)", b["multissl_model_step_s"]],
            ["lightly model fwd+bwd+step (as written)", b["lightly_model_step_s"]],
        ]
        if "lightly_tuned_model_step_s" in b:
            parts.append(["lightly model fwd+bwd+step (bf16 + channels_last)", b["lightly_tuned_model_step_s"]])
        print_table(parts, ["part", "s/batch"])
        step_m = statistics.median(x["seconds"] for x in runs["multissl"]) / args.steps
        step_l = statistics.median(x["seconds"] for x in runs[best]) / args.steps
        breakdown["multissl_end_to_end_step_s"] = step_m
        breakdown["lightly_best_end_to_end_step_s"] = step_l
        print(f"end-to-end s/step (median of rounds): multissl {step_m:.3f} (augmentation "
              f"{b['multissl_views_s'] / step_m:.1%}, model {b['multissl_model_step_s'] / step_m:.0%}); "
              f"lightly {step_l:.3f} (model {b['lightly_model_step_s'] / step_l:.0%})")

    payload = {
        "benchmark": "image_throughput", "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "command": " ".join(["python", "benchmarks/image_throughput.py"] + (argv if argv is not None else sys.argv[1:])),
        "machine": info, "loadavg_at_end": list(os.getloadavg()),
        "settings": {"device": args.device, "batch_size": args.batch_size, "num_images": len(bench.images),
                     "warmup_steps": args.warmup, "timed_steps": args.steps, "rounds": args.rounds,
                     "threads": args.threads, "width": args.width, "lightly_precision": "bf16" if args.bf16 else "fp32",
                     "lightly_workers_tried": args.workers, "lightly_tuned_workers_tried": args.tuned_workers,
                     "multissl_precision_option": args.multissl_precision, "lr": bench.lr, **{f"simclr_{k}": v for k, v in SIMCLR.items()},
                     "proj_hidden_dim": bench.hidden, "encoder_params": count_params(bench.init_encoder),
                     "multissl_augmentation": bench.adapter.augmentation_settings(),
                     "lightly_transform": "SimCLRTransform(input_size=32, cj_strength=0.5, gaussian_blur=0.0)",
                     "multissl_switches": switches},
        "results": results, "lightly_best": best, "ratio_multissl_over_lightly": ratio,
        "lightly_tuned_best": best_tuned, "ratio_multissl_over_lightly_tuned": ratio_tuned,
        "target_ratio": 1.5, "target_met": None if ratio is None else ratio >= 1.5, "breakdown_s_per_batch": breakdown, "table": table,
    }
    write_json(args.output, payload)
    log(f"wrote {args.output}")
    return payload


if __name__ == "__main__":
    main()
