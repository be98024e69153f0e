"""What every self-supervised method looks like to the trainer.

A method is an ``nn.Module`` that owns the encoder (``self.encoder``: a batch -> (B, D)
embeddings) plus its own heads, teachers and queues. The trainer calls, per step::

    views = adapter.views(batch, n_views=method.n_views, generator=g)   # on the device
    out = method(views)             # dict with at least "loss" (a scalar tensor)
    accelerator.backward(out["loss"]); optimizer.step()
    method.on_train_step_end(progress)   # EMA teachers, schedules; progress in [0, 1]

Only ``self.encoder`` is kept in the final model (``SSLModel``); heads live in checkpoints.
"""
from __future__ import annotations

from typing import Any, ClassVar, Dict, List

import torch
from torch import nn


class SSLMethod(nn.Module):
    """Base class. Subclasses set ``name`` and implement :meth:`forward`."""

    name: ClassVar[str] = ""
    #: how many augmented views one training step needs
    n_views: ClassVar[int] = 2
    #: what a training step feeds the method: ``"views"`` (``adapter.views`` -> ``method(views)``)
    #: or ``"tokens"`` (``adapter.tokens`` -> ``method(token_batch, generator=g)``, the masked
    #: methods; see :mod:`multissl.tokens`)
    input_kind: ClassVar[str] = "views"
    #: recommended optimiser settings for this method (the trainer uses them unless overridden)
    defaults: ClassVar[Dict[str, Any]] = {"optimizer": "adamw", "lr": 1e-3, "weight_decay": 1e-4}
    #: adapter settings this method recommends, per adapter name, applied by ``pretrain`` under
    #: the caller's ``adapter_config`` (e.g. ``{"image": {"preset": "light"}}`` for a pretext task)
    adapter_defaults: ClassVar[Dict[str, Dict[str, Any]]] = {}

    def __init__(self, encoder: nn.Module, embed_dim: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.embed_dim = int(embed_dim)

    def forward(self, views: List[Any]) -> Dict[str, torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def bind_adapter(self, adapter: Any) -> None:
        """Hook called by the Trainer with the fitted adapter before training, for methods that
        must know how views were made (colorization inverts the image normalisation)."""

    @torch.no_grad()
    def on_train_step_end(self, progress: float) -> None:
        """Hook after each optimiser step (``progress`` = step / total_steps)."""

    @torch.compiler.disable
    def logged_value(self, name: str, like: torch.Tensor) -> torch.Tensor:
        """Attribute ``name`` (a float schedule value, e.g. the EMA momentum) as a 0-dim tensor for
        the step's logs. Read outside ``torch.compile`` (TrainConfig.compile): a value that changes
        every step, read inside a compiled forward, would recompile it at every step."""
        return like.new_tensor(float(getattr(self, name))).detach()

    def hparams(self) -> Dict[str, Any]:
        """Hyperparameters worth recording in config.json and the model card."""
        return {}
