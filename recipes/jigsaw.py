"""Jigsaw puzzles: pretrain on unlabeled images, report the pretext accuracy and few-label accuracy vs from scratch.

The encoder learns to recognise which of ``--num-permutations`` permutations shuffled the 3x3
tiles of an image (Noroozi & Favaro, ECCV 2016), on every image outside the test split,
without labels; the same encoder embeds each tile and whole images afterwards. Then the recipe
reports

- the pretext accuracy (permutation recognised) on the held-out test images (chance:
  1 / num_permutations), and
- for k labels per class (default 1 and 10; 3 label draws each), on identical labelled subsets:
  raw pixels + logistic regression, the same encoder **from scratch** (same fine-tuning
  augmentations, optimiser and steps), the jigsaw-pretrained encoder frozen + logistic
  regression, and fine-tuned.

    accelerate launch recipes/jigsaw.py --data ../shared/data/mnist_test --max-records 4000 \
        --encoder small_cnn --encoder-width 0.5 --epochs 10 --output runs/jigsaw_mnist
    accelerate launch -m multissl.recipes.jigsaw --data 'cifar10_jpeg_parquet/train-*.parquet' \
        --test-data 'cifar10_jpeg_parquet/test-*.parquet' --max-records 10000 --max-test-records 2000 \
        --encoder resnet18 --encoder-width 0.5 --output runs/jigsaw_cifar

``--data`` (and ``--test-data``, a separate labelled test set): a folder with one sub-folder per
class, an MNIST-style folder of IDX files, a ``.npz`` with ``x``/``y``, or Parquet (a file or a
glob) / Arrow / a saved ``datasets`` folder with an image and a label column.
A 3x3 grid needs images of at least 12 px (``--image-size`` resizes them). Writes ``<output>/metrics.json``,
``<output>/accuracy_vs_labels.png`` and the encoder in ``<output>/final``.
"""
from __future__ import annotations

import sys
from typing import Any, Dict, List, Optional

from multissl.errors import exit_status
from multissl.recipes._pretext import PretextArgs, argument_parser, common_args, run

DEFAULTS = PretextArgs(data="", output="runs/jigsaw")


def parse_args(argv: Optional[List[str]] = None) -> PretextArgs:
    p = argument_parser("jigsaw", __doc__.splitlines()[0], DEFAULTS)
    p.add_argument("--num-permutations", type=int, default=100, help="permutation classes (max-min Hamming set)")
    p.add_argument("--grid", type=int, default=3, choices=(2, 3), help="tiles per side")
    p.add_argument("--tile-gap", type=float, default=0.15, help="random gap, as a fraction of a grid cell")
    p.add_argument("--tile-size", type=int, default=None, help="resize tiles to this size for the encoder")
    a = p.parse_args(argv)
    return common_args(p, a, {"num_permutations": a.num_permutations, "grid": a.grid, "tile_gap": a.tile_gap,
                              "tile_size": a.tile_size})


def run_jigsaw(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    # the method's generator argument keeps the held-out puzzles fixed by --seed
    return run(parse_args(argv), "jigsaw", "jigsaw", evaluate=lambda method, views, g: method(views, generator=g),
               chance=lambda method: 1.0 / method.hparams()["num_permutations"])


def main(argv: Optional[List[str]] = None) -> int:
    return exit_status("jigsaw", lambda: run_jigsaw(argv))


if __name__ == "__main__":
    sys.exit(main())
