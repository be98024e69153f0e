"""``multissl demo``: the main job end to end, on data that ships with scikit-learn.

scikit-learn's ``load_digits`` (1,797 grayscale 8x8 digits, 10 classes) stands in for "lots of
unlabeled images, few labels". The demo

1. pretrains an encoder on all 1,797 images **without labels** (SimCLR by default);
2. holds out a fixed, stratified 30% test split; from the rest draws k = 1, 5, 10 labelled
   images per class, for 3 seeds;
3. compares, on identical labelled subsets:
   - raw pixels + logistic regression (a reference point),
   - **from scratch**: the same encoder architecture, randomly initialised, fine-tuned with the
     same augmentations, optimiser and number of steps as the pretrained one (a fair baseline),
   - **SSL linear probe**: logistic regression on the frozen pretrained embeddings,
   - **SSL fine-tune**: the pretrained encoder fine-tuned exactly like the from-scratch one;
4. prints the table, writes ``metrics.json`` and ``accuracy_vs_labels.png``.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Sequence

import numpy as np
import torch

ROWS = ("pixels_probe", "scratch_finetune", "ssl_probe", "ssl_finetune")
LABELS = {
    "pixels_probe": "raw pixels + logistic regression",
    "scratch_finetune": "from scratch (same aug, same budget)",
    "ssl_probe": "SSL frozen + logistic regression",
    "ssl_finetune": "SSL fine-tuned",
}


@dataclass
class DemoConfig:
    output: str = "runs/demo-image"
    method: str = "simclr"
    encoder: str = "small_cnn"
    epochs: int = 60
    batch_size: int = 256
    labels_per_class: Sequence[int] = (1, 5, 10)
    seeds: Sequence[int] = (0, 1, 2)
    finetune_steps: int = 150
    finetune_lr: float = 3e-3  # head; the encoder gets finetune_lr * finetune_encoder_lr_ratio
    finetune_encoder_lr_ratio: float = 0.1
    test_fraction: float = 0.3
    progress: bool = True
    method_kwargs: Dict[str, Any] = field(default_factory=dict)


def load_digits_uint8() -> tuple:
    """Digits as uint8 images (N, 8, 8) in 0..255 and labels (N,)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    images = np.clip(d.images * 16.0, 0, 255).round().astype(np.uint8)
    return images, d.target.astype(np.int64)


def sample_per_class(labels: np.ndarray, pool: np.ndarray, k: int, seed: int) -> np.ndarray:
    """``k`` indices per class drawn from ``pool`` (deterministic in ``seed``)."""
    rng = np.random.default_rng(seed)
    chosen = [rng.choice(pool[labels[pool] == c], size=k, replace=False) for c in np.unique(labels)]
    return np.sort(np.concatenate(chosen))


