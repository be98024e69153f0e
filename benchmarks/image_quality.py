"""Representation quality after SimCLR on MNIST: multissl vs lightly, same budget and network.

Protocol (the project's issue #2):

- pretrain without labels on the first 8,000 MNIST test images (28x28, one channel), with the
  same ResNet-18 for both sides (3x3 stem, stride 1, no max-pool, fc = identity; width 0.5 by
  default, i.e. a half-width ResNet-18 with 256-d embeddings), the same initial weights, batch,
  epochs, SGD settings and per-step cosine schedule, the same augmentation strengths (lightly's
  ``SimCLRTransform(input_size=28, cj_strength=0.5, gaussian_blur=0.0)``; multissl's image
  adapter set to match) and the same normalisation (mean/std of the 8,000 training images);
- evaluate on the last 2,000 images with frozen features:
  * a logistic-regression probe (``multissl.evaluation.linear_probe``: standardised features,
    scikit-learn L-BFGS, C = 1) trained on 10 labelled images per class drawn from the 8,000,
    mean (and std) over 5 draws;
  * weighted kNN (k = 20, temperature 0.1, ``multissl.evaluation.knn_accuracy``) with all 8,000
    labels;
- references with the same evaluation: the untrained encoder (the shared initial weights) and
  raw pixels.

multissl runs through ``multissl.pretrain`` (the public API); lightly through its own transform,
projection head and loss in the plain loop of its examples (``benchmarks/_common.py``).

    python benchmarks/image_quality.py --quick          # < 1 minute smoke run
    nice -n 5 python benchmarks/image_quality.py        # the full run (5 epochs, ~10 min per side on 2 cores)
"""
from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (MNIST_DIR, SIMCLR, LightlySimCLR, PILDataset, copy_weights, count_params, lightly_transform,  # noqa: E402
                     load_mnist, log, machine_info, print_table, set_threads, simclr_lr, torchvision_resnet18,
                     train_lightly, write_json)

DEFAULT_OUTPUT = str(Path(__file__).resolve().parent / "results" / "image_quality.json")


def parse_args(argv: List[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(MNIST_DIR), help=f"MNIST folder with the t10k IDX gz files (default: {MNIST_DIR})")
    p.add_argument("--epochs", type=int, default=5, help="default 5: about 10 min per side on the 2-core CPU")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--width", type=float, default=0.5, help="ResNet-18 width multiplier (default 0.5: half width)")
    p.add_argument("--n-train", type=int, default=8000, help="first N images: unlabeled pretraining + labelled pool")
    p.add_argument("--n-test", type=int, default=2000, help="last N images: evaluation")
    p.add_argument("--labels-per-class", type=int, default=10)
    p.add_argument("--draws", type=int, default=5, help="label draws for the probe (mean reported)")
    p.add_argument("--knn-k", type=int, default=20)
    p.add_argument("--lightly-workers", type=int, default=1, help="DataLoader workers for lightly (default 1: its "
                   "best on 2 cores in benchmarks/image_throughput.py)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--precision", choices=["fp32", "auto", "bf16"], default="fp32",
                   help="fp32 (default: both sides in full precision, the quality comparison); auto: multissl's "
                        "Trainer decides (bf16 + channels_last on CPUs with AVX-512 BF16); bf16: both sides in bf16")
    p.add_argument("--sides", default="multissl,lightly", help="which sides to pretrain (comma-separated)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="smoke run: 256 train / 200 test images, 1 epoch, batch 64, "
                   "quarter-width ResNet-18, 2 probe draws")
    p.add_argument("--output", default=DEFAULT_OUTPUT)
    args = p.parse_args(argv)
    if args.quick:
        args.n_train, args.n_test, args.epochs, args.batch_size, args.draws, args.width = 256, 200, 1, 64, 2, 0.25
    return args


def few_label_indices(y: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.choice(np.flatnonzero(y == c), per_class, replace=False) for c in np.unique(y)])


def evaluate(z_train: np.ndarray, y_train: np.ndarray, z_test: np.ndarray, y_test: np.ndarray,
             args: argparse.Namespace) -> Dict[str, Any]:
    from multissl.evaluation import knn_accuracy, linear_probe

    probes = []
    for d in range(args.draws):
        idx = few_label_indices(y_train, args.labels_per_class, seed=1000 + d)
        probes.append(linear_probe(z_train[idx], y_train[idx], z_test, y_test))
    knn = knn_accuracy(z_train, y_train, z_test, y_test, k=args.knn_k, temperature=0.1)
    return {"probe": statistics.mean(probes), "probe_std": statistics.pstdev(probes), "probe_draws": probes,
            "knn": knn}


