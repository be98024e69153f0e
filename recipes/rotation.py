"""Rotation prediction (RotNet): pretrain on unlabeled images, report the pretext accuracy and few-label accuracy vs from scratch.

The encoder learns to tell by how much (0, 90, 180, 270 degrees) an image was turned
(Gidaris, Singh & Komodakis, ICLR 2018) on every image outside the test split, without labels.
Then the recipe reports

- the pretext accuracy on the held-out test images (chance: 0.25), and
- for k labels per class (default 1 and 10; 3 label draws each), on identical labelled subsets:
  raw pixels + logistic regression, the same encoder **from scratch** (same fine-tuning
  augmentations, optimiser and steps), the rotation-pretrained encoder frozen + logistic
  regression, and fine-tuned.

    accelerate launch recipes/rotation.py --data ../shared/data/mnist_test --max-records 4000 \
        --encoder small_cnn --encoder-width 0.5 --epochs 10 --output runs/rotation_mnist
    accelerate launch -m multissl.recipes.rotation --data 'cifar10_jpeg_parquet/train-*.parquet' \
        --test-data 'cifar10_jpeg_parquet/test-*.parquet' --max-records 10000 --max-test-records 2000 \
        --encoder resnet18 --encoder-width 0.5 --output runs/rotation_cifar

``--data`` (and ``--test-data``, a separate labelled test set): a folder with one sub-folder per
class, an MNIST-style folder of IDX files, a ``.npz`` with ``x``/``y``, or Parquet (a file or a
glob) / Arrow / a saved ``datasets`` folder with an image and a label column.
Images must be square (``--image-size`` resizes them). Writes ``<output>/metrics.json``,
``<output>/accuracy_vs_labels.png`` and the encoder in ``<output>/final``.

**3D rotation on video** (3DRotNet: Jing & Tian, "Self-Supervised Spatiotemporal Feature
Learning via Video Rotation Prediction", 2018, https://arxiv.org/abs/1811.11387):
``--modality video`` turns whole clips (every frame alike) and trains the small 3D CNN
``c3d_small`` (base width ``32 * --encoder-width``). ``--data`` is either digit images (an
MNIST-style folder, IDX file or ``.npy``), from which ``--max-records`` Moving MNIST sequences
of ``--clip-length`` frames are generated whose digits move one way, labelled by that direction
(right / up / left / down; test sequences use held-out digit images), or a folder of videos
with one sub-folder per class. Downstream is the same few-label comparison, fine-tuned without
horizontal flips (a flip would turn "right" into "left")::

    python -m multissl.recipes.rotation --modality video --data ../shared/data/mnist_test \
        --max-records 1000 --image-size 32 --encoder-width 0.5 --epochs 3 --output runs/rotation_video
"""
from __future__ import annotations

import sys
from typing import Any, Dict, List, Optional

from multissl.errors import exit_status
from multissl.recipes._pretext import PretextArgs, argument_parser, common_args, run

DEFAULTS = PretextArgs(data="", output="runs/rotation")


def parse_args(argv: Optional[List[str]] = None) -> PretextArgs:
    p = argument_parser("rotation", __doc__.splitlines()[0], DEFAULTS)
    p.add_argument("--head-hidden-dim", type=int, default=256, help="hidden width of the rotation classifier")
    p.add_argument("--modality", choices=("image", "video"), default="image",
                   help="video: 3D rotation of whole clips (see the module docstring)")
    p.add_argument("--clip-length", type=int, default=10, help="video: frames per clip")
    a = p.parse_args(argv)
    args = common_args(p, a, {"head_hidden_dim": a.head_hidden_dim})
    if a.clip_length < 1:
        p.error(f"--clip-length must be a positive integer, got {a.clip_length}")
    args.modality, args.clip_length = a.modality, a.clip_length  # type: ignore[attr-defined]
    return args


