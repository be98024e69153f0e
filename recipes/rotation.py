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
"""
from __future__ import annotations

import sys
from typing import Any, Dict, List, Optional

from multissl.recipes._pretext import PretextArgs, argument_parser, common_args, main as run_main, run

DEFAULTS = PretextArgs(data="", output="runs/rotation")


def parse_args(argv: Optional[List[str]] = None) -> PretextArgs:
    p = argument_parser("rotation", __doc__.splitlines()[0], DEFAULTS)
    p.add_argument("--head-hidden-dim", type=int, default=256, help="hidden width of the rotation classifier")
    a = p.parse_args(argv)
    return common_args(p, a, {"head_hidden_dim": a.head_hidden_dim})


def run_rotation(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    # all four rotations of each image are scored: the accuracy is over 4x the held-out images
    return run(parse_args(argv), "rotation", "rotation", evaluate=lambda method, views, g: method(views),
               chance=lambda method: 0.25)


def main(argv: Optional[List[str]] = None) -> int:
    return run_main("rotation", run_rotation, argv)


if __name__ == "__main__":
    sys.exit(main())
