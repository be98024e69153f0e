"""multissl: self-supervised learning across modalities.

    >>> from multissl import pretrain, SSLModel
    >>> model = pretrain(images, adapter="image", method="simclr", epochs=50, output_dir="runs/x")
    >>> z = model.embed(images)                       # numpy float32 (N, D)
    >>> model.save_pretrained("runs/x/final"); SSLModel.from_pretrained("runs/x/final")
"""
from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["pretrain", "SSLModel", "__version__"]


def __getattr__(name: str) -> Any:
    # Lazy so `import multissl` (and `multissl --help`) does not import torch and accelerate up front.
    if name == "pretrain":
        from multissl.api import pretrain

        return pretrain
    if name == "SSLModel":
        from multissl.model import SSLModel

        return SSLModel
    raise AttributeError(f"module 'multissl' has no attribute {name!r}")
