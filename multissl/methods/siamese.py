"""Shared machinery of the two-view (Siamese) methods: hyperparameter checking, running the
encoder on the views, and the collapse diagnostic.

Each method lists its hyperparameters with their defaults in ``hparam_defaults``; the
constructor accepts exactly those names (anything else is a :class:`ConfigError` naming the
valid ones), checks each value's type against its default's and applies ``hparam_rules``.
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Callable, ClassVar, Dict, List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from multissl.ema import copy_as_teacher, cosine_momentum, ema_update
from multissl.errors import ConfigError
from multissl.methods.base import SSLMethod

Rule = Tuple[str, Callable[[Any], bool]]
POSITIVE: Rule = ("> 0", lambda v: v > 0)
UNIT_INTERVAL: Rule = ("in [0, 1]", lambda v: 0.0 <= v <= 1.0)


def _coerce(method: str, key: str, value: Any, default: Any) -> Any:
    """``value`` with the type of ``default`` (bool, int or float), or a ConfigError."""
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        expected = "a boolean"
    elif isinstance(default, int):
        # numbers.Integral also admits numpy integers (e.g. values read from an array)
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            least = 0 if default == 0 else 1  # a count whose default is 0 means "off" at 0
            if value < least:
                raise ConfigError(f"method {method!r}: hyperparameter {key!r} must be >= {least}, got {value}")
            return int(value)
        expected = "an integer"
    else:
        if isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value):
            if value < 0:
                raise ConfigError(f"method {method!r}: hyperparameter {key!r} must be >= 0, got {value}")
            return float(value)
        expected = "a finite number"
    raise ConfigError(f"method {method!r}: hyperparameter {key!r} must be {expected}, got {value!r}")


@torch.no_grad()
def embedding_std(h: torch.Tensor) -> torch.Tensor:
    """Collapse monitor: per-dimension std of the L2-normalised embeddings, averaged over
    dimensions and scaled by sqrt(D). 0 means every sample maps to the same direction
    (collapse); about 1 means the embeddings spread over the sphere. Returns a detached scalar."""
    h = F.normalize(h.detach().float(), dim=1)
    return h.std(dim=0).mean() * math.sqrt(h.shape[1])


class SiameseMethod(SSLMethod):
    """Base of the two-view methods: ``forward(views)`` encodes ``views[0]`` and ``views[1]``."""

    #: hyperparameter name -> default value (bool, int or float; fixes the accepted type;
    #: ints must be >= 1 -- >= 0 where the default is 0 --, floats >= 0)
    hparam_defaults: ClassVar[Dict[str, Any]] = {}
    #: hyperparameter name -> (description, predicate) for checks beyond the type
    hparam_rules: ClassVar[Dict[str, Rule]] = {}

    def __init__(self, encoder: nn.Module, embed_dim: int, **hparams: Any) -> None:
        if isinstance(embed_dim, bool) or not isinstance(embed_dim, int) or embed_dim < 1:
            raise ConfigError(f"method {self.name!r}: embed_dim must be a positive integer, got {embed_dim!r}")
        if not isinstance(encoder, nn.Module):
            raise ConfigError(f"method {self.name!r}: encoder must be a torch.nn.Module, got {type(encoder).__name__}")
        super().__init__(encoder, embed_dim)
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
            resolved[key] = _coerce(cls.name, key, value, cls.hparam_defaults[key])
        for key, (description, ok) in cls.hparam_rules.items():
            if not ok(resolved[key]):
                raise ConfigError(f"method {cls.name!r}: hyperparameter {key!r} must be {description}, got {resolved[key]!r}")
        return resolved

    def hparams(self) -> Dict[str, Any]:
        return dict(self._hparams)

    def encode_views(self, views: Sequence[Any]) -> List[torch.Tensor]:
        """Run the encoder on each view, one call per view (BatchNorm statistics per view,
        as in the papers), and check that it returns (B, embed_dim)."""
        if not isinstance(views, (list, tuple)) or len(views) != self.n_views:
            got = f"{len(views)} views" if isinstance(views, (list, tuple)) else type(views).__name__
            raise ValueError(f"method {self.name!r} needs a list of {self.n_views} views, got {got}")
        out = []
        for view in views:
            h = self.encoder(view)
            if not isinstance(h, torch.Tensor) or h.ndim != 2 or h.shape[1] != self.embed_dim:
                shape = tuple(h.shape) if isinstance(h, torch.Tensor) else type(h).__name__
                raise ConfigError(
                    f"method {self.name!r}: the encoder must return (batch, embed_dim={self.embed_dim}) "
                    f"embeddings, got {shape}; pass the encoder's real output width as embed_dim"
                )
            out.append(h)
        return out

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self._hparams.items())


class MomentumTeacherMethod(SiameseMethod):
    """A Siamese method whose targets come from an EMA copy of encoder + projector (BYOL, MoCo).

    Subclasses build ``self.projector`` and then call :meth:`_init_teacher`. The teacher's
    momentum follows a cosine schedule from ``hparams["momentum"]`` to ``hparams["final_momentum"]``
    (BYOL's schedule), updated in :meth:`on_train_step_end` after every optimiser step.
    """

    def _init_teacher(self) -> None:
        self.teacher_encoder = copy_as_teacher(self.encoder)
        self.teacher_projector = copy_as_teacher(self.projector)
        self.current_momentum = self._hparams["momentum"]

    @torch.no_grad()
    def teacher(self, view: Any) -> torch.Tensor:
        """Target projections of one view (no gradient)."""
        return self.teacher_projector(self.teacher_encoder(view))

    @torch.no_grad()
    def on_train_step_end(self, progress: float) -> None:
        """EMA update of the teacher with the cosine-scheduled momentum at ``progress``."""
        hp = self._hparams
        self.current_momentum = cosine_momentum(progress, hp["momentum"], hp["final_momentum"])
        ema_update(self.teacher_encoder, self.encoder, self.current_momentum)
        ema_update(self.teacher_projector, self.projector, self.current_momentum)
