"""Modality adapters: ``get_adapter("image")``, ``list_adapters()``.

Built-in adapters are registered below; third-party packages add a modality without touching
multissl by declaring an entry point in the ``multissl.adapters`` group that names an
:class:`Adapter` subclass::

    [project.entry-points."multissl.adapters"]
    audio = "my_package.audio:AudioAdapter"
"""
from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Any, Dict, List, Type, Union

from multissl.adapters.base import Adapter, Prepared, num_records, take, to_device
from multissl.errors import ConfigError

ENTRY_POINT_GROUP = "multissl.adapters"

# name -> "module:Class"; imported lazily so `import multissl` stays light.
_BUILTIN: Dict[str, str] = {
    "image": "multissl.adapters.image:ImageAdapter",
    "signature": "multissl.adapters.signature:SignatureAdapter",
    "text": "multissl.adapters.text:TextAdapter",
    "timeseries": "multissl.adapters.timeseries:TimeSeriesAdapter",
    "video": "multissl.adapters.video:VideoAdapter",
}
_REGISTERED: Dict[str, Type[Adapter]] = {}


def register_adapter(name: str, cls: Type[Adapter]) -> Type[Adapter]:
    """Register an adapter class under ``name`` at run time (entry points are the usual way)."""
    if not (isinstance(cls, type) and issubclass(cls, Adapter)):
        raise TypeError(f"{cls!r} is not a subclass of multissl.adapters.Adapter")
    _REGISTERED[name] = cls
    return cls


def _plugin_entry_points() -> Dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def list_adapters() -> List[str]:
    """Names of every available adapter: built-in, registered and installed plugins."""
    return sorted(set(_BUILTIN) | set(_REGISTERED) | set(_plugin_entry_points()))


def _load(target: str) -> Type[Adapter]:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def get_adapter_class(name: str) -> Type[Adapter]:
    if name in _REGISTERED:
        return _REGISTERED[name]
    if name in _BUILTIN:
        return _load(_BUILTIN[name])
    eps = _plugin_entry_points()
    if name in eps:
        cls = eps[name].load()
        if not (isinstance(cls, type) and issubclass(cls, Adapter)):
            raise ConfigError(f"entry point {name!r} in group {ENTRY_POINT_GROUP!r} does not name an Adapter subclass")
        return cls
    raise ConfigError(f"unknown adapter {name!r}; available: {', '.join(list_adapters())}")


def get_adapter(name: Union[str, Adapter], **config: Any) -> Adapter:
    """An adapter instance by name (``config`` goes to its constructor); instances pass through."""
    if isinstance(name, Adapter):
        return name
    return get_adapter_class(name)(**config)


def __getattr__(attr: str) -> Any:
    # `from multissl.adapters import ImageAdapter` without importing every modality eagerly.
    for target in _BUILTIN.values():
        module, _, cls_name = target.partition(":")
        if cls_name == attr:
            return _load(target)
    raise AttributeError(f"module 'multissl.adapters' has no attribute {attr!r}")


__all__ = ["Adapter", "Prepared", "get_adapter", "get_adapter_class", "list_adapters", "register_adapter",
           "num_records", "take", "to_device", "ENTRY_POINT_GROUP"]
