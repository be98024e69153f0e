"""``multissl demo --modality video``: few-label motion direction from bouncing-digit clips.

No video data set ships with multissl's base install, so the demo **builds** one from digits
that ship with scikit-learn: ``load_digits``' 8x8 images upscaled to 16x16 (nearest neighbour)
bounce on a black 32x32 canvas for 10 frames (the package's Moving MNIST generator,
:func:`multissl.adapters.video_moving_mnist.moving_mnist`, one digit per clip). The label is
the digit's initial direction of motion (right, up, left, down), which a single frame cannot
tell. The demo

1. pretrains a small 3D CNN on all clips **without labels** with future-frame prediction
   (``future_frame``: from the first 5 frames, predict the next 5 -- the method the
   ``video_motion`` recipe measured best for motion);
2. holds out a stratified 30% test split; from the rest draws k = 1, 5, 10 labelled clips per
   direction, for each seed;
3. compares on identical labelled subsets (:mod:`multissl.evaluation.few_labels`): raw pixels +
   logistic regression, the same encoder trained from scratch with the same augmentation and
   budget, the SSL encoder frozen + logistic regression, and the SSL encoder fine-tuned;
   fine-tuning crops but never flips (a flip turns "right" into "left");
4. prints the table, writes ``metrics.json`` and ``accuracy_vs_labels.png``.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np

from multissl.adapters.video_moving_mnist import DIRECTIONS


def bouncing_digits(num_sequences: int = 480, num_frames: int = 10, digit_size: int = 16, canvas: int = 32,
                    speed: float = 2.5, seed: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """Clips uint8 (N, num_frames, canvas, canvas) of one bouncing scikit-learn digit each, and
    their direction labels (N,) in ``DIRECTIONS`` order (0 right, 1 up, 2 left, 3 down)."""
    from multissl.adapters.video_moving_mnist import moving_mnist
    from multissl.demo import load_digits_uint8

    digits, _ = load_digits_uint8()
    scale = digit_size // digits.shape[1]
    big = np.kron(digits, np.ones((1, scale, scale), dtype=np.uint8))  # nearest-neighbour upscaling
    mm = moving_mnist(big, num_sequences=num_sequences, num_frames=num_frames, num_digits=1, canvas=canvas,
                      speed=speed, seed=seed)
    return mm.videos, mm.direction


@dataclass
class VideoDemoConfig:
    output: str = "runs/demo-video"
    method: str = "future_frame"
    epochs: int = 20
    batch_size: int = 32
    encoder_width: int = 8
    num_sequences: int = 480
    num_frames: int = 10
    labels_per_class: Sequence[int] = (1, 5, 10)
    seeds: Sequence[int] = (0, 1, 2)
    finetune_steps: int = 40
    finetune_lr: float = 1e-3
    test_fraction: float = 0.3
    progress: bool = True


def video_demo(output: str, *, epochs: Optional[int] = None, seeds: int = 3, method: Optional[str] = None,
               progress: bool = True) -> Dict[str, Any]:
    from multissl.demo import demo_config

    cfg = demo_config(VideoDemoConfig, output, epochs=epochs, seeds=seeds, method=method, progress=progress)
    return run_video_demo(cfg)


def run_video_demo(cfg: VideoDemoConfig) -> Dict[str, Any]:
    from sklearn.model_selection import train_test_split

    from multissl.adapters.video import VideoAdapter
    from multissl.api import pretrain
    from multissl.evaluation import FinetuneConfig
    from multissl.evaluation.few_labels import FewLabelConfig, compare_few_labels, gains
    from multissl.trainer import embed_prepared

    t_start = time.perf_counter()
    videos, y = bouncing_digits(cfg.num_sequences, cfg.num_frames)
    pool, test = train_test_split(np.arange(len(y)), test_size=cfg.test_fraction, stratify=y, random_state=0)
    out_dir = Path(cfg.output)
    enc_kwargs = {"width": cfg.encoder_width}
    method_kwargs: Dict[str, Any] = {}
    if cfg.method == "future_frame":  # first half of the clip -> second half
        half = cfg.num_frames // 2
        method_kwargs = {"context_frames": half, "future_frames": cfg.num_frames - half}
    print(f"multissl demo: pretraining {cfg.method} on {len(y)} unlabeled bouncing-digit clips "
          f"({cfg.num_frames} frames of 32x32, sklearn digits; {cfg.epochs} epochs)")
    model = pretrain(videos, adapter="video", method=cfg.method, epochs=cfg.epochs, batch_size=cfg.batch_size,
                     seed=0, output_dir=str(out_dir), progress=cfg.progress, encoder="c3d_small",
                     encoder_kwargs=enc_kwargs, method_kwargs=method_kwargs,
                     adapter_config={"clip_length": cfg.num_frames}, checkpoint_every=10**9, overwrite=True,
                     mixed_precision="no")
    t_pretrain = time.perf_counter() - t_start
    # the labelled task: centred full clips, crop but no flip (a flip swaps left and right)
    config = {k: v for k, v in model.adapter.config.items() if v is not None}
    config.update(preset="light", hflip_prob=0.0, clip_length=cfg.num_frames)
    adapter = VideoAdapter(**config)
    prepared = adapter.prepare(videos)
    z = embed_prepared(model.encoder, adapter, prepared).numpy()
    raw = prepared["video"].reshape(len(y), -1).float().numpy() / 255.0

    print(f"comparing with from-scratch training on {len(test)} test clips:")
    ft = FinetuneConfig(steps=cfg.finetune_steps, lr=cfg.finetune_lr, batch_size=32, device="cpu")
    summary = compare_few_labels(model.encoder, model.embed_dim, adapter, prepared, y, pool, test,
                                 build_scratch=lambda: adapter.build_encoder("c3d_small", **enc_kwargs),
                                 embeddings=z, raw=raw, config=FewLabelConfig(cfg.labels_per_class, cfg.seeds, ft))
    k0 = str(min(cfg.labels_per_class))
    metrics = {
        "dataset": f"bouncing sklearn digits (multissl.demo_video.bouncing_digits): {len(y)} clips, "
                   f"{cfg.num_frames} x 32 x 32, labels = initial direction ({', '.join(DIRECTIONS)})",
        "test_size": int(len(test)),
        "class_counts": np.bincount(y, minlength=len(DIRECTIONS)).tolist(),
        "config": {k: (list(v) if isinstance(v, (tuple, list)) else v) for k, v in asdict(cfg).items()},
        "encoder": {"name": "c3d_small", "kwargs": enc_kwargs},
        "method_kwargs": method_kwargs,
        "pretrain_seconds": round(t_pretrain, 1),
        "results": summary,
        "gains": gains(summary),
        "pretrain_history": model.config.get("history", []),
        "total_seconds": round(time.perf_counter() - t_start, 1),
    }
    from multissl.demo import write_few_label_report

    return write_few_label_report(metrics, out_dir, len(cfg.seeds), k0, "bouncing digits, motion direction: SSL vs scratch")


__all__ = ["bouncing_digits", "video_demo", "run_video_demo", "VideoDemoConfig"]
