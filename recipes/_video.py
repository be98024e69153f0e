"""What the video recipes (``video_motion``, ``rotation --modality video``) share: Moving MNIST
from a digits file, SSL pretraining of a clip encoder, and the few-label motion-direction
comparison (SSL vs from scratch).

Not a recipe itself (the leading underscore keeps it out of ``multissl recipes``).
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

import numpy as np

if TYPE_CHECKING:
    import torch

#: digit images held out for the test sequences (the rest make the training sequences)
TEST_DIGIT_FRACTION = 0.2


def load_digits(path: str) -> np.ndarray:
    """uint8 (N, h, w) digit images from an MNIST-style folder (``*images-idx3-ubyte[.gz]``),
    an IDX file, or a ``.npy`` array; :class:`DataError` naming the path otherwise."""
    from multissl.errors import DataError
    from multissl.io import read_idx

    p = Path(path).expanduser()
    if p.is_dir():
        found = sorted(p.glob("*images-idx3-ubyte*"))
        if not found:
            raise DataError(f"{path}: no MNIST-style images file (*images-idx3-ubyte[.gz]) in this folder")
        p = found[0]
    elif not p.exists():
        raise DataError(f"{path}: no such file or folder")
    if p.suffix == ".npy":
        try:
            digits = np.load(p, allow_pickle=False)
        except (ValueError, OSError) as e:
            raise DataError(f"{p}: cannot read the .npy array ({e})") from None
    else:
        digits = read_idx(p)
    if digits.ndim != 3 or digits.dtype != np.uint8 or len(digits) < 2:
        raise DataError(f"{p}: expected uint8 digit images (N >= 2, h, w), got {digits.dtype} {digits.shape}")
    return digits


def split_digits(digits: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(train digits, test digits): test sequences are made of digit images never seen in training."""
    n_test = max(1, int(round(len(digits) * TEST_DIGIT_FRACTION)))
    return digits[:-n_test], digits[-n_test:]


def motion_sets(digits: np.ndarray, num_pool: int, num_test: int, frames: int, seed: int) -> Dict[str, Any]:
    """Moving MNIST clips whose digits share one direction, labelled by that direction (0 right,
    1 up, 2 left, 3 down): a labelled pool from the training digits and a test set from the
    held-out digits. Returns ``{"videos": uint8 (N, T, S, S), "labels", "pool", "test",
    "velocity", "positions"}`` (the last two: the generator's ground truth, see
    :class:`~multissl.adapters.video_moving_mnist.MovingMNIST`)."""
    from multissl.adapters.video_moving_mnist import moving_mnist

    train_digits, test_digits = split_digits(digits)
    a = moving_mnist(train_digits, num_sequences=num_pool, num_frames=frames, seed=seed + 2, same_direction=True)
    b = moving_mnist(test_digits, num_sequences=num_test, num_frames=frames, seed=seed + 3, same_direction=True)
    return {"videos": np.concatenate([a.videos, b.videos]), "labels": np.concatenate([a.direction, b.direction]),
            "pool": np.arange(num_pool), "test": np.arange(num_pool, num_pool + num_test),
            "velocity": np.concatenate([a.velocity, b.velocity]), "positions": np.concatenate([a.positions, b.positions])}


def pretrain_encoder(method_name: str, adapter: Any, prepared: Any, encoder_width: int, epochs: int,
                     batch_size: int, seed: int, progress: bool, lr: Optional[float] = None,
                     method_kwargs: Optional[Dict[str, Any]] = None,
                     init: Optional[Any] = None) -> Tuple[Any, List[Dict[str, Any]], float, Dict[str, Any]]:
    """Build ``c3d_small`` and train it with ``method_name`` on ``prepared`` (no labels);
    ``init``: an encoder of the same shape whose weights it starts from (a warm restart).

    Returns ``(method, history, seconds, training)``; the method keeps its head (pretext
    accuracy); ``training`` is what a saved model's config records of the run (epochs, batch,
    the trainer's resolved optimiser, precision and number of processes).
    """
    import time

    import torch

    from multissl.adapters.base import num_records
    from multissl.methods import build_method
    from multissl.trainer import TrainConfig, Trainer

    t0 = time.perf_counter()
    torch.manual_seed(seed)
    encoder = adapter.build_encoder("c3d_small", width=encoder_width)
    if init is not None:
        encoder.load_state_dict(init.state_dict())
    method = build_method(method_name, encoder, adapter.embed_dim(encoder), **(method_kwargs or {}))
    config = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, progress=progress, trackers=None)
    trainer = Trainer(method, adapter, config)
    history = trainer.fit(prepared)
    seconds = time.perf_counter() - t0
    training = {"epochs": epochs, "batch_size": batch_size, "seed": seed, "num_records": num_records(prepared),
                "train_seconds": round(seconds, 1), **trainer.resolved}
    return method, history, seconds, training


