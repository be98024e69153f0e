"""``multissl demo``: the main job end to end, on data that ships with scikit-learn.

scikit-learn's ``load_digits`` (1,797 grayscale 8x8 digits, 10 classes) stands in for "lots of
unlabeled images, few labels". The demo

1. pretrains an encoder on all 1,797 images **without labels** (SimCLR by default);
2. holds out a fixed, stratified 30% test split; from the rest draws k = 1, 5, 10 labelled
   images per class, for 3 seeds;
3. compares, on identical labelled subsets (see :mod:`multissl.evaluation.few_labels`): raw
   pixels + logistic regression, the same encoder trained **from scratch** with the same
   augmentations and budget, the SSL encoder frozen + logistic regression, and the SSL encoder
   fine-tuned exactly like the from-scratch one;
4. prints the table, writes ``metrics.json`` and ``accuracy_vs_labels.png``.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

import numpy as np


#: modality -> "module:function"; each function is called as
#: ``fn(output, epochs=None|int, seeds=int, method=None|str, progress=bool)`` and returns its metrics
DEMOS: Dict[str, str] = {
    "image": "multissl.demo:image_demo",
    "text": "multissl.demo_text:text_demo",
    "timeseries": "multissl.demo_timeseries:timeseries_demo",
    "video": "multissl.demo_video:video_demo",
    "signature": "multissl.demo_signature:signature_demo",
}


def run_demo(modality: str, output: str, *, epochs: Optional[int] = None, seeds: int = 3,
             method: Optional[str] = None, progress: bool = True) -> Dict[str, Any]:
    """Run the embedded-data demo of ``modality`` (one of :data:`DEMOS`)."""
    import importlib

    from multissl.errors import ConfigError

    if modality not in DEMOS:
        raise ConfigError(f"no demo for modality {modality!r}; available: {', '.join(sorted(DEMOS))}")
    module, _, attr = DEMOS[modality].partition(":")
    fn = getattr(importlib.import_module(module), attr)
    return fn(output, epochs=epochs, seeds=seeds, method=method, progress=progress)


def demo_config(cls: Any, output: str, *, epochs: Optional[int], seeds: int, method: Optional[str],
                progress: bool) -> Any:
    """A demo's config dataclass ``cls`` from the CLI's options (``epochs`` / ``method``, when
    given, override the demo's budget); ``seeds`` < 1 is a :class:`ConfigError`."""
    from multissl.errors import ConfigError

    if seeds < 1:
        raise ConfigError(f"--seeds must be at least 1, got {seeds}")
    cfg = cls(output=output, progress=progress, seeds=tuple(range(seeds)))
    if epochs:
        cfg.epochs = epochs
    if method:
        cfg.method = method
    return cfg


def image_demo(output: str, *, epochs: Optional[int] = None, seeds: int = 3, method: Optional[str] = None,
               progress: bool = True) -> Dict[str, Any]:
    return run_image_demo(demo_config(DemoConfig, output, epochs=epochs, seeds=seeds, method=method,
                                      progress=progress))


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


def run_image_demo(cfg: DemoConfig) -> Dict[str, Any]:
    from sklearn.model_selection import train_test_split

    from multissl.api import pretrain
    from multissl.evaluation import FinetuneConfig
    from multissl.evaluation.few_labels import FewLabelConfig, compare_few_labels, gains
    from multissl.trainer import embed_prepared

    t_start = time.perf_counter()
    images, labels = load_digits_uint8()
    pool, test = train_test_split(np.arange(len(labels)), test_size=cfg.test_fraction, stratify=labels,
                                  random_state=0)
    out_dir = Path(cfg.output)

    print(f"multissl demo: pretraining {cfg.method} on {len(images)} unlabeled 8x8 digits "
          f"({cfg.encoder}, {cfg.epochs} epochs)")
    model = pretrain(images, adapter="image", method=cfg.method, epochs=cfg.epochs, batch_size=cfg.batch_size,
                     encoder=cfg.encoder, seed=0, output_dir=str(out_dir), progress=cfg.progress,
                     method_kwargs=cfg.method_kwargs, checkpoint_every=10**9, overwrite=True)
    t_pretrain = time.perf_counter() - t_start
    adapter = model.adapter
    prepared = adapter.prepare(images)
    z = embed_prepared(model.encoder, adapter, prepared).numpy()
    pixels = images.reshape(len(images), -1).astype(np.float32) / 255.0

    print(f"comparing with from-scratch training on {len(test)} test digits:")
    ft = FinetuneConfig(steps=cfg.finetune_steps, lr=cfg.finetune_lr, encoder_lr_ratio=cfg.finetune_encoder_lr_ratio,
                        batch_size=64)
    summary = compare_few_labels(model.encoder, model.embed_dim, adapter, prepared, labels, pool, test,
                                 build_scratch=lambda: adapter.build_encoder(cfg.encoder), embeddings=z, raw=pixels,
                                 config=FewLabelConfig(cfg.labels_per_class, cfg.seeds, ft))
    k0 = str(min(cfg.labels_per_class))
    metrics = {
        "dataset": "sklearn load_digits (1,797 8x8 grayscale digits)",
        "test_size": int(len(test)),
        "config": {k: (list(v) if isinstance(v, (tuple, list)) else v) for k, v in asdict(cfg).items()},
        "pretrain_seconds": round(t_pretrain, 1),
        "results": summary,
        "gains": gains(summary),
        "pretrain_history": model.config.get("history", []),
        "total_seconds": round(time.perf_counter() - t_start, 1),
    }
    return write_few_label_report(metrics, out_dir, len(cfg.seeds), k0, "digits: SSL pretraining vs from scratch")


def write_few_label_report(metrics: Dict[str, Any], out_dir: Path, n_seeds: int, k0: str, title: str) -> Dict[str, Any]:
    """The end of every few-label demo: print the table and the headline gain at ``k0`` labels per
    class, write ``metrics.json`` (atomically) and ``accuracy_vs_labels.png``; returns ``metrics``."""
    from multissl.evaluation.few_labels import format_table, plot_accuracy, write_json_atomic

    summary = metrics["results"]
    print()
    print(format_table(summary, n_seeds))
    print(f"\npretraining {metrics['pretrain_seconds']:.0f} s, total {metrics['total_seconds']:.0f} s; SSL probe - "
          f"scratch at {k0} label/class: {metrics['gains'][k0]['ssl_probe_minus_scratch']:+.3f}")
    write_json_atomic(out_dir / "metrics.json", metrics)
    plot_accuracy(summary, out_dir / "accuracy_vs_labels.png", title)
    print(f"wrote {out_dir / 'metrics.json'}, {out_dir / 'accuracy_vs_labels.png'}, model in {out_dir / 'final'}")
    return metrics
