"""Shared machinery of the pretext-task methods (``rotation``, ``jigsaw``).

A pretext method turns each unlabeled image into a classification problem whose labels come
for free (which rotation was applied, which permutation shuffled the tiles), trains the encoder
plus a small head on it with cross-entropy, and keeps only the encoder. Differences from the
Siamese methods: one view per step (the task makes its own variants of the view), and the
method reports the pretext ``accuracy`` next to the loss.

Hyperparameters are declared and checked like the Siamese methods' (``hparam_defaults``,
``hparam_rules``, :class:`~multissl.errors.ConfigError` naming the valid ones); a default of
``None`` declares an optional positive integer.
"""
from __future__ import annotations

import numbers
from typing import Any, ClassVar, Dict, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from multissl.errors import ConfigError
from multissl.methods.base import SSLMethod
# one set of type rules for every method's hyperparameters
from multissl.methods.siamese import Rule, _coerce


class PretextMethod(SSLMethod):
    """Base of the pretext tasks: one view in, ``{"loss", "accuracy"}`` out."""

    n_views: ClassVar[int] = 1
    # The task itself is the source of difficulty; SimCLR's strong colour distortion would only
    # make it harder without teaching anything useful (RotNet and the jigsaw paper use crops and
    # flips). Applied by ``pretrain`` under the caller's adapter_config.
    adapter_defaults: ClassVar[Dict[str, Dict[str, Any]]] = {"image": {"preset": "light"}}
    #: hyperparameter name -> default (bool, int, float, or None for an optional int >= 1)
    hparam_defaults: ClassVar[Dict[str, Any]] = {}
    #: hyperparameter name -> (description, predicate) for checks beyond the type
    hparam_rules: ClassVar[Dict[str, Rule]] = {}

    def __init__(self, encoder: nn.Module, embed_dim: int, **hparams: Any) -> None:
        if isinstance(embed_dim, bool) or not isinstance(embed_dim, numbers.Integral) or embed_dim < 1:
            raise ConfigError(f"method {self.name!r}: embed_dim must be a positive integer, got {embed_dim!r}")
        if not isinstance(encoder, nn.Module):
            raise ConfigError(f"method {self.name!r}: encoder must be a torch.nn.Module, got {type(encoder).__name__}")
        super().__init__(encoder, int(embed_dim))
        self._hparams = self.resolve_hparams(hparams)

    @classmethod
    def resolve_hparams(cls, hparams: Dict[str, Any]) -> Dict[str, Any]:
        """Defaults updated with ``hparams``, validated; raises :class:`ConfigError`."""
        unknown = sorted(set(hparams) - set(cls.hparam_defaults))
        if unknown:
            raise ConfigError(
                f"method {cls.name!r}: unknown hyperparameter(s) {', '.join(map(repr, unknown))}; "
                f"valid: {', '.join(sorted(cls.hparam_defaults))}"
            )
        resolved = dict(cls.hparam_defaults)
        for key, value in hparams.items():
            default = cls.hparam_defaults[key]
            if default is None and value is not None:
                value = _coerce(cls.name, key, value, 1)  # optional integer: None or an int >= 1
            elif default is not None:
                value = _coerce(cls.name, key, value, default)
            resolved[key] = value
        for key, (description, ok) in cls.hparam_rules.items():
            if resolved[key] is not None and not ok(resolved[key]):
                raise ConfigError(f"method {cls.name!r}: hyperparameter {key!r} must be {description}, "
                                  f"got {resolved[key]!r}")
        return resolved

    def hparams(self) -> Dict[str, Any]:
        return dict(self._hparams)

    def single_view(self, views: Sequence[Any]) -> torch.Tensor:
        """The one view of a training step, as a floating-point tensor (B, C, ..., H, W)."""
        if not isinstance(views, (list, tuple)) or len(views) != 1:
            got = f"{len(views)} views" if isinstance(views, (list, tuple)) else type(views).__name__
            raise ValueError(f"method {self.name!r} needs a list with 1 view, got {got}")
        x = views[0]
        if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.ndim < 3:
            desc = f"{x.dtype} tensor of shape {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"method {self.name!r} needs a float image batch (B, C, ..., H, W), got {desc}")
        return x

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``self.encoder(x)``, checked to be (N, embed_dim)."""
        h = self.encoder(x)
        if not isinstance(h, torch.Tensor) or h.ndim != 2 or h.shape[1] != self.embed_dim:
            shape = tuple(h.shape) if isinstance(h, torch.Tensor) else type(h).__name__
            raise ConfigError(
                f"method {self.name!r}: the encoder must return (batch, embed_dim={self.embed_dim}) "
                f"embeddings, got {shape}; pass the encoder's real output width as embed_dim"
            )
        return h

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self._hparams.items())


def classification_outputs(logits: torch.Tensor, labels: torch.Tensor) -> Dict[str, torch.Tensor]:
    """``{"loss": cross-entropy, "accuracy": detached top-1 accuracy}`` of pretext logits.

    The loss is computed in float32 so that mixed precision affects only the networks.
    """
    loss = F.cross_entropy(logits.float(), labels)
    accuracy = (logits.detach().argmax(dim=1) == labels).float().mean()
    return {"loss": loss, "accuracy": accuracy}