def run_rotation(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    args = parse_args(argv)
    if getattr(args, "modality", "image") == "video":
        return run_video(args)
    # all four rotations of each image are scored: the accuracy is over 4x the held-out images
    return run(args, "rotation", "rotation", evaluate=lambda method, views, g: method(views),
               chance=lambda method: 0.25)


def run_video(args: PretextArgs) -> Dict[str, Any]:
    """3D rotation on clips: pretrain without labels, held-out pretext accuracy, few-label gain."""
    import time
    from pathlib import Path

    import numpy as np
    import torch
    from sklearn.model_selection import train_test_split

    from multissl.adapters import take
    from multissl.adapters.video import VideoAdapter
    from multissl.errors import DataError
    from multissl.evaluation.few_labels import format_table, plot_accuracy, write_json_atomic
    from multissl.model import SSLModel
    from multissl.recipes._video import (classification_adapter, is_digit_source, labelled_video_folder,
                                         load_digits, motion_few_labels, motion_sets, pretext_accuracy,
                                         pretrain_encoder)

    t0 = time.perf_counter()
    width = max(1, int(round(32 * args.encoder_width)))
    adapter = VideoAdapter(clip_length=args.clip_length, preset="light",
                           **({"frame_size": args.image_size} if args.image_size else {}))
    if is_digit_source(args.data):
        n = args.max_records or 2000
        n_test = max(4 * max(args.labels_per_class), int(round(n * args.test_fraction)))
        sets = motion_sets(load_digits(args.data), n - n_test, n_test, args.clip_length, args.seed)
        classes = ["right", "up", "left", "down"]
        source = f"Moving MNIST from {args.data}: {n} sequences of {args.clip_length} frames, digits moving one way"
        prepared = adapter.prepare(sets["videos"])
        labels = sets["labels"]
    else:
        files, labels, classes = labelled_video_folder(args.data)
        prepared = adapter.prepare(files)
        try:
            pool, test = train_test_split(np.arange(len(labels)), test_size=args.test_fraction, stratify=labels,
                                          random_state=args.seed)
        except ValueError as e:
            raise DataError(f"{args.data}: cannot make a stratified test split ({e})") from None
        sets = {"pool": np.sort(pool), "test": np.sort(test), "labels": labels}
        source = f"{args.data}: {len(labels)} videos in {len(classes)} classes"
    counts = np.bincount(labels[sets["pool"]], minlength=len(classes))
    if counts.min() < max(args.labels_per_class):
        raise DataError(f"{args.data}: class {classes[int(counts.argmin())]!r} has {counts.min()} training clips, "
                        f"fewer than the largest --labels-per-class {max(args.labels_per_class)}")
    sets["prepared"] = prepared
    unlabeled = take(prepared, torch.as_tensor(sets["pool"]))
    held_out = take(prepared, torch.as_tensor(sets["test"]))
    adapter.fit(unlabeled)
    h, w = adapter.config["frame_size"]
    if h != w:
        raise DataError(f"{args.data}: rotation needs square frames, got {h}x{w}; pass --image-size")
    print(f"rotation (video): {source}; {len(sets['test'])} held out; pretraining 3D rotation on "
          f"{len(sets['pool'])} clips without labels")
    method, history, t_pre, training = pretrain_encoder("rotation", adapter, unlabeled, width, args.epochs, args.batch_size,
                                              args.seed, args.progress, lr=args.lr, method_kwargs=args.method_kwargs)
    heldout = pretext_accuracy(method, adapter, held_out)
    pretext = {"task": "rotation (3D, whole clips)", "heldout_accuracy": heldout, "chance": 0.25,
               "final_train_loss": history[-1]["loss"] if history else None, "num_heldout": int(len(sets["test"]))}
    cls_adapter = classification_adapter(adapter, args.clip_length)
    motion = motion_few_labels(method.encoder, cls_adapter, sets, width, args.labels_per_class, args.seeds,
                               args.finetune_steps, args.finetune_lr)
    out = Path(args.output)
    metrics = {"recipe": "rotation", "modality": "video", "data": str(args.data), "source": source,
               "classes": classes, "num_pretrain": int(len(sets["pool"])), "num_test": int(len(sets["test"])),
               "args": vars(args), "method_hparams": method.hparams(), "pretext": pretext, **motion,
               "encoder": {"name": "c3d_small", "width": width}, "pretrain_seconds": round(t_pre, 1),
               "total_seconds": round(time.perf_counter() - t0, 1), "pretrain_history": history}
    write_json_atomic(out / "metrics.json", metrics)
    plot_accuracy(motion["results"], out / "accuracy_vs_labels.png", f"{Path(args.data).name}: 3D rotation vs scratch")
    model = SSLModel(adapter, method.encoder, {"adapter": "video", "method": "rotation",
                                               "method_hparams": method.hparams(),
                                               "encoder": {"name": "c3d_small", "kwargs": {"width": width}},
                                               "embed_dim": adapter.embed_dim(method.encoder),
                                               "training": training, "history": history})
    model.save_pretrained(out / "final", metrics={"pretext_heldout_accuracy": heldout})
    print()
    print(f"{'pretext accuracy (3D rotation), held-out clips':<48}{heldout:>8.3f}   (chance 0.250)")
    print(format_table(motion["results"], args.seeds))
    print("SSL fine-tuned minus from scratch, same labelled draws: " + ";  ".join(
        f"{k}/class {p['mean']:+.3f} (better in {p['wins']}/{len(p['differences'])})"
        for k, p in motion["paired"].items()))
    print(f"\nwrote {out / 'metrics.json'}, {out / 'accuracy_vs_labels.png'}, model in {out / 'final'}")
    return metrics


def main(argv: Optional[List[str]] = None) -> int:
    return exit_status("rotation", lambda: run_rotation(argv))


if __name__ == "__main__":
    sys.exit(main())
