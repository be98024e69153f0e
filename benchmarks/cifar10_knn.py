"""SimCLR on the full CIFAR-10 train split, then kNN on the test split: multissl vs lightly, one run.

The settings of lightly's own CIFAR-10 benchmark, which the project's issue #9 measured on an H200
(lightly 1.6: 159 s of training, 7,958 images/s, kNN 0.6615) and asks multissl to beat (kNN >= 0.66
in <= 60 s of training, in the same session as a lightly run of the same settings):

- ResNet-18 with the 3x3 stem (stride 1, no max-pool, fc = identity), projection head 512-512-128,
  NT-Xent (temperature 0.5), SGD momentum 0.9, weight decay 5e-4, lr 0.06 * batch / 128, cosine
  over 25 epochs, batch 512, bf16 autocast on CUDA;
- augmentation ``SimCLRTransform(input_size=32, cj_strength=0.5, gaussian_blur=0)``: lightly per
  image in DataLoader workers; multissl batched on the training device with the same strengths
  (crop scale 0.08-1, jitter 0.4/0.4/0.4/0.1 in random order with p 0.8, grayscale p 0.2, flip
  p 0.5, no blur);
- evaluation: weighted kNN (k = 200, temperature 0.1) of the 10,000 test images against the
  50,000 train images, frozen backbone features in eval mode.

Both sides start from the same initial backbone weights and train on the same decoded images (JPEG
decoding happens once, before either clock starts). multissl runs through ``multissl.pretrain``
(the public API, with the Trainer's automatic fast path); lightly through its transform, projection
head and loss in the plain loop of its examples (``benchmarks/_common.py``). "Training seconds" is
the wall time of the whole training call (data to the device, DataLoader workers, every epoch).

    python benchmarks/cifar10_knn.py --device cuda          # the issue's run: ~4 min on an H200 for both sides
    python benchmarks/cifar10_knn.py --quick                # CPU smoke run: 2,048 / 512 images, 1 epoch, a few minutes
    python benchmarks/cifar10_knn.py --device cuda --sides multissl   # multissl alone

Prints a table and writes ``benchmarks/results/cifar10_knn_<device>.json``.
"""
from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (CIFAR_DIR, SIMCLR, LightlySimCLR, MemoryMeter, PILDataset, copy_weights, count_params,  # noqa: E402
                     lightly_transform, load_cifar_split, log, machine_info, print_table, set_threads, simclr_lr,
                     torchvision_resnet18, train_lightly, write_json)

RESULTS = Path(__file__).resolve().parent / "results"
#: issue #9: lightly's reference run on an H200, and multissl's target
REFERENCE = {"lightly_h200_train_s": 159.0, "lightly_h200_images_per_s": 7958.0, "lightly_h200_knn": 0.6615,
             "target_knn": 0.66, "target_train_s": 60.0}
IMAGENET = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}


def parse_args(argv: List[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", help="cpu or cuda[:i] (default: cpu)")
    p.add_argument("--data", default=str(CIFAR_DIR), help=f"folder with train-*.parquet and test-*.parquet "
                   f"(default: {CIFAR_DIR})")
    p.add_argument("--epochs", type=int, default=25)
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--train-images", type=int, default=None, help="first N train images (default: all 50,000)")
    p.add_argument("--test-images", type=int, default=None, help="first N test images (default: all 10,000)")
    p.add_argument("--width", type=float, default=1.0, help="ResNet-18 width multiplier (default 1.0)")
    p.add_argument("--knn-k", type=int, default=200)
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                   help="auto: multissl's Trainer decides, lightly runs bf16 on CUDA and float32 on a CPU (as its "
                        "users run it); fp32/bf16 force both")
    p.add_argument("--lightly-workers", type=int, default=None,
                   help="lightly DataLoader workers (default: min(12, CPUs) on CUDA, 1 on CPU)")
    p.add_argument("--sides", default="multissl,lightly", help="comma-separated: multissl, lightly")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's own)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="smoke run: 2,048 train / 512 test images, 1 epoch, "
                   "batch 128, width 0.25")
    p.add_argument("--output", default=None, help="JSON path (default: benchmarks/results/cifar10_knn_<device>.json)")
    args = p.parse_args(argv)
    args.cuda = args.device.startswith("cuda")
    if args.cuda and not torch.cuda.is_available():
        p.error("--device cuda but torch.cuda.is_available() is False")
    if args.quick:
        args.train_images, args.test_images, args.epochs, args.batch_size, args.width = 2048, 512, 1, 128, 0.25
        args.knn_k = min(args.knn_k, 20)
    if args.lightly_workers is None:
        args.lightly_workers = min(12, os.cpu_count() or 1) if args.cuda else 1
    args.sides = [s.strip() for s in args.sides.split(",") if s.strip()]
    unknown = set(args.sides) - {"multissl", "lightly"}
    if unknown:
        p.error(f"unknown side(s) {sorted(unknown)}; choose from multissl, lightly")
    args.multissl_precision = {"auto": "auto", "fp32": "no", "bf16": "bf16"}[args.precision]
    args.lightly_bf16 = args.precision == "bf16" or (args.precision == "auto" and args.cuda)
    if args.output is None:
        tag = "_quick" if args.quick else ""
        args.output = str(RESULTS / f"cifar10_knn_{args.device.split(':')[0]}{tag}.json")
    return args


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def embed_lightly(backbone: torch.nn.Module, x: np.ndarray, device: torch.device, batch: int = 1024) -> np.ndarray:
    """What lightly's benchmark runs for kNN: ToTensor + Normalize (ImageNet statistics, its
    default), the backbone in eval mode; float32, as multissl's ``embed``."""
    backbone.eval()
    mean = torch.tensor(IMAGENET["mean"], device=device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET["std"], device=device).view(1, 3, 1, 1)
    out = []
    for s in range(0, len(x), batch):
        t = torch.from_numpy(x[s:s + batch]).to(device).permute(0, 3, 1, 2).float().div_(255.0)
        out.append(backbone((t - mean) / std).flatten(1).float().cpu())
    return torch.cat(out).numpy()


