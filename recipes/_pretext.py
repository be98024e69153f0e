"""What the ``rotation`` and ``jigsaw`` recipes share: data, split, pretext pretraining, the
held-out pretext accuracy, the few-label comparison with from scratch, and the outputs.

Not a recipe itself (the leading underscore keeps it out of ``multissl recipes``).
"""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional

import numpy as np

if TYPE_CHECKING:  # torch is imported where it is used, so that --help answers at once
    import torch

#: how a recipe runs its (eval-mode) method on one batch of views with a generator
EvaluateStep = Callable[[Any, List["torch.Tensor"], "torch.Generator"], Dict[str, "torch.Tensor"]]


@dataclass
class PretextArgs:
    data: str
    output: str
    label_column: Optional[str] = None
    test_data: Optional[str] = None
    max_test_records: Optional[int] = None
    test_fraction: float = 0.3
    labels_per_class: List[int] = field(default_factory=lambda: [1, 10])
    seeds: int = 3
    encoder: str = "small_cnn"
    encoder_width: float = 1.0
    image_size: Optional[int] = None
    epochs: int = 20
    batch_size: int = 128
    lr: Optional[float] = None
    finetune_steps: int = 300
    finetune_lr: float = 3e-3
    # The encoder trains at the head's lr: at 0.1 (image_few_labels' default) the from-scratch
    # baseline is handicapped (on MNIST with small_cnn: 0.69 vs 0.81 at 10 labels per class),
    # and beating a handicapped baseline shows nothing.
    finetune_encoder_lr_ratio: float = 1.0
    max_records: Optional[int] = None
    seed: int = 0
    progress: bool = True
    method_kwargs: Dict[str, Any] = field(default_factory=dict)


def argument_parser(prog: str, description: str, defaults: PretextArgs) -> argparse.ArgumentParser:
    """The options every pretext recipe takes; a recipe adds its method's own."""
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("--data", required=True, help="labelled images: class folders, an MNIST-style IDX folder, "
                                                 ".npz (x, y), Parquet (file or glob) / Arrow / saved datasets")
    p.add_argument("--output", default=defaults.output)
    p.add_argument("--label-column", default=None)
    p.add_argument("--test-data", default=None, help="a separate labelled test set (default: split --data)")
    p.add_argument("--test-fraction", type=float, default=defaults.test_fraction,
                   help="without --test-data: the share of --data held out (never pretrained on); the pretext "
                        "and downstream accuracies are measured on it")
    p.add_argument("--labels-per-class", default=",".join(map(str, defaults.labels_per_class)),
                   help="comma-separated k values")
    p.add_argument("--seeds", type=int, default=defaults.seeds, help="label draws per k")
    p.add_argument("--encoder", default=defaults.encoder)
    p.add_argument("--encoder-width", type=float, default=defaults.encoder_width, help="channel multiplier")
    p.add_argument("--image-size", type=int, default=None, help="resize images to this square size")
    p.add_argument("--epochs", type=int, default=defaults.epochs)
    p.add_argument("--batch-size", type=int, default=defaults.batch_size)
    p.add_argument("--lr", type=float, default=None, help="pretraining lr (default: the method's)")
    p.add_argument("--finetune-steps", type=int, default=defaults.finetune_steps)
    p.add_argument("--finetune-lr", type=float, default=defaults.finetune_lr)
    p.add_argument("--finetune-encoder-lr-ratio", type=float, default=defaults.finetune_encoder_lr_ratio,
                   help="encoder lr / head lr when fine-tuning (both the SSL and the from-scratch encoder)")
    p.add_argument("--max-records", type=int, default=None, help="use a stratified subset of --data of this size")
    p.add_argument("--max-test-records", type=int, default=None, help="use a stratified subset of --test-data")
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument("--no-progress", action="store_true")
    return p


def common_args(p: argparse.ArgumentParser, a: argparse.Namespace, method_kwargs: Dict[str, Any]) -> PretextArgs:
    """Checked :class:`PretextArgs` from parsed options (``p.error`` exits 2 on a bad one)."""
    try:
        ks = [int(k) for k in a.labels_per_class.split(",") if k.strip()]
    except ValueError:
        p.error(f"--labels-per-class must be comma-separated integers, got {a.labels_per_class!r}")
    if not ks or min(ks) < 1:
        p.error("--labels-per-class needs positive integers")
    if not 0 < a.test_fraction < 1:
        p.error(f"--test-fraction must be in (0, 1), got {a.test_fraction}")
    return PretextArgs(data=a.data, output=a.output, label_column=a.label_column, test_data=a.test_data,
                       max_test_records=a.max_test_records, test_fraction=a.test_fraction,
                       labels_per_class=ks, seeds=a.seeds, encoder=a.encoder, encoder_width=a.encoder_width,
                       image_size=a.image_size, epochs=a.epochs, batch_size=a.batch_size, lr=a.lr,
                       finetune_steps=a.finetune_steps, finetune_lr=a.finetune_lr,
                       finetune_encoder_lr_ratio=a.finetune_encoder_lr_ratio, max_records=a.max_records,
                       seed=a.seed, progress=not a.no_progress, method_kwargs=method_kwargs)


