"""Colorization: pretrain on unlabeled colour images, write a PNG grid (gray, predicted, true) and few-label accuracy vs from scratch.

The encoder learns to predict the colours (ab in CIE Lab, classified over 261 quantised ab
bins) of an image from its lightness L (Zhang, Isola & Efros, ECCV 2016), on every image
outside the test split, without labels. Then the recipe reports

- on the held-out test images: the pixel accuracy of the ab-bin classification (chance: always
  predicting the most common training bin) and the mean ab error of the annealed-mean colours,
  next to the error of leaving the image gray (ab = 0);
- ``colorization_grid.png``: held-out images as the network saw them (L only), coloured by it,
  and the originals, one row each;
- for k labels per class (default 1 and 10; 3 label draws each), on identical labelled subsets:
  raw pixels + logistic regression, the same encoder **from scratch** (same fine-tuning
  augmentations, optimiser and steps), the colorization-pretrained encoder frozen + logistic
  regression, and fine-tuned.

    accelerate launch recipes/colorization.py --data ../shared/data/cifar10_test_subset_jpg \\
        --encoder small_cnn --epochs 30 --output runs/colorization_cifar
    accelerate launch -m multissl.recipes.colorization --data 'cifar10_jpeg_parquet/train-*.parquet' \\
        --test-data 'cifar10_jpeg_parquet/test-*.parquet' --max-records 10000 --max-test-records 2000 \\
        --encoder resnet18 --encoder-width 0.5 --output runs/colorization_cifar_parquet

``--data`` (and ``--test-data``, a separate labelled test set): a folder with one sub-folder per
class, ``.npz`` with ``x``/``y``, or Parquet (a file or a glob) / Arrow / a saved ``datasets``
folder with an image and a label column. The images must have colour: grayscale data (MNIST, or
RGB files with R = G = B) is refused with exit status 2 before anything is trained.
Writes ``<output>/metrics.json``, ``<output>/colorization_grid.png``,
``<output>/accuracy_vs_labels.png`` and the encoder in ``<output>/final``.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

from multissl.errors import exit_status
from multissl.recipes._pretext import PretextArgs, argument_parser, common_args, run

DEFAULTS = PretextArgs(data="", output="runs/colorization")
#: held-out images shown in the PNG grid
GRID_IMAGES = 12
#: each image pixel becomes a PIXEL_SCALE x PIXEL_SCALE block in the PNG (32 px images are tiny)
PIXEL_SCALE = 4


def parse_args(argv: Optional[List[str]] = None) -> PretextArgs:
    p = argument_parser("colorization", __doc__.splitlines()[0], DEFAULTS)
    p.add_argument("--no-rebalance", action="store_true", help="plain cross-entropy, no class rebalancing")
    p.add_argument("--rebalance-lambda", type=float, default=0.5, help="prior/uniform mixing of the rebalancing")
    p.add_argument("--temperature", type=float, default=0.38, help="annealed-mean temperature for the pictures")
    p.add_argument("--head-dim", type=int, default=128, help="channels of the dense colour head")
    a = p.parse_args(argv)
    return common_args(p, a, {"rebalance": not a.no_rebalance, "rebalance_lambda": a.rebalance_lambda,
                              "temperature": a.temperature, "head_dim": a.head_dim})


def write_grid(rows: List[Any], path: Path, scale: int = PIXEL_SCALE, gap: int = 2) -> None:
    """RGB batches (N, 3, H, W) in [0, 1], one per row, tiled into a PNG written atomically."""
    import numpy as np
    from PIL import Image

    n, _, h, w = rows[0].shape
    cell_h, cell_w = h * scale, w * scale
    canvas = np.full((len(rows) * (cell_h + gap) - gap, n * (cell_w + gap) - gap, 3), 255, dtype=np.uint8)
    for r, batch in enumerate(rows):
        pixels = (batch.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
        pixels = pixels.repeat(scale, axis=1).repeat(scale, axis=2)
        for i in range(n):
            y, x = r * (cell_h + gap), i * (cell_w + gap)
            canvas[y:y + cell_h, x:x + cell_w] = pixels[i]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    Image.fromarray(canvas).save(tmp)
    os.replace(tmp, path)


def colour_outputs(method: Any, adapter: Any, held_out: Any, output: Path) -> Dict[str, Any]:
    """The PNG grid and the held-out ab error of the predicted colours vs leaving images gray."""
    import torch

    from multissl.adapters import to_device

    method.eval()
    device = next(method.parameters()).device
    err_pred = err_gray = 0.0
    with torch.no_grad():
        for start in range(0, len(held_out), 256):
            x = adapter.eval_transform(to_device(held_out[start:start + 256], device))
            truth_lab, ab = method.predict_ab([x])
            err_pred += float((ab - truth_lab[:, 1:]).abs().mean(dim=(1, 2, 3)).sum())
            err_gray += float(truth_lab[:, 1:].abs().mean(dim=(1, 2, 3)).sum())
        # spread over the held-out set, which is ordered by class in folder data
        pick = torch.linspace(0, len(held_out) - 1, min(GRID_IMAGES, len(held_out))).round().long()
        shown = method.colorize(adapter.eval_transform(to_device(held_out[pick], device)))
    grid = output / "colorization_grid.png"
    write_grid([shown["gray"], shown["predicted"], shown["truth"]], grid)
    n = len(held_out)
    colours = {"heldout_ab_abs_error": err_pred / n, "gray_ab_abs_error": err_gray / n,
               "annealed_mean_temperature": method.hparams()["temperature"], "num_bins": method.num_bins,
               "grid_png": grid.name, "grid_rows": ["gray input (L)", "predicted", "truth"]}
    print(f"held-out mean |ab error|: predicted {colours['heldout_ab_abs_error']:.2f}, "
          f"gray (ab = 0) {colours['gray_ab_abs_error']:.2f} (Lab units); wrote {grid}")
    return {"colorization": colours}


def check_images(prepared: Any, path: str) -> None:
    from multissl.methods.colorization import check_colour_images

    check_colour_images(prepared, path)


def run_colorization(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    # the accuracy is per pixel of the prediction grid (1/4 of the input resolution per side)
    return run(parse_args(argv), "colorization", "colorization", evaluate=lambda method, views, g: method(views),
               chance=lambda method: method.majority_accuracy(), check_images=check_images,
               extra_outputs=colour_outputs)


def main(argv: Optional[List[str]] = None) -> int:
    return exit_status("colorization", lambda: run_colorization(argv))


if __name__ == "__main__":
    sys.exit(main())
