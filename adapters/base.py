"""The contract every modality implements.

An adapter turns the user's raw data into tensors once (:meth:`Adapter.prepare`), learns any
preprocessing state it needs from the training data (:meth:`Adapter.fit`, e.g. normalisation
statistics or a tokenizer), and then, batch by batch on the training device, produces
stochastic views for the Siamese methods (:meth:`Adapter.views`) or tokens for the masked
methods (:meth:`Adapter.tokens`). It also knows a sensible default encoder for its modality.

Prepared data is a ``torch.Tensor`` or a ``dict[str, torch.Tensor]`` whose tensors all share
their first dimension (one row per record); :func:`take` and :func:`to_device` work on both.

Everything an adapter needs to reproduce its preprocessing is in :meth:`Adapter.get_config`
(JSON-serialisable), so ``type(adapter).from_config(adapter.get_config())`` rebuilds it.
"""
from __future__ import annotations

from typing import Any, ClassVar, Dict, List, Optional, Union

import torch
from torch import nn

Prepared = Union[torch.Tensor, Dict[str, torch.Tensor]]


def num_records(prepared: Prepared) -> int:
    if isinstance(prepared, dict):
        return len(next(iter(prepared.values())))
    return len(prepared)


def take(prepared: Prepared, index: torch.Tensor) -> Prepared:
    """Rows ``index`` of prepared data (a tensor or a dict of row-aligned tensors)."""
    if isinstance(prepared, dict):
        return {k: v[index] for k, v in prepared.items()}
    return prepared[index]


def to_device(prepared: Prepared, device: Union[str, torch.device], non_blocking: bool = True) -> Prepared:
    if isinstance(prepared, dict):
        return {k: v.to(device, non_blocking=non_blocking) for k, v in prepared.items()}
    return prepared.to(device, non_blocking=non_blocking)


class Adapter:
    """Base class for a modality. Subclasses set ``name`` and implement the abstract methods.

    Class attributes describe the recommended defaults used when the caller of
    :func:`multissl.pretrain` leaves them out; they should be good on *small* data.
    """

    name: ClassVar[str] = ""
    #: recommended defaults for ``pretrain`` (method, epochs, batch_size, lr, optimizer, encoder, ...)
    defaults: ClassVar[Dict[str, Any]] = {}
    #: methods this modality supports (None: all registered Siamese methods)
    supported_methods: ClassVar[Optional[List[str]]] = None
    #: defaults that replace ``defaults`` when the method takes tokens (``input_kind == "tokens"``),
    #: e.g. ``{"encoder": "vit_tiny"}`` so ``pretrain(images, method="mae")`` gets a Transformer
    token_defaults: ClassVar[Dict[str, Any]] = {}
    #: method hyperparameters this modality recommends, per method name (under the caller's
    #: ``method_kwargs``), e.g. ``{"mae": {"mask_ratio": 0.15}}`` for text
    method_defaults: ClassVar[Dict[str, Dict[str, Any]]] = {}

    def __init__(self, **config: Any) -> None:
        self.config: Dict[str, Any] = dict(config)

    # ---- serialisation -------------------------------------------------------------------
    def get_config(self) -> Dict[str, Any]:
        """JSON-serialisable state: constructor options plus anything learnt in :meth:`fit`."""
        return dict(self.config)

    @classmethod
    def from_config(cls, config: Dict[str, Any]) -> "Adapter":
        return cls(**config)

    # ---- data ----------------------------------------------------------------------------
    def prepare(self, data: Any) -> Prepared:
        """Decode and validate raw data once, to CPU tensors. Raise ``DataError`` naming
        the file and/or record index on bad input."""
        raise NotImplementedError

    def fit(self, prepared: Prepared) -> "Adapter":
        """Learn preprocessing state from the training data (stored in the config)."""
        return self

    def views(self, batch: Prepared, n_views: int = 2, generator: Optional[torch.Generator] = None) -> List[Any]:
        """``n_views`` independently augmented views of a batch already on the device.

        Runs on whole batches; per-sample random parameters come from ``generator`` (a
        ``torch.Generator`` on the batch's device) so a seed reproduces the views exactly.
        """
        raise NotImplementedError

    def finetune_augment(self, batch: Prepared, generator: Optional[torch.Generator] = None) -> Any:
        """Augmentation for supervised fine-tuning (one view). Adapters may override with a
        lighter policy; the SSL-pretrained and from-scratch models always share this one."""
        return self.views(batch, n_views=1, generator=generator)[0]

    def eval_transform(self, batch: Prepared) -> Any:
        """Deterministic preprocessing for embedding and evaluation (no augmentation)."""
        raise NotImplementedError

    def tokens(self, batch: Prepared, generator: Optional[torch.Generator] = None) -> Any:
        """A :class:`multissl.tokens.TokenBatch` for the masked methods (``mae``, ``data2vec``):
        the token encoder's stem inputs (augmented on the device, randomness from ``generator``),
        per-token targets, padding mask and mask groups. See ``docs/adapters/writing-an-adapter.md``."""
        from multissl.errors import ConfigError

        raise ConfigError(f"adapter {self.name!r} does not provide tokens, so the masked methods "
                          "(mae, data2vec) cannot train on it")

    # ---- model ---------------------------------------------------------------------------
    def build_encoder(self, name: Optional[str] = None, **kwargs: Any) -> nn.Module:
        """The modality's default encoder (or a named one); maps a transformed batch to (B, D)."""
        raise NotImplementedError

    def encoder_names(self) -> List[str]:
        return []

    @staticmethod
    def embed_dim(encoder: nn.Module) -> int:
        """Output width of an encoder: its ``embed_dim`` attribute, or found by a probe."""
        dim = getattr(encoder, "embed_dim", None)
        if isinstance(dim, int):
            return dim
        raise AttributeError("encoder has no integer `embed_dim` attribute; set one or pass embed_dim=")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.get_config()})"