def pretext_accuracy(method: Any, adapter: Any, images: "torch.Tensor", evaluate: EvaluateStep,
                     batch_size: int = 256, seed: int = 0) -> float:
    """Pretext-task accuracy of the trained method (eval mode) on ``images`` it never saw."""
    import torch

    from multissl.adapters import to_device

    method.eval()
    device = next(method.parameters()).device
    g = torch.Generator(device=device).manual_seed(seed)
    correct = 0.0
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            batch = to_device(images[start:start + batch_size], device)
            out = evaluate(method, [adapter.eval_transform(batch)], g)
            correct += float(out["accuracy"]) * len(batch)
    return correct / len(images)


def paired_gains(summary: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
    """Per k: SSL fine-tuned minus from-scratch accuracy on each labelled draw (the two rows use
    the same records and seeds, so the paired differences are less noisy than the means), their
    mean, and on how many draws SSL was better."""
    out = {}
    for k, scratch in summary["scratch_finetune"].items():
        diffs = [s - c for s, c in zip(summary["ssl_finetune"][k]["runs"], scratch["runs"])]
        out[k] = {"differences": diffs, "mean": float(np.mean(diffs)), "wins": sum(d > 0 for d in diffs)}
    return out


def run(args: PretextArgs, recipe: str, method_name: str, evaluate: EvaluateStep,
        chance: Callable[[Any], float], check_images: Optional[Callable[[Any, str], None]] = None,
        extra_outputs: Optional[Callable[[Any, Any, Any, Path], Dict[str, Any]]] = None) -> Dict[str, Any]:
    """Pretrain ``method_name`` on the non-test images, then measure and write everything.

    ``check_images(prepared, path)`` may refuse data before anything is trained or written
    (colorization: grayscale images); ``extra_outputs(method, adapter, held_out, output_dir)``
    writes the recipe's own files after training and returns entries for ``metrics.json``.

    The Trainer is used directly (as :func:`multissl.pretrain` does) because the pretext head,
    which ``pretrain`` drops, is needed for the held-out pretext accuracy.
    """
    import torch
    from sklearn.model_selection import train_test_split

    from multissl.adapters import get_adapter, take
    from multissl.distributed import process_state
    from multissl.errors import DataError
    from multissl.evaluation import FinetuneConfig
    from multissl.evaluation.few_labels import (FewLabelConfig, compare_few_labels, format_table, gains,
                                                plot_accuracy, write_json_atomic)
    from multissl.io import load_labelled
    from multissl.methods import build_method, get_method_class
    from multissl.model import SSLModel
    from multissl.trainer import TrainConfig, Trainer, embed_prepared

    t0 = time.perf_counter()
    state = process_state()
    # the method's recommended augmentation (light: crop + flip), as pretrain() would apply it
    adapter_config = dict(get_method_class(method_name).adapter_defaults.get("image", {}))
    if args.image_size:
        adapter_config["image_size"] = args.image_size
    adapter = get_adapter("image", **adapter_config)
    def load(path: str, n: Optional[int]) -> Any:
        """Prepared images, labels and class names; a stratified subset of ``n`` if given."""
        prepared, labels, classes = load_labelled(path, adapter, args.label_column)
        if n and n < len(labels):
            idx, _ = train_test_split(np.arange(len(labels)), train_size=n, stratify=labels, random_state=args.seed)
            idx = np.sort(idx)
            prepared, labels = take(prepared, torch.as_tensor(idx)), labels[idx]
        return prepared, labels, classes

    prepared, labels, classes = load(args.data, args.max_records)
    if check_images is not None:
        check_images(prepared, args.data)
    if args.test_data:
        test_prepared, test_labels, test_classes = load(args.test_data, args.max_test_records)
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
    pool, test = np.sort(pool), np.sort(test)
    unlabeled = take(prepared, torch.as_tensor(pool))
    held_out = take(prepared, torch.as_tensor(test))
    if state.is_main_process:
        print(f"{recipe}: {len(labels)} labelled images {tuple(prepared.shape[1:])}, {len(classes)} classes, "
              f"{len(test)} held out; pretraining {method_name} on {len(unlabeled)} images without labels")

    adapter.fit(unlabeled)
    encoder_kwargs = {"width": args.encoder_width} if args.encoder_width != 1.0 else {}
    torch.manual_seed(args.seed)
    encoder = adapter.build_encoder(args.encoder, **encoder_kwargs)
    embed_dim = adapter.embed_dim(encoder)
    method = build_method(method_name, encoder, embed_dim, **args.method_kwargs)
    # fail fast, before anything is written, on images the task cannot use (non-square for
    # rotation, too small for the jigsaw grid); eval mode leaves BN statistics and RNG streams alone
    method.eval()
    with torch.no_grad():
        evaluate(method, [adapter.eval_transform(unlabeled[:2])], torch.Generator().manual_seed(0))
    method.train()
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                         output_dir=args.output, progress=args.progress, overwrite=True)
    trainer = Trainer(method, adapter, config)
    history = trainer.fit(unlabeled)
    t_pretrain = time.perf_counter() - t0
    if not state.is_main_process:  # evaluation is cheap; the main process does it alone
        state.wait_for_everyone()
        return {}

    heldout_acc = pretext_accuracy(method, adapter, held_out, evaluate, seed=args.seed)
    pretext = {"task": method_name, "heldout_accuracy": heldout_acc, "chance": chance(method),
               "final_train_loss": history[-1]["loss"] if history else None, "num_heldout": int(len(test))}
    print(f"pretext ({method_name}) accuracy on {len(test)} held-out images: {heldout_acc:.3f} "
          f"(chance {pretext['chance']:.3f})")

    z = embed_prepared(method.encoder, adapter, prepared).numpy()
    raw = prepared.reshape(len(prepared), -1).float().numpy() / 255.0
    ft = FinetuneConfig(steps=args.finetune_steps, lr=args.finetune_lr, encoder_lr_ratio=args.finetune_encoder_lr_ratio,
                        batch_size=64)
    summary = compare_few_labels(method.encoder, embed_dim, adapter, prepared, labels, pool, test,
                                 build_scratch=lambda: adapter.build_encoder(args.encoder, **encoder_kwargs),
                                 embeddings=z, raw=raw,
                                 config=FewLabelConfig(args.labels_per_class, tuple(range(args.seeds)), ft))
    training = {"epochs": args.epochs, "batch_size": args.batch_size, "seed": args.seed,
                "num_records": int(len(unlabeled)), "train_seconds": round(t_pretrain, 1), **trainer.resolved}
    model = SSLModel(adapter, method.encoder, {"adapter": "image", "method": method_name,
                                               "method_hparams": method.hparams(),
                                               "encoder": {"name": args.encoder, "kwargs": encoder_kwargs},
                                               "embed_dim": embed_dim, "training": training, "history": history})
    paired = paired_gains(summary)
    out = Path(args.output)
    extra = extra_outputs(method, adapter, held_out, out) if extra_outputs is not None else {}
    metrics = {"recipe": recipe, "data": str(args.data), "classes": classes, "num_labelled": int(len(labels)),
               "num_test": int(len(test)), "num_pretrain": int(len(unlabeled)), "args": vars(args),
               "method_hparams": method.hparams(), "pretext": pretext, "results": summary, "gains": gains(summary),
               "paired": paired,
               "pretrain_seconds": round(t_pretrain, 1), "total_seconds": round(time.perf_counter() - t0, 1),
               "pretrain_history": history, **extra}
    write_json_atomic(out / "metrics.json", metrics)
    plot_accuracy(summary, out / "accuracy_vs_labels.png", f"{Path(args.data).name}: {method_name} SSL vs from scratch")
    model.save_pretrained(out / "final", metrics={"pretext_heldout_accuracy": heldout_acc,
                                                  **{f"ssl_probe_acc_{k}": v["mean"]
                                                     for k, v in summary["ssl_probe"].items()}})
    print()
    print(f"{'pretext accuracy, held-out images':<40}{heldout_acc:>11.3f}   (chance {pretext['chance']:.3f})")
    print(format_table(summary, args.seeds))
    print("SSL fine-tuned minus from scratch, same labelled draws: " + ";  ".join(
        f"{k}/class {p['mean']:+.3f} (better in {p['wins']}/{len(p['differences'])})" for k, p in paired.items()))
    print(f"\nwrote {out / 'metrics.json'}, {out / 'accuracy_vs_labels.png'}, model in {out / 'final'}")
    state.wait_for_everyone()
    return metrics
