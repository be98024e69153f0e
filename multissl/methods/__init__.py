"""Self-supervised methods by name: ``list_methods()``, ``get_method_class()``, ``build_method()``.

Built-in methods are imported lazily (``import multissl.methods`` stays light); other modules
and plugins add theirs with :func:`register_method`::

    method = build_method("vicreg", encoder, embed_dim=128, proj_dim=256)
    out = method([view1, view2])       # {"loss": ..., "std": ..., ...}
"""
from __future__ import annotations

import importlib
from typing import Any, Dict, List, Type

from torch import nn

from multissl.errors import ConfigError
from multissl.methods.base import SSLMethod

# name -> "module:Class"
_BUILTIN: Dict[str, str] = {
    "simclr": "multissl.methods.simclr:SimCLR",
    "moco": "multissl.methods.moco:MoCo",
    "byol": "multissl.methods.byol:BYOL",
    "simsiam": "multissl.methods.simsiam:SimSiam",
    "barlowtwins": "multissl.methods.barlowtwins:BarlowTwins",
    "vicreg": "multissl.methods.vicreg:VICReg",
    "vibcreg": "multissl.methods.vibcreg:VIbCReg",
    "rotation": "multissl.methods.rotation:Rotation",
    "jigsaw": "multissl.methods.jigsaw:Jigsaw",
    "colorization": "multissl.methods.colorization:Colorization",
    "inpainting": "multissl.methods.inpainting:Inpainting",
    "mae": "multissl.methods.mae:MAE",
    "data2vec": "multissl.methods.data2vec:Data2Vec",
    "ts2vec": "multissl.methods.ts2vec:TS2Vec",
    "tloss": "multissl.methods.tloss:TLoss",
    "frame_order": "multissl.methods.frame_order:FrameOrder",
    "future_frame": "multissl.methods.future_frame:FutureFrame",
}
_REGISTERED: Dict[str, Type[SSLMethod]] = {}


def register_method(name: str, cls: Type[SSLMethod]) -> Type[SSLMethod]:
    """Make ``cls`` (an :class:`SSLMethod` subclass) available as ``name``; returns ``cls``."""
    if not (isinstance(cls, type) and issubclass(cls, SSLMethod)):
        raise TypeError(f"{cls!r} is not a subclass of multissl.methods.base.SSLMethod")
    _REGISTERED[name] = cls
    return cls


def list_methods() -> List[str]:
    """Names of every available method, sorted."""
    return sorted(set(_BUILTIN) | set(_REGISTERED))


def get_method_class(name: str) -> Type[SSLMethod]:
    """The class registered as ``name``; :class:`ConfigError` listing the valid names if none."""
    if name in _REGISTERED:
        return _REGISTERED[name]
    if name in _BUILTIN:
        module, _, attr = _BUILTIN[name].partition(":")
        return getattr(importlib.import_module(module), attr)
    raise ConfigError(f"unknown method {name!r}; available: {', '.join(list_methods())}")


def build_method(name: str, encoder: nn.Module, embed_dim: int, **hparams: Any) -> SSLMethod:
    """Instantiate method ``name`` around ``encoder`` (which maps a view to (B, embed_dim)).

    ``hparams`` are the method's own hyperparameters (see ``cls.hparam_defaults``); optimiser
    settings are not among them (see ``cls.defaults``). Unknown or invalid ones raise
    :class:`ConfigError`.
    """
    return get_method_class(name)(encoder, embed_dim, **hparams)


__all__ = ["SSLMethod", "build_method", "get_method_class", "list_methods", "register_method"]