def run_image_demo(cfg: DemoConfig) -> Dict[str, Any]:
    from sklearn.model_selection import train_test_split

    from multissl.api import pretrain
    from multissl.evaluation import FinetuneConfig, finetune, linear_probe
    from multissl.trainer import embed_prepared

    t_start = time.perf_counter()
    images, labels = load_digits_uint8()
    idx = np.arange(len(labels))
    pool, test = train_test_split(idx, test_size=cfg.test_fraction, stratify=labels, random_state=0)
    out_dir = Path(cfg.output)

    print(f"multissl demo: pretraining {cfg.method} on {len(images)} unlabeled 8x8 digits "
          f"({cfg.encoder}, {cfg.epochs} epochs)")
    model = pretrain(images, adapter="image", method=cfg.method, epochs=cfg.epochs, batch_size=cfg.batch_size,
                     encoder=cfg.encoder, seed=0, output_dir=str(out_dir), progress=cfg.progress,
                     method_kwargs=cfg.method_kwargs, checkpoint_every=10**9)
    t_pretrain = time.perf_counter() - t_start
    adapter = model.adapter
    prepared = adapter.prepare(images)
    z = embed_prepared(model.encoder, adapter, prepared).numpy()
    pixels = images.reshape(len(images), -1).astype(np.float32) / 255.0

    results: Dict[str, Dict[int, List[float]]] = {r: {k: [] for k in cfg.labels_per_class} for r in ROWS}
    ft = dict(steps=cfg.finetune_steps, lr=cfg.finetune_lr, encoder_lr_ratio=cfg.finetune_encoder_lr_ratio, batch_size=64)
    for k in cfg.labels_per_class:
        for seed in cfg.seeds:
            lab = sample_per_class(labels, pool, k, seed)
            results["pixels_probe"][k].append(linear_probe(pixels[lab], labels[lab], pixels[test], labels[test]))
            results["ssl_probe"][k].append(linear_probe(z[lab], labels[lab], z[test], labels[test]))
            torch.manual_seed(seed)
            scratch = adapter.build_encoder(cfg.encoder)
            for row, enc in (("scratch_finetune", scratch), ("ssl_finetune", model.encoder)):
                r = finetune(enc, adapter, prepared[torch.as_tensor(lab)], labels[lab], prepared[torch.as_tensor(test)],
                             labels[test], embed_dim=model.embed_dim, num_classes=10,
                             config=FinetuneConfig(seed=seed, **ft))
                results[row][k].append(r["accuracy"])
        line = "  ".join(f"{r}={np.mean(results[r][k]):.3f}" for r in ROWS)
        print(f"  {k:>2} labels/class: {line}")

    summary = {r: {str(k): {"mean": float(np.mean(v)), "std": float(np.std(v)), "runs": v}
                   for k, v in results[r].items()} for r in ROWS}
    k0 = min(cfg.labels_per_class)
    metrics = {
        "dataset": "sklearn load_digits (1,797 8x8 grayscale digits)",
        "test_size": int(len(test)),
        "config": {k: (list(v) if isinstance(v, (tuple, list)) else v) for k, v in asdict(cfg).items()},
        "pretrain_seconds": round(t_pretrain, 1),
        "total_seconds": None,
        "results": summary,
        "gain_at_min_labels": {
            "labels_per_class": k0,
            "ssl_probe_minus_scratch": summary["ssl_probe"][str(k0)]["mean"] - summary["scratch_finetune"][str(k0)]["mean"],
            "ssl_finetune_minus_scratch": summary["ssl_finetune"][str(k0)]["mean"] - summary["scratch_finetune"][str(k0)]["mean"],
        },
        "pretrain_history": model.config.get("history", []),
    }
    metrics["total_seconds"] = round(time.perf_counter() - t_start, 1)
    table = format_table(summary, cfg.labels_per_class, len(cfg.seeds))
    print()
    print(table)
    print(f"\npretraining {t_pretrain:.0f} s, total {metrics['total_seconds']:.0f} s; "
          f"SSL probe - scratch at {k0} label/class: {metrics['gain_at_min_labels']['ssl_probe_minus_scratch']:+.3f}")
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out_dir / "metrics.json", metrics)
    plot_accuracy(summary, cfg.labels_per_class, out_dir / "accuracy_vs_labels.png")
    print(f"wrote {out_dir / 'metrics.json'}, {out_dir / 'accuracy_vs_labels.png'}, model in {out_dir / 'final'}")
    return metrics


def format_table(summary: Dict[str, Any], ks: Sequence[int], n_seeds: int) -> str:
    head = f"{'accuracy (mean ± std, ' + str(n_seeds) + ' seeds)':<40}" + "".join(
        f"{f'{k} label' + ('s' if k > 1 else '') + '/class':>19}" for k in ks)
    lines = [head, "-" * len(head)]
    for r in ROWS:
        cells = "".join(f"{summary[r][str(k)]['mean']:>11.3f} ± {summary[r][str(k)]['std']:.3f}" for k in ks)
        lines.append(f"{LABELS[r]:<40}{cells}")
    return "\n".join(lines)


def write_json_atomic(path: Path, obj: Any) -> None:
    import os

    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str))
    os.replace(tmp, path)


def plot_accuracy(summary: Dict[str, Any], ks: Sequence[int], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for r in ROWS:
        means = [summary[r][str(k)]["mean"] for k in ks]
        stds = [summary[r][str(k)]["std"] for k in ks]
        ax.errorbar(ks, means, yerr=stds, marker="o", capsize=3, label=LABELS[r])
    ax.set_xscale("log")
    ax.set_xticks(list(ks))
    ax.set_xticklabels([str(k) for k in ks])
    ax.set_xlabel("labelled images per class")
    ax.set_ylabel("test accuracy")
    ax.set_title("digits: SSL pretraining vs from scratch")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    import os

    os.replace(tmp, path)
