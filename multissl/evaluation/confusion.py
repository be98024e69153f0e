"""Confusion matrices: counts (rows = true class, columns = predicted) and a PNG of several
systems side by side, the picture that shows *which* classes a few-label model confuses."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Sequence

import numpy as np


def confusion_counts(y_true: Sequence[int], y_pred: Sequence[int], num_classes: int) -> np.ndarray:
    """(C, C) int64 counts; ``m[i, j]`` = records of class ``i`` predicted as ``j``."""
    y_true, y_pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"{len(y_true)} labels but {len(y_pred)} predictions")
    if len(y_true) and (min(y_true.min(), y_pred.min()) < 0 or max(y_true.max(), y_pred.max()) >= num_classes):
        raise ValueError(f"labels and predictions must be in [0, {num_classes})")
    m = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(m, (y_true, y_pred), 1)
    return m


def plot_confusion_matrices(matrices: Dict[str, np.ndarray], classes: Sequence[str], path: Path, title: str) -> Path:
    """One panel per system: row-normalised colours (recall per true class), counts written in."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(matrices)
    size = max(3.2, 0.45 * len(classes) + 1.6)
    fig, axes = plt.subplots(1, n, figsize=(size * n, size + 0.4), squeeze=False)
    for ax, (name, m) in zip(axes[0], matrices.items()):
        rates = m / np.maximum(1, m.sum(1, keepdims=True))
        ax.imshow(rates, vmin=0, vmax=1, cmap="Blues")
        for i in range(m.shape[0]):
            for j in range(m.shape[1]):
                ax.text(j, i, str(m[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if rates[i, j] > 0.5 else "black")
        ax.set_xticks(range(len(classes)), [str(c)[:12] for c in classes], rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(len(classes)), [str(c)[:12] for c in classes], fontsize=8)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"{name} (acc {np.trace(m) / max(1, m.sum()):.3f})", fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path
