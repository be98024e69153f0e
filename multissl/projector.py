"""Embeddings for the TensorBoard projector (``multissl embed --tensorboard LOGDIR``).

Writes what ``tensorboard --logdir LOGDIR`` shows under *Projector*: the embedding matrix,
per-record metadata (the record's index, plus a label column when one is given) and, for image
data, a sprite of thumbnails so each point shows its picture. Uses TensorBoard's own writer
(``torch.utils.tensorboard``), so the files are exactly what TensorBoard expects.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from multissl.errors import ConfigError

#: the projector's sprite is one image; beyond this many records thumbnails are left out
MAX_SPRITE_RECORDS = 10_000


def write_projector(logdir: str, embeddings: np.ndarray, *, labels: Optional[Sequence] = None,
                    images: Optional[torch.Tensor] = None, tag: str = "multissl") -> Path:
    """Write ``embeddings`` (N, D) for the projector in ``logdir``; ``images`` (N, C, H, W)
    uint8 (or floats in [0, 1]) become the sprite. Returns the folder."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # pragma: no cover - depends on the extra
        raise ConfigError("--tensorboard needs TensorBoard: pip install 'multissl[tensorboard]'") from None
    n = len(embeddings)
    if labels is not None and len(labels) != n:
        raise ConfigError(f"{len(labels)} labels for {n} embeddings")
    metadata = [[str(i), str(label)] for i, label in enumerate(labels)] if labels is not None else [str(i) for i in range(n)]
    header = ["index", "label"] if labels is not None else None
    label_img = None
    if images is not None and n <= MAX_SPRITE_RECORDS:
        label_img = images.float() / 255.0 if images.dtype == torch.uint8 else images.float().clamp(0, 1)
        if label_img.shape[1] == 1:
            label_img = label_img.expand(-1, 3, -1, -1)
    Path(logdir).mkdir(parents=True, exist_ok=True)
    writer = SummaryWriter(log_dir=logdir)
    try:
        writer.add_embedding(torch.as_tensor(np.asarray(embeddings, dtype=np.float32)), metadata=metadata,
                             metadata_header=header, label_img=label_img, tag=tag)
    finally:
        writer.close()
    return Path(logdir)