@torch.no_grad()
def embed_normalised(backbone: torch.nn.Module, x: np.ndarray, mean: float, std: float, batch: int = 512) -> np.ndarray:
    """What a lightly user runs at evaluation: ToTensor + Normalize (the training normalisation),
    the backbone in eval mode."""
    backbone.eval()
    out = []
    for s in range(0, len(x), batch):
        t = torch.from_numpy(x[s:s + batch]).float().div_(255.0).unsqueeze(1)
        out.append(backbone((t - mean) / std).flatten(1))
    return torch.cat(out).numpy()


def main(argv: List[str] | None = None) -> Dict[str, Any]:
    args = parse_args(argv)
    set_threads(args.threads)
    info = machine_info("cpu")
    log(f"machine: {info['cpu']} ({info['cpu_count']} CPUs, {info['torch_threads']} torch threads), torch {info['torch']}, "
        f"lightly {info['lightly']}, multissl {info['multissl']}, load {info['loadavg_at_start']}")

    from multissl import pretrain
    from multissl.adapters import get_adapter
    from multissl.trainer import embed_prepared

    x, y = load_mnist(Path(args.data))
    if args.n_train + args.n_test > len(x):
        raise SystemExit(f"--n-train + --n-test = {args.n_train + args.n_test} > {len(x)} images")
    x_tr, y_tr = x[:args.n_train], y[:args.n_train]
    x_te, y_te = x[len(x) - args.n_test:], y[len(y) - args.n_test:]
    sides = [s.strip() for s in args.sides.split(",") if s.strip()]

    # multissl's augmentation set to lightly's SimCLRTransform(input_size=28, cj_strength=0.5,
    # gaussian_blur=0.0); crop scale (0.08, 1) is lightly's default (multissl's preset: 0.2 at <= 32 px)
    adapter_config = {"cj_strength": 0.5, "blur_prob": 0.0, "crop_scale": [0.08, 1.0]}
    ref = get_adapter("image", **adapter_config)
    prepared_tr = ref.prepare(x_tr)
    ref.fit(prepared_tr)
    mean, std = ref.config["mean"][0], ref.config["std"][0]
    torch.manual_seed(args.seed)
    init_encoder = ref.build_encoder("resnet18", width=args.width)
    embed_dim = init_encoder.embed_dim
    lr = simclr_lr(args.batch_size)
    steps_per_epoch = args.n_train // args.batch_size
    total_steps = steps_per_epoch * args.epochs
    log(f"ResNet-18 width {args.width}, 3x3 stem, {count_params(init_encoder):,} params, embed {embed_dim}; "
        f"{args.epochs} epochs x {steps_per_epoch} steps of {args.batch_size}; SGD lr {lr:g} cosine; "
        f"normalisation mean {mean:.4f} std {std:.4f}")

    reps: Dict[str, Dict[str, Any]] = {}
    train_info: Dict[str, Any] = {}

    # ---------------------------------------------------------------- references
    t = time.perf_counter()
    reps["raw pixels"] = evaluate(x_tr.reshape(len(x_tr), -1) / 255.0, y_tr, x_te.reshape(len(x_te), -1) / 255.0, y_te, args)
    z_init_tr = embed_prepared(init_encoder, ref, prepared_tr).numpy()
    z_init_te = embed_prepared(init_encoder, ref, ref.prepare(x_te)).numpy()
    reps["untrained encoder"] = evaluate(z_init_tr, y_tr, z_init_te, y_te, args)
    log(f"references evaluated in {time.perf_counter() - t:.0f}s")

    # ---------------------------------------------------------------- multissl
    if "multissl" in sides:
        log("multissl: pretrain() ...")
        enc = copy.deepcopy(init_encoder)
        t = time.perf_counter()
        model = pretrain(x_tr, adapter="image", method="simclr", epochs=args.epochs, batch_size=args.batch_size,
                         seed=args.seed, encoder=enc, adapter_config=adapter_config,
                         method_kwargs={"proj_hidden_dim": embed_dim, "proj_dim": SIMCLR["proj_out"],
                                        "temperature": SIMCLR["temperature"]},
                         optimizer="sgd", lr=lr, weight_decay=SIMCLR["weight_decay"], momentum=SIMCLR["momentum"],
                         warmup_epochs=0.0, mixed_precision={"fp32": "no"}.get(args.precision, args.precision),
                         progress=False)
        secs = time.perf_counter() - t
        hist = model.config["history"]
        train_info["multissl"] = {"seconds": secs, "images_per_s": total_steps * args.batch_size / secs,
                                  "loss_per_epoch": [h["loss"] for h in hist], "resolved": model.config["training"],
                                  "adapter_config": model.adapter.get_config()}
        log(f"multissl: {secs / 60:.1f} min, {total_steps * args.batch_size / secs:.1f} img/s, "
            f"loss {hist[0]['loss']:.3f} -> {hist[-1]['loss']:.3f}")
        reps["multissl SimCLR"] = evaluate(model.embed(x_tr), y_tr, model.embed(x_te), y_te, args)

    # ---------------------------------------------------------------- lightly
    if "lightly" in sides:
        log(f"lightly: training loop with {args.lightly_workers} DataLoader worker(s) ...")
        backbone = torchvision_resnet18(args.width, in_channels=1)
        copy_weights(init_encoder, backbone)
        torch.manual_seed(args.seed)  # projection head init, reproducible
        net = LightlySimCLR(backbone, embed_dim, embed_dim, SIMCLR["proj_out"], SIMCLR["temperature"])
        transform = lightly_transform(28, normalize={"mean": [mean], "std": [std]})
        loader = torch.utils.data.DataLoader(PILDataset(x_tr, transform), batch_size=args.batch_size, shuffle=True,
                                             drop_last=True, num_workers=args.lightly_workers,
                                             generator=torch.Generator().manual_seed(args.seed),
                                             persistent_workers=args.lightly_workers > 0)
        t = time.perf_counter()
        losses = train_lightly(net, loader, epochs=args.epochs, total_steps=total_steps, lr=lr,
                               device=torch.device("cpu"), bf16=args.precision == "bf16", log=log)
        secs = time.perf_counter() - t
        del loader
        train_info["lightly"] = {"seconds": secs, "images_per_s": total_steps * args.batch_size / secs,
                                 "loss_per_epoch": losses, "workers": args.lightly_workers}
        log(f"lightly: {secs / 60:.1f} min, {total_steps * args.batch_size / secs:.1f} img/s, "
            f"loss {losses[0]:.3f} -> {losses[-1]:.3f}")
        reps["lightly SimCLR"] = evaluate(embed_normalised(backbone, x_tr, mean, std), y_tr,
                                          embed_normalised(backbone, x_te, mean, std), y_te, args)

    # ---------------------------------------------------------------- report
    order = [k for k in ("multissl SimCLR", "lightly SimCLR", "untrained encoder", "raw pixels") if k in reps]
    rows = []
    for k in order:
        side = "multissl" if k.startswith("multissl") else "lightly" if k.startswith("lightly") else None
        ti = train_info.get(side, {}) if side else {}
        rows.append([k, f"{reps[k]['probe']:.3f} ± {reps[k]['probe_std']:.3f}", f"{reps[k]['knn']:.3f}",
                     f"{ti['seconds'] / 60:.1f}" if ti else "-", f"{ti['images_per_s']:.0f}" if ti else "-"])
    print()
    table = print_table(rows, ["representation", f"probe ({args.labels_per_class}/class, {args.draws} draws)",
                               f"kNN (k={args.knn_k})", "train min", "img/s"])
    verdict = None
    if "multissl SimCLR" in reps and "lightly SimCLR" in reps:
        gap = reps["lightly SimCLR"]["probe"] - reps["multissl SimCLR"]["probe"]
        verdict = {"probe_gap_points": 100 * gap, "target": "multissl probe >= lightly probe - 1 point",
                   "target_met": gap <= 0.01}
        print(f"\nprobe: multissl - lightly = {-100 * gap:+.1f} points   [target: no worse than -1.0 -> "
              f"{'met' if gap <= 0.01 else 'NOT met'}]")

    payload = {
        "benchmark": "image_quality", "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "command": " ".join(["python", "benchmarks/image_quality.py"] + (argv if argv is not None else sys.argv[1:])),
        "machine": info, "loadavg_at_end": list(os.getloadavg()),
        "settings": {"data": args.data, "n_train": args.n_train, "n_test": args.n_test, "epochs": args.epochs,
                     "batch_size": args.batch_size, "steps": total_steps, "width": args.width, "embed_dim": embed_dim,
                     "encoder_params": count_params(init_encoder), "lr": lr, "schedule": "per-step cosine to 0, no warmup",
                     **{f"simclr_{k}": v for k, v in SIMCLR.items()}, "proj_hidden_dim": embed_dim,
                     "normalize_mean": mean, "normalize_std": std, "labels_per_class": args.labels_per_class,
                     "draws": args.draws, "knn_k": args.knn_k, "knn_temperature": 0.1,
                     "multissl_adapter_config": adapter_config,
                     "lightly_transform": "SimCLRTransform(input_size=28, cj_strength=0.5, gaussian_blur=0.0, "
                                          "normalize=train mean/std)", "threads": args.threads,
                                          "precision": args.precision},
        "results": reps, "training": train_info, "verdict": verdict, "table": table,
    }
    write_json(args.output, payload)
    log(f"wrote {args.output}")
    return payload


if __name__ == "__main__":
    main()