def main(argv: List[str] | None = None) -> Dict[str, Any]:
    args = parse_args(argv)
    if args.threads:
        set_threads(args.threads)
    device = torch.device(args.device)
    info = machine_info(args.device)
    log(f"machine: {info.get('gpu') or info['cpu']} ({info['cpu_count']} CPUs, {info['torch_threads']} torch threads), "
        f"torch {info['torch']}, lightly {info['lightly']}, multissl {info['multissl']}")

    from multissl import pretrain
    from multissl.adapters import get_adapter
    from multissl.evaluation import knn_accuracy
    from multissl.trainer import embed_prepared

    t = time.perf_counter()
    x_tr, y_tr = load_cifar_split("train", Path(args.data), args.train_images)
    x_te, y_te = load_cifar_split("test", Path(args.data), args.test_images)
    log(f"decoded {len(x_tr):,} train + {len(x_te):,} test JPEGs in {time.perf_counter() - t:.1f}s")

    # multissl's augmentation set to lightly's SimCLRTransform(input_size=32, cj_strength=0.5, gaussian_blur=0)
    adapter_config = {"image_size": 32, "cj_strength": 0.5, "blur_prob": 0.0, "crop_scale": [0.08, 1.0]}
    ref = get_adapter("image", **adapter_config)
    prepared_tr = ref.prepare(x_tr)
    ref.fit(prepared_tr)
    torch.manual_seed(args.seed)
    init_encoder = ref.build_encoder("resnet18", width=args.width)
    embed_dim = init_encoder.embed_dim
    lr = simclr_lr(args.batch_size)
    steps = (len(x_tr) // args.batch_size) * args.epochs
    log(f"ResNet-18 width {args.width} ({count_params(init_encoder):,} params, {embed_dim}-d), {args.epochs} epochs x "
        f"{len(x_tr) // args.batch_size} steps of {args.batch_size}, SGD lr {lr:g} cosine, kNN k={args.knn_k} t=0.1")

    rows: Dict[str, Dict[str, Any]] = {}
    z_tr = embed_prepared(init_encoder.to(device), ref, prepared_tr, batch_size=1024, device=device)
    z_te = embed_prepared(init_encoder, ref, ref.prepare(x_te), batch_size=1024, device=device)
    rows["untrained encoder"] = {"knn": knn_accuracy(z_tr, y_tr, z_te, y_te, k=args.knn_k, temperature=0.1)}
    init_encoder.cpu()
    log(f"untrained encoder: kNN {rows['untrained encoder']['knn']:.4f}")

    for side in args.sides:
        torch.manual_seed(args.seed)
        if side == "multissl":
            enc = copy.deepcopy(init_encoder)
            with MemoryMeter(device) as mem:
                sync(device)
                t = time.perf_counter()
                model = pretrain(x_tr, adapter="image", method="simclr", epochs=args.epochs, batch_size=args.batch_size,
                                 seed=args.seed, encoder=enc, adapter_config=adapter_config,
                                 method_kwargs={"proj_hidden_dim": embed_dim, "proj_dim": SIMCLR["proj_out"],
                                                "temperature": SIMCLR["temperature"]},
                                 optimizer="sgd", lr=lr, weight_decay=SIMCLR["weight_decay"],
                                 momentum=SIMCLR["momentum"], warmup_epochs=0.0,
                                 mixed_precision=args.multissl_precision, progress=False)
                sync(device)
                secs = time.perf_counter() - t
            hist = model.config["history"]
            knn = knn_accuracy(model.embed(x_tr, batch_size=1024, device=device), y_tr,
                               model.embed(x_te, batch_size=1024, device=device), y_te,
                               k=args.knn_k, temperature=0.1)
            rows["multissl SimCLR"] = {"knn": knn, "train_s": secs, "images_per_s": steps * args.batch_size / secs,
                                       "loss_first_last": [hist[0]["loss"], hist[-1]["loss"]],
                                       "resolved": model.config["training"], "memory": mem.result()}
        else:
            backbone = torchvision_resnet18(args.width, in_channels=3)
            copy_weights(init_encoder, backbone)
            net = LightlySimCLR(backbone, embed_dim, embed_dim, SIMCLR["proj_out"], SIMCLR["temperature"])
            with MemoryMeter(device) as mem:
                sync(device)
                t = time.perf_counter()
                loader = torch.utils.data.DataLoader(
                    PILDataset(x_tr, lightly_transform(32)), batch_size=args.batch_size, shuffle=True, drop_last=True,
                    num_workers=args.lightly_workers, pin_memory=args.cuda, persistent_workers=args.lightly_workers > 0,
                    generator=torch.Generator().manual_seed(args.seed))
                losses = train_lightly(net, loader, epochs=args.epochs, total_steps=steps, lr=lr, device=device,
                                       bf16=args.lightly_bf16, log=log if args.epochs <= 5 else None)
                sync(device)
                secs = time.perf_counter() - t
                del loader
            knn = knn_accuracy(embed_lightly(backbone, x_tr, device), y_tr, embed_lightly(backbone, x_te, device), y_te,
                               k=args.knn_k, temperature=0.1)
            rows["lightly SimCLR"] = {"knn": knn, "train_s": secs, "images_per_s": steps * args.batch_size / secs,
                                      "loss_first_last": [losses[0], losses[-1]], "workers": args.lightly_workers,
                                      "bf16": args.lightly_bf16, "memory": mem.result()}
            net.cpu()
        r = rows[f"{side} SimCLR"]
        log(f"{side}: {r['train_s']:.1f} s of training, {r['images_per_s']:,.0f} img/s, kNN {r['knn']:.4f}")
        if device.type == "cuda":
            torch.cuda.empty_cache()

    table = []
    for name, r in rows.items():
        mem = r.get("memory", {})
        peak = mem.get("cuda_max_allocated_mib") if args.cuda else mem.get("cpu_peak_above_baseline_mib")
        table.append([name, r["knn"], r.get("train_s"), r.get("images_per_s"), peak])
    print()
    print_table(table, ["", f"kNN (k={args.knn_k})", "train s", "img/s", "peak MiB (GPU)" if args.cuda else "peak MiB"])
    result: Dict[str, Any] = {"benchmark": "cifar10_knn", "machine": info, "args": {k: v for k, v in vars(args).items()},
                              "n_train": len(x_tr), "n_test": len(x_te), "steps": steps, "lr": lr, "rows": rows,
                              "reference_issue_9": REFERENCE}
    m, l = rows.get("multissl SimCLR"), rows.get("lightly SimCLR")
    if m and l:
        result["speedup_vs_lightly"] = l["train_s"] / m["train_s"]
        result["knn_minus_lightly"] = m["knn"] - l["knn"]
        print(f"\nmultissl vs lightly: {result['speedup_vs_lightly']:.2f}x faster training, "
              f"kNN {result['knn_minus_lightly']:+.4f}")
    if m and args.cuda and not args.quick and args.epochs == 25 and len(x_tr) == 50000:
        result["target_met"] = {"knn_ge_0.66": m["knn"] >= REFERENCE["target_knn"],
                                "train_le_60s": m["train_s"] <= REFERENCE["target_train_s"]}
        print(f"issue 9 target (kNN >= 0.66 in <= 60 s): {result['target_met']}")
    write_json(args.output, result)
    log(f"wrote {args.output}")
    return result


if __name__ == "__main__":
    main()
