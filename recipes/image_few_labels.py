"""Few-label image classification: SSL-pretrain on unlabeled images, then compare with from scratch at k labels per class.

The everyday use of multissl on images. Pretrains an encoder without labels on every image that
is not in the test split (plus ``--unlabeled-data`` if given), then for each k in
``--labels-per-class`` and each seed draws the same k labelled images per class for every
row: raw pixels + logistic regression, the same encoder from scratch (same augmentations and
budget), the SSL encoder frozen + logistic regression, and the SSL encoder fine-tuned.

    accelerate launch recipes/image_few_labels.py --data ../shared/data/cifar10_test_subset_jpg \
        --encoder resnet18 --encoder-width 0.5 --epochs 50 --output runs/cifar_few_labels
    accelerate launch -m multissl.recipes.image_few_labels --data train.parquet --label-column label

``--data`` is a folder with one sub-folder per class, a ``.npz`` with ``x``/``y`` arrays, or a
Parquet/Arrow/saved ``datasets`` source with an image column and a label column. Writes
``<output>/metrics.json``, ``<output>/accuracy_vs_labels.png`` and the model in
``<output>/final``.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np


@dataclass
class Args:
    data: str
    output: str = "runs/image_few_labels"
    label_column: Optional[str] = None
    unlabeled_data: Optional[str] = None
    test_data: Optional[str] = None
    max_test_records: Optional[int] = None
    test_fraction: float = 0.3
    labels_per_class: List[int] = field(default_factory=lambda: [1, 5, 10])
    seeds: int = 3
    method: str = "simclr"
    encoder: str = "resnet18"
    encoder_width: float = 1.0
    image_size: Optional[int] = None
    epochs: int = 50
    batch_size: int = 256
    finetune_steps: int = 300
    finetune_lr: float = 3e-3
    finetune_encoder_lr_ratio: float = 0.1
    max_records: Optional[int] = None
    seed: int = 0
    progress: bool = True


def parse_args(argv: Optional[List[str]] = None) -> Args:
    p = argparse.ArgumentParser(prog="image_few_labels", description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--output", default=Args.output)
    p.add_argument("--label-column", default=None)
    p.add_argument("--unlabeled-data", default=None, help="more images without labels, used for pretraining only")
    p.add_argument("--test-data", default=None, help="a separate labelled test set (default: split --data)")
    p.add_argument("--test-fraction", type=float, default=Args.test_fraction, help="used without --test-data")
    p.add_argument("--labels-per-class", default="1,5,10", help="comma-separated k values")
    p.add_argument("--seeds", type=int, default=Args.seeds, help="label draws per k")
    p.add_argument("--method", default=Args.method)
    p.add_argument("--encoder", default=Args.encoder)
    p.add_argument("--encoder-width", type=float, default=Args.encoder_width, help="ResNet width multiplier")
    p.add_argument("--image-size", type=int, default=None)
    p.add_argument("--epochs", type=int, default=Args.epochs)
    p.add_argument("--batch-size", type=int, default=Args.batch_size)
    p.add_argument("--finetune-steps", type=int, default=Args.finetune_steps)
    p.add_argument("--finetune-lr", type=float, default=Args.finetune_lr)
    p.add_argument("--finetune-encoder-lr-ratio", type=float, default=Args.finetune_encoder_lr_ratio)
    p.add_argument("--max-records", type=int, default=None, help="use a stratified subset of --data of this size")
    p.add_argument("--max-test-records", type=int, default=None, help="use a stratified subset of --test-data")
    p.add_argument("--seed", type=int, default=Args.seed)
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)
    try:
        ks = [int(k) for k in a.labels_per_class.split(",") if k.strip()]
    except ValueError:
        p.error(f"--labels-per-class must be comma-separated integers, got {a.labels_per_class!r}")
    if not ks or min(ks) < 1:
        p.error("--labels-per-class needs positive integers")
    if not 0 < a.test_fraction < 1:
        p.error(f"--test-fraction must be in (0, 1), got {a.test_fraction}")
    return Args(data=a.data, output=a.output, label_column=a.label_column, unlabeled_data=a.unlabeled_data,
                test_data=a.test_data, max_test_records=a.max_test_records,
                test_fraction=a.test_fraction, labels_per_class=ks, seeds=a.seeds, method=a.method,
                encoder=a.encoder, encoder_width=a.encoder_width, image_size=a.image_size, epochs=a.epochs,
                batch_size=a.batch_size, finetune_steps=a.finetune_steps, finetune_lr=a.finetune_lr,
                finetune_encoder_lr_ratio=a.finetune_encoder_lr_ratio, max_records=a.max_records, seed=a.seed,
                progress=not a.no_progress)


def run(args: Args) -> Dict[str, Any]:
    import torch
    from sklearn.model_selection import train_test_split

    from multissl.adapters import get_adapter, take
    from multissl.api import pretrain
    from multissl.distributed import process_state
    from multissl.errors import DataError
    from multissl.evaluation import FinetuneConfig
    from multissl.evaluation.few_labels import (FewLabelConfig, compare_few_labels, format_table, gains,
                                                plot_accuracy, write_json_atomic)
    from multissl.io import load_data, load_labelled
    from multissl.trainer import embed_prepared

    t0 = time.perf_counter()
    state = process_state()
    adapter_config = {"image_size": args.image_size} if args.image_size else {}
    adapter = get_adapter("image", **adapter_config)
    prepared, labels, classes = _subset(*load_labelled(args.data, adapter, args.label_column), args.max_records,
                                        args.seed)
    if args.test_data:
        test_prepared, test_labels, test_classes = _subset(
            *load_labelled(args.test_data, adapter, args.label_column), args.max_test_records, args.seed)
        if test_classes != classes:
            raise DataError(f"{args.test_data}: classes {test_classes} differ from {args.data}'s {classes}")
        pool = np.arange(len(labels))
        test = np.arange(len(labels), len(labels) + len(test_labels))
        prepared, labels = torch.cat([prepared, test_prepared]), np.concatenate([labels, test_labels])
    else:
        try:
            pool, test = train_test_split(np.arange(len(labels)), test_size=args.test_fraction, stratify=labels,
                                          random_state=args.seed)
        except ValueError as e:
            raise DataError(f"{args.data}: cannot make a stratified test split ({e})") from None
    counts = np.bincount(labels[pool], minlength=len(classes))
    if counts.min() < max(args.labels_per_class):
        raise DataError(f"{args.data}: class {classes[int(counts.argmin())]!r} has {counts.min()} training images, "
                        f"fewer than the largest --labels-per-class {max(args.labels_per_class)}")
    unlabeled = take(prepared, torch.as_tensor(np.sort(pool)))
    if args.unlabeled_data:
        extra = adapter.prepare(load_data(args.unlabeled_data))
        unlabeled = torch.cat([unlabeled, extra])
    if state.is_main_process:
        print(f"image_few_labels: {len(labels)} labelled images, {len(classes)} classes, "
              f"{len(test)} held out for testing; pretraining {args.method} on {len(unlabeled)} images without labels")

    encoder_kwargs = {"width": args.encoder_width} if args.encoder_width != 1.0 else {}
    model = pretrain(unlabeled, adapter=adapter, method=args.method, epochs=args.epochs, batch_size=args.batch_size,
                     encoder=args.encoder, encoder_kwargs=encoder_kwargs, seed=args.seed, output_dir=args.output,
                     progress=args.progress, overwrite=True)
    t_pretrain = time.perf_counter() - t0
    if not state.is_main_process:  # evaluation is cheap; the main process does it alone
        state.wait_for_everyone()
        return {}

    z = embed_prepared(model.encoder, adapter, prepared).numpy()
    torch.manual_seed(args.seed)  # the untrained encoder: same architecture, random initial weights
    z_untrained = embed_prepared(adapter.build_encoder(args.encoder, **encoder_kwargs), adapter, prepared).numpy()
    raw = prepared.reshape(len(prepared), -1).float().numpy() / 255.0
    ft = FinetuneConfig(steps=args.finetune_steps, lr=args.finetune_lr, encoder_lr_ratio=args.finetune_encoder_lr_ratio,
                        batch_size=64)
    summary = compare_few_labels(model.encoder, model.embed_dim, adapter, prepared, labels, pool, test,
                                 build_scratch=lambda: adapter.build_encoder(args.encoder, **encoder_kwargs),
                                 embeddings=z, raw=raw, untrained_embeddings=z_untrained,
                                 config=FewLabelConfig(args.labels_per_class, tuple(range(args.seeds)), ft))
    metrics = {"recipe": "image_few_labels", "data": str(args.data), "classes": classes,
               "num_labelled": int(len(labels)), "num_test": int(len(test)), "num_pretrain": int(len(unlabeled)),
               "args": vars(args), "results": summary, "gains": gains(summary),
               "pretrain_seconds": round(t_pretrain, 1), "total_seconds": round(time.perf_counter() - t0, 1),
               "pretrain_history": model.config.get("history", [])}
    out = Path(args.output)
    write_json_atomic(out / "metrics.json", metrics)
    plot_accuracy(summary, out / "accuracy_vs_labels.png", f"{Path(args.data).name}: SSL vs from scratch")
    model.save_pretrained(out / "final", metrics={f"ssl_probe_acc_{k}": v["mean"] for k, v in summary["ssl_probe"].items()})
    print()
    print(format_table(summary, args.seeds))
    print(f"\nwrote {out / 'metrics.json'}, {out / 'accuracy_vs_labels.png'}, model in {out / 'final'}")
    state.wait_for_everyone()
    return metrics


def _subset(prepared: Any, labels: np.ndarray, classes: List[str], n: Optional[int], seed: int) -> tuple:
    """A stratified subset of ``n`` records (all of them when n is None or large enough)."""
    import torch
    from sklearn.model_selection import train_test_split

    from multissl.adapters import take

    if not n or n >= len(labels):
        return prepared, labels, classes
    idx, _ = train_test_split(np.arange(len(labels)), train_size=n, stratify=labels, random_state=seed)
    idx = np.sort(idx)
    return take(prepared, torch.as_tensor(idx)), labels[idx], classes


def main(argv: Optional[List[str]] = None) -> int:
    from multissl.errors import exit_status

    return exit_status("image_few_labels", lambda: run(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
