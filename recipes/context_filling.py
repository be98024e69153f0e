"""Context filling: pretrain a masked autoencoder without labels, then fill hidden image regions (PSNR vs classic fills, PNG grid) or hidden words (top-1/top-5 vs unigram frequency).

**Images** (``--modality image``, the default). A ViT masked autoencoder (MAE, He et al. 2022;
``vit_tiny``, patch 4 on 28-32 px images) is pretrained on every image outside the held-out split,
reconstructing 75 % randomly hidden patches from the visible ones. On the held-out images the
recipe then hides

- ``random``: 75 % of the patches at random (the pretraining task, seeded, the same for every
  fill), and
- ``center``: a central block of patches (about 45 % of each side -- a 12x12 px hole in a 28 px
  digit), a region the model was never trained to fill as a block,

and measures the PSNR of the hidden pixels (dB, pixels in [0, 1]) for the MAE's fill and for three
classic fills that need no training: the mean of the visible pixels, the training set's mean
image, and diffusion (harmonic) inpainting of the surrounding context. It writes
``inpainting_random.png`` and ``inpainting_center.png``: per held-out image (columns), the masked
input (hidden pixels gray), the MAE's fill, the diffusion fill and the original (rows).

    accelerate launch recipes/context_filling.py --data ../shared/data/mnist_test --max-records 5000 \\
        --epochs 20 --output runs/context_filling_mnist
    python -m multissl.recipes.context_filling --data photos/ --image-size 32 --output runs/cf

**Text** (``--modality text``): the text adapter's tokenizer is trained on the pretraining texts
only; ``mae`` on token ids (masked language modelling, 15 % of the tokens hidden, the pieces of a
word together) is pretrained on them, BERT-style by default (``--style simmim``: the hidden pieces
replaced by a mask embedding in the encoder's input, a linear head; ``--style mae`` keeps MAE's
visible-tokens encoder and light decoder). On the held-out texts the recipe hides words the same way
and reports the top-1 / top-5 accuracy of the hidden pieces and the share of whole words filled
exactly, next to two count baselines of the pretraining texts (unigram: always the most frequent
pieces; bigram: adjacent-piece counts given the nearest visible neighbours), with a few filled-in
examples.

    accelerate launch recipes/context_filling.py --modality text \
        --data ../shared/data/sms_spam_collection/SMSSpamCollection --epochs 40 --output runs/cf_sms

``--data``: anything the adapter reads (an image folder, an MNIST-style IDX folder, ``.npy`` /
``.npz``, Parquet / Arrow, a saved ``datasets`` folder; labels, if any, are ignored). Writes
``<output>/metrics.json`` (atomically), the PNG grids and the encoder in ``<output>/final``.
A bad file or option exits with status 2 and one line naming it.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional

import numpy as np

if TYPE_CHECKING:  # torch is imported where it is used, so that --help answers at once
    import torch

MODALITIES = ("image", "text")
#: multissl.methods.mae.STYLES (not imported: --help stays free of torch); text fills words
#: BERT-style (0.223 vs 0.095 top-1 on SMS, docs/recipes/context_filling.md), images keep MAE
STYLES = ("mae", "simmim")
DEFAULT_STYLE = {"image": "mae", "text": "simmim"}
#: held-out images shown in each PNG grid
GRID_IMAGES = 12
#: each pixel becomes a PIXEL_SCALE x PIXEL_SCALE block in the PNG (28 px digits are tiny)
PIXEL_SCALE = 4


@dataclass
class ContextFillingArgs:
    data: str
    output: str = "runs/context_filling"
    modality: str = "image"
    test_data: Optional[str] = None
    test_fraction: float = 0.2
    max_records: Optional[int] = None
    max_test_records: Optional[int] = None
    encoder: Optional[str] = None  # default: the adapter's token encoder (vit_tiny for images)
    image_size: Optional[int] = None
    patch_size: Optional[int] = None
    text_column: Optional[str] = None  # several joined: "title,description"
    column_names: Optional[List[str]] = None  # of a header-less CSV / TSV
    vocab_size: Optional[int] = None  # text: WordPiece vocabulary (default: the text adapter's)
    mask_ratio: Optional[float] = None  # default: the method's (0.75) or the adapter's recommendation (text 0.15)
    style: Optional[str] = None  # mae | simmim (default: simmim for text, BERT-style; mae for images)
    center_fraction: float = 0.45
    decoder_dim: int = 128
    decoder_depth: int = 2
    decoder_heads: int = 4
    epochs: int = 20
    # small batches: on a few thousand images MAE needs optimiser steps more than batch size
    # (MNIST: loss 0.52 after 1,500 steps of 32 images vs 0.85 after 250 steps of 128)
    batch_size: int = 32
    lr: Optional[float] = None
    seed: int = 0
    progress: bool = True


def parse_args(argv: Optional[List[str]] = None) -> ContextFillingArgs:
    d = ContextFillingArgs(data="")
    p = argparse.ArgumentParser(prog="context_filling", description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="unlabeled images or texts (labels, if any, are ignored)")
    p.add_argument("--output", default=d.output)
    p.add_argument("--modality", choices=MODALITIES, default=d.modality)
    p.add_argument("--test-data", default=None, help="separate held-out data (default: split --data)")
    p.add_argument("--test-fraction", type=float, default=d.test_fraction,
                   help="without --test-data: the share of --data held out (never pretrained on)")
    p.add_argument("--max-records", type=int, default=None, help="use a random subset of --data of this size")
    p.add_argument("--max-test-records", type=int, default=None, help="use a random subset of the held-out data")
    p.add_argument("--encoder", default=None, help="encoder name (default: the adapter's token encoder)")
    p.add_argument("--image-size", type=int, default=None, help="resize images to this square size")
    p.add_argument("--patch-size", type=int, default=None, help="ViT patch side (default: 4 up to 32 px)")
    p.add_argument("--text-column", default=None,
                   help="text column of a CSV / datasets source; comma-separated to join several")
    p.add_argument("--column-names", default=None,
                   help="comma-separated names of the columns of a header-less CSV / TSV file")
    p.add_argument("--vocab-size", type=int, default=None,
                   help="text: size of the WordPiece vocabulary learnt on the pretraining texts (default: the adapter's)")
    p.add_argument("--mask-ratio", type=float, default=None,
                   help="share of tokens hidden in pretraining (default: 0.75 for images, 0.15 for text)")
    p.add_argument("--style", choices=STYLES, default=None,
                   help="mae: the encoder sees the visible tokens, a light decoder fills the rest; simmim: mask "
                        "embeddings in the encoder's input and a linear head (BERT-style on text). Default: "
                        "simmim for text, mae for images")
    p.add_argument("--center-fraction", type=float, default=d.center_fraction,
                   help="side of the central hole as a share of the image side")
    p.add_argument("--decoder-dim", type=int, default=d.decoder_dim)
    p.add_argument("--decoder-depth", type=int, default=d.decoder_depth)
    p.add_argument("--decoder-heads", type=int, default=d.decoder_heads)
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=None, help="pretraining lr (default: the method's)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)
    if not 0 < a.test_fraction < 1:
        p.error(f"--test-fraction must be in (0, 1), got {a.test_fraction}")
    if a.mask_ratio is not None and not 0 < a.mask_ratio < 1:
        p.error(f"--mask-ratio must be in (0, 1), got {a.mask_ratio}")
    if not 0 < a.center_fraction < 1:
        p.error(f"--center-fraction must be in (0, 1), got {a.center_fraction}")
    if a.vocab_size is not None and a.vocab_size < 10:
        p.error(f"--vocab-size must be >= 10, got {a.vocab_size}")
    for name in ("epochs", "batch_size", "decoder_dim", "decoder_depth", "decoder_heads"):
        if getattr(a, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(a, name)}")
    return ContextFillingArgs(data=a.data, output=a.output, modality=a.modality, test_data=a.test_data,
                              test_fraction=a.test_fraction, max_records=a.max_records,
                              max_test_records=a.max_test_records, encoder=a.encoder, image_size=a.image_size,
                              patch_size=a.patch_size, text_column=a.text_column,
                              column_names=[c.strip() for c in a.column_names.split(",")] if a.column_names else None,
                              vocab_size=a.vocab_size,
                              mask_ratio=a.mask_ratio, style=a.style,
                              center_fraction=a.center_fraction, decoder_dim=a.decoder_dim,
                              decoder_depth=a.decoder_depth, decoder_heads=a.decoder_heads, epochs=a.epochs,
                              batch_size=a.batch_size, lr=a.lr, seed=a.seed, progress=not a.no_progress)


# ------------------------------------------------------------------------------------ shared steps
def subset(prepared: Any, n: Optional[int], seed: int) -> Any:
    """A random subset of ``n`` records (all when ``n`` is None or larger), in the original order."""
    import torch

    from multissl.adapters import num_records, take

    total = num_records(prepared)
    if not n or n >= total:
        return prepared
    idx = np.sort(np.random.default_rng(seed).permutation(total)[:n])
    return take(prepared, torch.as_tensor(idx))


def split(adapter: Any, args: ContextFillingArgs, read: Any) -> Any:
    """(pretraining records, held-out records), prepared by ``adapter``."""
    import torch

    from multissl.adapters import num_records, take
    from multissl.errors import DataError

    prepared = subset(adapter.prepare(read(args.data)), args.max_records, args.seed)
    if args.test_data:
        held_out = subset(adapter.prepare(read(args.test_data)), args.max_test_records, args.seed)
        return prepared, held_out
    n = num_records(prepared)
    n_test = int(round(args.test_fraction * n))
    if n_test < 1 or n - n_test < 2:
        raise DataError(f"{args.data}: {n} records are too few to hold out {args.test_fraction:.0%} and pretrain")
    order = torch.as_tensor(np.random.default_rng(args.seed).permutation(n))
    train, test = order[n_test:].sort().values, order[:n_test].sort().values
    return take(prepared, train), subset(take(prepared, test), args.max_test_records, args.seed)


def pretrain_mae(adapter: Any, train: Any, args: ContextFillingArgs, method_kwargs: Dict[str, Any]) -> Any:
    """Fit the adapter, build its token encoder and MAE, train; returns (method, trainer, history, encoder spec)."""
    import torch

    from multissl.methods import build_method
    from multissl.trainer import TrainConfig, Trainer

    adapter.fit(train)
    torch.manual_seed(args.seed)
    encoder_name = args.encoder or adapter.token_defaults.get("encoder") or adapter.defaults.get("encoder")
    encoder = adapter.build_encoder(encoder_name)
    kwargs = {**adapter.method_defaults.get("mae", {}), "decoder_dim": args.decoder_dim,
              "decoder_depth": args.decoder_depth, "decoder_heads": args.decoder_heads, **method_kwargs}
    if args.mask_ratio is not None:
        kwargs["mask_ratio"] = args.mask_ratio
    kwargs["style"] = args.style or DEFAULT_STYLE[args.modality]
    method = build_method("mae", encoder, adapter.embed_dim(encoder), **kwargs)
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                         output_dir=args.output, progress=args.progress, overwrite=True)
    trainer = Trainer(method, adapter, config)
    history = trainer.fit(train)
    return method, trainer, history, encoder_name


def save_model(method: Any, adapter: Any, trainer: Any, history: List[Dict[str, Any]], encoder_name: str,
               args: ContextFillingArgs, n_train: int, seconds: float, metrics: Dict[str, float]) -> Path:
    from multissl.model import SSLModel

    training = {"epochs": args.epochs, "batch_size": args.batch_size, "seed": args.seed, "num_records": n_train,
                "train_seconds": round(seconds, 1), **trainer.resolved}
    model = SSLModel(adapter, method.encoder, {"adapter": adapter.name, "method": "mae",
                                               "method_hparams": method.hparams(),
                                               "encoder": {"name": encoder_name, "kwargs": {}},
                                               "embed_dim": method.embed_dim, "training": training,
                                               "history": history})
    return model.save_pretrained(Path(args.output) / "final", metrics=metrics)


# ------------------------------------------------------------------------------------ images
def write_grid(rows: List["torch.Tensor"], path: Path, scale: int = PIXEL_SCALE, gap: int = 2) -> None:
    """Batches (N, C, H, W) in [0, 1], one per row, tiled into a PNG written atomically."""
    from PIL import Image

    n, _, h, w = rows[0].shape
    cell_h, cell_w = h * scale, w * scale
    canvas = np.full((len(rows) * (cell_h + gap) - gap, n * (cell_w + gap) - gap, 3), 255, dtype=np.uint8)
    for r, batch in enumerate(rows):
        batch = batch.expand(-1, 3, -1, -1) if batch.shape[1] == 1 else batch
        pixels = (batch.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
        pixels = pixels.repeat(scale, axis=1).repeat(scale, axis=2)
        for i in range(n):
            y, x = r * (cell_h + gap), i * (cell_w + gap)
            canvas[y:y + cell_h, x:x + cell_w] = pixels[i]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    Image.fromarray(canvas).save(tmp)
    os.replace(tmp, path)


def fill_images(method: Any, adapter: Any, held_out: "torch.Tensor", mean_image: "torch.Tensor", kind: str,
                args: ContextFillingArgs, grid_path: Path) -> Dict[str, Any]:
    """PSNR of the hidden pixels for the MAE and the classic fills under one kind of mask."""
    import torch

    from multissl.adapters import to_device
    from multissl.evaluation.image_filling import (center_block_mask, diffusion_fill, mean_fill, mean_image_fill,
                                                   patch_mask_to_pixels, psnr)
    from multissl.methods.masked import sample_mask
    from multissl.tokens import TokenBatch

    method.eval()
    device = next(method.parameters()).device
    stem = method.encoder.stem
    grid, patch = stem.grid, stem.patch_size
    mean = torch.tensor(adapter.config["mean"], device=device).view(1, -1, 1, 1)
    std = torch.tensor(adapter.config["std"], device=device).view(1, -1, 1, 1)
    ratio = method.hparams()["mask_ratio"]
    g = torch.Generator(device=device).manual_seed(args.seed + 1)  # the same masks for every fill
    scores: Dict[str, List[torch.Tensor]] = {"mae": [], "mean_fill": [], "mean_image": [], "diffusion": []}
    pick = torch.linspace(0, len(held_out) - 1, min(GRID_IMAGES, len(held_out))).round().long()
    shown: Dict[str, List[torch.Tensor]] = {"masked": [], "mae": [], "diffusion": [], "original": []}
    hidden_share = []
    with torch.no_grad():
        for start in range(0, len(held_out), 256):
            x = adapter.eval_transform(to_device(held_out[start:start + 256], device))
            b = x.shape[0]
            if kind == "random":
                tokens_hidden = sample_mask(b, stem.num_tokens, ratio, generator=g, device=device)
            else:
                tokens_hidden = center_block_mask(b, grid, args.center_fraction, device=device)
            hidden = patch_mask_to_pixels(tokens_hidden, grid, patch).unsqueeze(1)
            hidden_share.append(hidden.float().mean().item() * b)
            truth = (x * std + mean).clamp(0, 1)
            pred, _ = method.reconstruct(TokenBatch(inputs=x, targets=adapter.patchify(x)), tokens_hidden)
            recon = (adapter.unpatchify(pred.float()) * std + mean).clamp(0, 1)
            fills = {"mae": torch.where(hidden, recon, truth), "mean_fill": mean_fill(truth, hidden),
                     "mean_image": mean_image_fill(truth, hidden, mean_image.to(device)),
                     "diffusion": diffusion_fill(truth, hidden)}
            for name, filled in fills.items():
                scores[name].append(psnr(filled, truth, hidden).cpu())
            here = pick[(pick >= start) & (pick < start + b)] - start
            if len(here):
                shown["masked"].append(torch.where(hidden, torch.full_like(truth, 0.5), truth)[here])
                shown["mae"].append(fills["mae"][here])
                shown["diffusion"].append(fills["diffusion"][here])
                shown["original"].append(truth[here])
    write_grid([torch.cat(shown[k]) for k in ("masked", "mae", "diffusion", "original")], grid_path)
    per_image = {k: torch.cat(v) for k, v in scores.items()}
    result: Dict[str, Any] = {"psnr_db": {k: float(v.mean()) for k, v in per_image.items()},
                              "psnr_db_std": {k: float(v.std()) for k, v in per_image.items()},
                              "hidden_pixel_share": sum(hidden_share) / len(held_out),
                              "grid_png": grid_path.name,
                              "grid_rows": ["masked input (hidden = gray)", "MAE fill", "diffusion fill", "original"]}
    baselines = {k: v for k, v in result["psnr_db"].items() if k != "mae"}
    best = max(baselines, key=baselines.get)
    result["best_baseline"] = best
    result["mae_minus_best_baseline_db"] = result["psnr_db"]["mae"] - baselines[best]
    # paired: on how many held-out images the MAE's fill beats the best classic one
    result["mae_better_share"] = float((per_image["mae"] > per_image[best]).float().mean())
    return result


def run_image(args: ContextFillingArgs) -> Dict[str, Any]:
    import torch

    from multissl.adapters import get_adapter, num_records
    from multissl.distributed import process_state
    from multissl.evaluation.few_labels import write_json_atomic
    from multissl.io import load_data

    t0 = time.perf_counter()
    state = process_state()
    config: Dict[str, Any] = {"preset": "light"}  # MAE's augmentation: random resized crop + flip
    if args.image_size:
        config["image_size"] = args.image_size
    if args.patch_size:
        config["patch_size"] = args.patch_size
    adapter = get_adapter("image", **config)
    train, held_out = split(adapter, args, load_data)
    adapter.patch_size()  # a patch size that does not divide the images fails here, before training
    if state.is_main_process:
        print(f"context_filling: {num_records(train)} images {tuple(train.shape[1:])} to pretrain MAE on, "
              f"{num_records(held_out)} held out")
    method, trainer, history, encoder_name = pretrain_mae(adapter, train, args, {"norm_targets": False})
    # the fill is judged in pixels, so the MAE regresses (normalised) pixels, not per-patch
    # normalised ones (norm_targets=False; the paper's normalised targets are for representations)
    t_pretrain = time.perf_counter() - t0
    if not state.is_main_process:  # evaluation is cheap; the main process does it alone
        state.wait_for_everyone()
        return {}
    mean_image = train.float().div(255).mean(dim=0)  # prepared images already have the configured channels
    out = Path(args.output)
    fills = {kind: fill_images(method, adapter, held_out, mean_image, kind, args, out / f"inpainting_{kind}.png")
             for kind in ("random", "center")}
    metrics = {"recipe": "context_filling", "modality": "image", "data": str(args.data), "args": asdict(args),
               "num_pretrain": int(num_records(train)), "num_heldout": int(num_records(held_out)),
               "image_shape": list(train.shape[1:]), "patch_size": adapter.patch_size(), "encoder": encoder_name,
               "method_hparams": method.hparams(), "fills": fills,
               "final_train_loss": history[-1]["loss"] if history else None, "pretrain_history": history,
               "pretrain_seconds": round(t_pretrain, 1), "total_seconds": round(time.perf_counter() - t0, 1),
               "device": str(next(method.parameters()).device), "torch_threads": torch.get_num_threads()}
    write_json_atomic(out / "metrics.json", metrics)
    save_model(method, adapter, trainer, history, encoder_name, args, int(num_records(train)), t_pretrain,
               {f"psnr_{k}_mae": v["psnr_db"]["mae"] for k, v in fills.items()})
    print()
    print(f"PSNR of the hidden pixels on {num_records(held_out)} held-out images (dB, higher is better)")
    names = ["mae", "mean_fill", "mean_image", "diffusion"]
    print(f"{'mask':<10}{'hidden':>8}" + "".join(f"{n:>12}" for n in names))
    for kind, r in fills.items():
        print(f"{kind:<10}{r['hidden_pixel_share']:>8.0%}" + "".join(f"{r['psnr_db'][n]:>12.2f}" for n in names))
    for kind, r in fills.items():
        print(f"{kind}: MAE minus best classic fill ({r['best_baseline']}) {r['mae_minus_best_baseline_db']:+.2f} dB, "
              f"better on {r['mae_better_share']:.0%} of the images")
    print(f"\nwrote {out / 'metrics.json'}, {out / 'inpainting_random.png'}, {out / 'inpainting_center.png'}, "
          f"model in {out / 'final'}")
    state.wait_for_everyone()
    return metrics


# ------------------------------------------------------------------------------------ text
#: held-out texts shown with their filled words in metrics.json
TEXT_EXAMPLES = 8
#: the trained model and the two count baselines, as keyed in metrics.json
FILLERS = ("mae", "unigram", "bigram")


def split_texts(args: ContextFillingArgs, column: Any) -> Any:
    """(pretraining texts, held-out texts) as lists of strings, split before any tokenizer is
    trained, so the vocabulary is learnt from the pretraining texts alone."""
    from multissl.adapters.text_io import read_texts
    from multissl.errors import DataError

    def pick(texts: List[str], n: Optional[int]) -> List[str]:
        if not n or n >= len(texts):
            return list(texts)
        return [texts[i] for i in np.sort(np.random.default_rng(args.seed).permutation(len(texts))[:n])]

    texts = pick(read_texts(args.data, column=column, column_names=args.column_names).texts, args.max_records)
    if args.test_data:
        return texts, pick(read_texts(args.test_data, column=column, column_names=args.column_names).texts,
                           args.max_test_records)
    n_test = int(round(args.test_fraction * len(texts)))
    if n_test < 1 or len(texts) - n_test < 2:
        raise DataError(f"{args.data}: {len(texts)} texts are too few to hold out {args.test_fraction:.0%} and pretrain")
    order = np.random.default_rng(args.seed).permutation(len(texts))
    return [texts[i] for i in np.sort(order[n_test:])], pick([texts[i] for i in np.sort(order[:n_test])],
                                                             args.max_test_records)


def fill_words(method: Any, adapter: Any, train: Any, held_out: Any, args: ContextFillingArgs) -> Dict[str, Any]:
    """Masked-word accuracy on held-out texts: the MAE's top-1 / top-5 and two count baselines.

    Masks as in pretraining (``mask_ratio`` of the real tokens, whole words when the adapter
    groups word pieces), seeded and the same for all. Token scores are per hidden piece; a word
    counts as filled when every hidden piece of it is the top-1 guess. The unigram baseline
    always guesses the pieces most frequent in the pretraining texts; the bigram baseline scores
    each piece by the adjacent-piece counts of the pretraining texts given its nearest visible
    neighbours (:class:`multissl.evaluation.text_filling.BigramFill`)."""
    import torch

    from multissl.adapters import take, to_device
    from multissl.evaluation.text_filling import BigramFill
    from multissl.methods.masked import sample_mask

    method.eval()
    device = next(method.parameters()).device
    tok = adapter.tokenizer
    counts = tok.unigram_counts(train["ids"])
    counts[tok.pad_id] = 0
    frequent = counts.topk(5).indices.to(device)
    bigram = BigramFill(train["ids"], tok.pad_id, tok.vocab_size)
    ratio = method.hparams()["mask_ratio"]
    g = torch.Generator(device=device).manual_seed(args.seed + 1)
    totals = {"tokens": 0, "words": 0,
              **{f"{k}_{score}": 0 for k in FILLERS for score in ("top1", "top5", "word_top1")}}
    examples: List[Dict[str, Any]] = []
    n = len(held_out["ids"])
    with torch.no_grad():
        for start in range(0, n, 256):
            batch = to_device(take(held_out, torch.arange(start, min(n, start + 256))), device)
            tb = adapter.tokens(batch)  # deterministic for text: the ids themselves
            b, length = tb.targets.shape
            hidden = sample_mask(b, length, ratio, tb.padding_mask, tb.mask_groups, g, device)
            logits, _ = method.reconstruct(tb, hidden)
            top5 = logits.float().topk(5, dim=-1).indices  # (B, L, 5)
            truth = tb.targets
            truth_h = truth[hidden]  # (M,), the hidden pieces in ids[hidden] order
            # every filler's five best guesses at the hidden places, (M, 5)
            guesses = {"mae": top5[hidden], "unigram": frequent.expand(len(truth_h), -1),
                       "bigram": bigram.scores(truth, hidden, tb.padding_mask).topk(5, dim=-1).indices}
            groups = tb.mask_groups if tb.mask_groups is not None else torch.arange(length, device=device).expand(b, -1)
            pieces = torch.zeros(b, length, device=device).scatter_add_(1, groups, hidden.float())
            words = pieces > 0
            totals["tokens"] += len(truth_h)
            totals["words"] += int(words.sum())
            for k, ranked in guesses.items():
                right = ranked == truth_h.unsqueeze(-1)  # (M, 5)
                totals[f"{k}_top1"] += int(right[:, 0].sum())
                totals[f"{k}_top5"] += int(right.any(-1).sum())
                top1 = torch.zeros(b, length, device=device).masked_scatter(hidden, right[:, 0].float())
                right_pieces = torch.zeros(b, length, device=device).scatter_add_(1, groups, top1)
                totals[f"{k}_word_top1"] += int((words & (right_pieces == pieces)).sum())
            for i in range(min(b, TEXT_EXAMPLES - len(examples))):
                ids = truth[i][~tb.padding_mask[i]].tolist()
                h = hidden[i][~tb.padding_mask[i]].tolist()
                guess = top5[i, :len(ids), 0].tolist()
                examples.append({"masked": tok.decode([tok.backend.token_to_id(tok.special["mask"]) if m else t
                                                       for t, m in zip(ids, h)]),
                                 "filled": tok.decode([p if m else t for t, p, m in zip(ids, guess, h)]),
                                 "original": tok.decode(ids)})
    t, w = max(1, totals["tokens"]), max(1, totals["words"])
    return {"hidden_tokens": totals["tokens"], "hidden_words": totals["words"],
            "token_top1": {k: totals[f"{k}_top1"] / t for k in FILLERS},
            "token_top5": {k: totals[f"{k}_top5"] / t for k in FILLERS},
            "word_top1": {k: totals[f"{k}_word_top1"] / w for k in FILLERS},
            "unigram_guesses": tok.tokens(frequent.tolist()), "examples": examples}


def run_text(args: ContextFillingArgs) -> Dict[str, Any]:
    import torch

    from multissl.adapters import get_adapter
    from multissl.distributed import process_state
    from multissl.evaluation.few_labels import write_json_atomic

    t0 = time.perf_counter()
    state = process_state()
    adapter = get_adapter("text", **({"column": args.text_column} if args.text_column else {}),
                          **({"vocab_size": args.vocab_size} if args.vocab_size else {}))
    train_texts, test_texts = split_texts(args, adapter.config.get("column"))
    adapter.fit(train_texts)
    train, held_out = adapter.prepare(train_texts), adapter.prepare(test_texts)
    if state.is_main_process:
        print(f"context_filling: {len(train_texts)} texts to pretrain masked language modelling on, "
              f"{len(test_texts)} held out; vocabulary {adapter.tokenizer.vocab_size}, {adapter.max_length} tokens per text")
    method, trainer, history, encoder_name = pretrain_mae(adapter, train, args, {})
    t_pretrain = time.perf_counter() - t0
    if not state.is_main_process:
        state.wait_for_everyone()
        return {}
    words = fill_words(method, adapter, train, held_out, args)
    out = Path(args.output)
    metrics = {"recipe": "context_filling", "modality": "text", "data": str(args.data), "args": asdict(args),
               "num_pretrain": len(train_texts), "num_heldout": len(test_texts),
               "vocab_size": adapter.tokenizer.vocab_size, "max_length": adapter.max_length, "encoder": encoder_name,
               "method_hparams": method.hparams(), "words": words,
               "final_train_loss": history[-1]["loss"] if history else None, "pretrain_history": history,
               "pretrain_seconds": round(t_pretrain, 1), "total_seconds": round(time.perf_counter() - t0, 1),
               "device": str(next(method.parameters()).device), "torch_threads": torch.get_num_threads()}
    write_json_atomic(out / "metrics.json", metrics)
    save_model(method, adapter, trainer, history, encoder_name, args, len(train_texts), t_pretrain,
               {"masked_token_top1": words["token_top1"]["mae"], "masked_token_top5": words["token_top5"]["mae"]})
    print()
    print(f"masked words in {len(test_texts)} held-out texts ({words['hidden_tokens']} hidden pieces, "
          f"{words['hidden_words']} words)")
    print(f"{'':<22}{'model':>8}{'unigram':>10}{'bigram':>10}")
    for key, label in (("token_top1", "piece top-1"), ("token_top5", "piece top-5"), ("word_top1", "whole word top-1")):
        print(f"{label:<22}" + "".join(f"{words[key][k]:>{w}.3f}" for k, w in zip(FILLERS, (8, 10, 10))))
    for ex in words["examples"][:3]:
        print(f"  masked:   {ex['masked']}\n  filled:   {ex['filled']}\n  original: {ex['original']}")
    print(f"\nwrote {out / 'metrics.json'}, model in {out / 'final'}")
    state.wait_for_everyone()
    return metrics


def run(args: ContextFillingArgs) -> Dict[str, Any]:
    return run_image(args) if args.modality == "image" else run_text(args)


def main(argv: Optional[List[str]] = None) -> int:
    from multissl.errors import exit_status

    return exit_status("context_filling", lambda: run(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