def motion_few_labels(encoder: Any, adapter: Any, sets: Dict[str, Any], encoder_width: int,
                      labels_per_class: List[int], seeds: int, finetune_steps: int, finetune_lr: float,
                      batch_size: int = 32, probe_steps: int = 0, encoder_lr_ratio: float = 1.0) -> Dict[str, Any]:
    """Few-label motion-direction classification: raw pixels, from scratch, SSL frozen and SSL
    fine-tuned, on the same labelled draws (see :mod:`multissl.evaluation.few_labels`).

    ``adapter`` must not flip clips horizontally while fine-tuning (a flip turns "right" into
    "left"); the caller passes one with ``hflip_prob=0``. ``probe_steps`` (head-only steps first:
    LP-FT) and ``encoder_lr_ratio`` apply to both fine-tuned arms alike.
    """
    from multissl.evaluation import FinetuneConfig
    from multissl.evaluation.few_labels import FewLabelConfig, compare_few_labels, gains
    from multissl.recipes._pretext import paired_gains
    from multissl.trainer import embed_prepared

    prepared = sets["prepared"] if "prepared" in sets else adapter.prepare(sets["videos"])
    labels = sets["labels"]
    z = embed_prepared(encoder, adapter, prepared).numpy()
    raw = prepared["video"].reshape(len(labels), -1).float().numpy() / 255.0
    ft = FinetuneConfig(steps=finetune_steps, lr=finetune_lr, batch_size=batch_size, probe_steps=probe_steps,
                        encoder_lr_ratio=encoder_lr_ratio)
    summary = compare_few_labels(encoder, adapter.embed_dim(encoder), adapter, prepared, labels, sets["pool"],
                                 sets["test"], build_scratch=lambda: adapter.build_encoder("c3d_small",
                                                                                           width=encoder_width),
                                 embeddings=z, raw=raw,
                                 config=FewLabelConfig(labels_per_class, tuple(range(seeds)), ft))
    return {"results": summary, "gains": gains(summary), "paired": paired_gains(summary),
            "num_pool": int(len(sets["pool"])), "num_test": int(len(sets["test"])),
            "class_counts_test": np.bincount(labels[sets["test"]]).tolist()}


def labelled_video_folder(path: str) -> Tuple[List[Path], np.ndarray, List[str]]:
    """Video files in one sub-folder per class under ``path``: (files, labels, class names)."""
    from multissl.adapters.video_io import list_video_files
    from multissl.errors import DataError

    root = Path(path).expanduser()
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if len(classes) < 2:
        raise DataError(f"{path}: expected one sub-folder of videos per class (at least 2 classes)")
    files, labels = [], []
    for c, name in enumerate(classes):
        found = list_video_files(root / name)
        files += found
        labels += [c] * len(found)
    return files, np.asarray(labels, dtype=np.int64), classes


def is_digit_source(path: str) -> bool:
    """True for an MNIST-style folder, an IDX file or a ``.npy`` of digits (Moving MNIST is made
    from them); False for a folder of class sub-folders of videos."""
    p = Path(path).expanduser()
    if p.is_dir():
        return any(p.glob("*images-idx3-ubyte*"))
    return True


def pretext_accuracy(method: Any, adapter: Any, prepared: Dict[str, "torch.Tensor"], batch_size: int = 64,
                     seed: int = 0) -> float:
    """Pretext accuracy of the trained method (eval mode) on prepared clips it never saw."""
    import torch

    from multissl.adapters import take

    method.eval()
    n = len(prepared["video"])
    correct = 0.0
    with torch.no_grad():
        for s in range(0, n, batch_size):
            batch = take(prepared, torch.arange(s, min(n, s + batch_size)))
            out = method([adapter.eval_transform(batch)])
            correct += float(out["accuracy"]) * len(batch["video"])
    return correct / n


def classification_adapter(adapter: Any, clip_length: int) -> Any:
    """A copy of the fitted ``adapter`` for direction labels: ``light`` crop without flips, centred
    clips of ``clip_length`` frames."""
    from multissl.adapters.video import VideoAdapter

    config = {k: v for k, v in adapter.config.items() if v is not None}
    config.update(preset="light", hflip_prob=0.0, clip_length=clip_length)
    return VideoAdapter(**copy.deepcopy(config))


__all__ = ["load_digits", "split_digits", "motion_sets", "pretrain_encoder", "motion_few_labels",
           "classification_adapter", "labelled_video_folder", "is_digit_source", "pretext_accuracy"]
