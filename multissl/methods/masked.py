"""Shared machinery of the masked-prediction methods (``mae``, ``data2vec``).

A masked method takes a :class:`~multissl.tokens.TokenBatch` (from ``adapter.tokens``), hides a
ratio of its tokens and learns to predict something about the hidden ones from the rest. What
this base provides:

- :func:`sample_mask`: which tokens to hide -- ``round(ratio * real tokens)`` per sample, never
  padding, whole ``mask_groups`` at a time (tubes, spans), at least one token hidden and one left
  visible, every random number from the step's generator (a seed reproduces the masks);
- :func:`visible_index`: the kept positions for an encoder that only sees visible tokens (MAE);
- the token-encoder check (``tokenize``/``encode`` needed; a CNN is a clear ConfigError) and
  hyperparameters declared and checked like the other methods' (``hparam_defaults``,
  ``hparam_rules``, ConfigError naming the valid ones); a ``None`` default declares an optional
  integer >= 1, a string default a choice checked by its rule.
"""
from __future__ import annotations

import numbers
from typing import Any, ClassVar, Dict, Optional, Tuple

import torch
from torch import nn

from multissl.distributed import global_mean
from multissl.errors import ConfigError
from multissl.methods.base import SSLMethod
# one set of type rules for every method's hyperparameters
from multissl.methods.siamese import Rule, _coerce
from multissl.tokens import TokenBatch
from multissl.transformer import is_token_encoder

MASK_RATIO_RULE: Rule = ("in (0, 1)", lambda v: 0.0 < v < 1.0)


def sample_mask(batch_size: int, num_tokens: int, ratio: float, padding_mask: Optional[torch.Tensor] = None,
                groups: Optional[torch.Tensor] = None, generator: Optional[torch.Generator] = None,
                device: Optional[torch.device] = None) -> torch.Tensor:
    """(B, N) bool, True = hidden. Per sample, groups are visited in a random order and hidden
    while fewer than ``round(ratio * n_real)`` tokens are hidden (so a group is never split, and
    the count overshoots by less than one group); padding is never hidden; at least one real
    token stays visible and, when a sample has two real tokens or more, at least one is hidden.

    ``groups``: (B, N) long ids in [0, N) (None: every token is its own group). Randomness: one
    ``torch.rand(B, N)`` from ``generator`` (on ``device``).
    """
    b, n = batch_size, num_tokens
    if device is None:
        device = generator.device if generator is not None else (
            padding_mask.device if padding_mask is not None else torch.device("cpu"))
    positions = torch.arange(n, device=device)
    real = ~padding_mask if padding_mask is not None else torch.ones(b, n, dtype=torch.bool, device=device)
    n_real = real.sum(dim=1)
    target = torch.minimum(torch.round(ratio * n_real.double()).long().clamp(min=1), (n_real - 1).clamp(min=0))
    if groups is None:
        groups = positions.expand(b, n)
    # a random rank for every group id; a token's sort key is (its group's rank, its position),
    # so the tokens of a group are adjacent in the sorted order; padding sorts last
    noise = torch.rand(b, n, generator=generator, device=device)
    group_rank = noise.argsort(dim=1).argsort(dim=1)
    key = torch.gather(group_rank, 1, groups) * n + positions
    key = torch.where(real, key, n * n + positions)
    order = key.argsort(dim=1)
    sorted_groups = torch.gather(groups, 1, order)
    sorted_real = torch.gather(real, 1, order)
    new_group = torch.ones(b, n, dtype=torch.bool, device=device)
    new_group[:, 1:] = sorted_groups[:, 1:] != sorted_groups[:, :-1]
    start = torch.where(new_group, positions, 0).cummax(dim=1).values  # first sorted index of the run
    last_of_group = torch.ones(b, n, dtype=torch.bool, device=device)
    last_of_group[:, :-1] = new_group[:, 1:]
    end = torch.where(last_of_group, positions + 1, n).flip(1).cummin(dim=1).values.flip(1)  # one past the run
    # hide a group while the tokens hidden before it are fewer than the target, unless that
    # would leave no real token visible
    hide_sorted = sorted_real & (start < target[:, None]) & (end < n_real[:, None])
    return torch.zeros(b, n, dtype=torch.bool, device=device).scatter(1, order, hide_sorted)


def visible_index(mask: torch.Tensor, padding_mask: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """Positions an encoder of visible tokens should see: ``keep`` (B, K) long and its padding
    mask (B, K) bool (True = not a visible real token).

    Visible real tokens come first (in their original order), then padding, then hidden tokens;
    K is the largest number of visible tokens of any sample, so samples with fewer carry some
    padding or hidden tokens in ``keep`` -- marked in the returned mask, never attended to, and
    their outputs must not be used.
    """
    b, n = mask.shape
    positions = torch.arange(n, device=mask.device)
    pad = padding_mask if padding_mask is not None else torch.zeros_like(mask)
    visible = ~mask & ~pad
    k = max(1, int(visible.sum(dim=1).max()))
    rank = torch.where(visible, 0, torch.where(pad, 1, 2))
    keep = (rank * n + positions).argsort(dim=1)[:, :k]
    return keep, ~torch.gather(visible, 1, keep)


def gather_tokens(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``x`` (B, N, D) at ``index`` (B, K) -> (B, K, D)."""
    return torch.gather(x, 1, index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


def resolve_masked_hparams(name: str, defaults: Dict[str, Any], rules: Dict[str, Rule],
                           hparams: Dict[str, Any]) -> Dict[str, Any]:
    """Defaults updated with ``hparams`` and validated; :class:`ConfigError` otherwise."""
    unknown = sorted(set(hparams) - set(defaults))
    if unknown:
        raise ConfigError(f"method {name!r}: unknown hyperparameter(s) {', '.join(map(repr, unknown))}; "
                          f"valid: {', '.join(sorted(defaults))}")
    resolved = dict(defaults)
    for key, value in hparams.items():
        default = defaults[key]
        if default is None:
            value = None if value is None else _coerce(name, key, value, 1)
        elif isinstance(default, str):
            if not isinstance(value, str):
                raise ConfigError(f"method {name!r}: hyperparameter {key!r} must be a string, got {value!r}")
        else:
            value = _coerce(name, key, value, default)
        resolved[key] = value
    for key, (description, ok) in rules.items():
        if resolved[key] is not None and not ok(resolved[key]):
            raise ConfigError(f"method {name!r}: hyperparameter {key!r} must be {description}, got {resolved[key]!r}")
    return resolved


class MaskedMethod(SSLMethod):
    """Base of the masked methods: ``forward(token_batch, generator=None) -> {"loss", ...}``."""

    input_kind: ClassVar[str] = "tokens"
    n_views: ClassVar[int] = 1
    # MAE and data2vec augment with crops and flips only: the masking is the hard part
    adapter_defaults: ClassVar[Dict[str, Dict[str, Any]]] = {"image": {"preset": "light"}}
    hparam_defaults: ClassVar[Dict[str, Any]] = {"mask_ratio": 0.75}
    hparam_rules: ClassVar[Dict[str, Rule]] = {"mask_ratio": MASK_RATIO_RULE}

    def __init__(self, encoder: nn.Module, embed_dim: int, **hparams: Any) -> None:
        if isinstance(embed_dim, bool) or not isinstance(embed_dim, numbers.Integral) or embed_dim < 1:
            raise ConfigError(f"method {self.name!r}: embed_dim must be a positive integer, got {embed_dim!r}")
        if not isinstance(encoder, nn.Module):
            raise ConfigError(f"method {self.name!r}: encoder must be a torch.nn.Module, got {type(encoder).__name__}")
        if not is_token_encoder(encoder):
            raise ConfigError(
                f"method {self.name!r} masks tokens, so it needs a Transformer token encoder "
                f"(multissl.transformer.TokenEncoder, e.g. encoder='vit_tiny' for images), not "
                f"{type(encoder).__name__}")
        if int(embed_dim) != encoder.embed_dim:
            raise ConfigError(f"method {self.name!r}: embed_dim {embed_dim} differs from the encoder's "
                              f"embed_dim {encoder.embed_dim}")
        super().__init__(encoder, int(embed_dim))
        self._hparams = self.resolve_hparams(hparams)

    @classmethod
    def resolve_hparams(cls, hparams: Dict[str, Any]) -> Dict[str, Any]:
        return resolve_masked_hparams(cls.name, cls.hparam_defaults, cls.hparam_rules, hparams)

    def hparams(self) -> Dict[str, Any]:
        return dict(self._hparams)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self._hparams.items())

    # ---- shared steps -----------------------------------------------------------------------------
    def tokenize(self, token_batch: TokenBatch) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Content embeddings (B, N, dim) and the padding mask (the stem's and the batch's, combined)."""
        if not isinstance(token_batch, TokenBatch):
            raise ConfigError(f"method {self.name!r} takes a multissl.tokens.TokenBatch (from adapter.tokens()), "
                              f"got {type(token_batch).__name__}")
        x, pad = self.encoder.tokenize(token_batch.inputs)
        token_batch.validate(num_tokens=x.shape[1])
        if token_batch.padding_mask is not None:
            pad = token_batch.padding_mask if pad is None else (pad | token_batch.padding_mask)
        return x, pad

    def sample_mask(self, token_batch: TokenBatch, padding_mask: Optional[torch.Tensor],
                    generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """The hidden tokens (B, N) of this step (see :func:`sample_mask`)."""
        b, n = token_batch.targets.shape[:2]
        device = token_batch.targets.device
        if generator is not None and generator.device != device:
            raise ConfigError(f"method {self.name!r}: the generator is on {generator.device}, the tokens on {device}")
        groups = token_batch.mask_groups
        return sample_mask(b, n, self._hparams["mask_ratio"], padding_mask, groups, generator, device)


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` (B, N) over ``mask`` (B, N) True entries; 0 (with a gradient path) if none.

    Under data parallelism, this process's share of the mean over the hidden tokens of the
    *global* batch (:func:`multissl.distributed.global_mean`), so 2 processes train like 1."""
    mask = mask.to(values.dtype)
    return global_mean((values * mask).sum(), mask.sum())


__all__ = ["MaskedMethod", "sample_mask", "visible_index", "gather_tokens", "masked_mean",
           "resolve_masked_hparams", "MASK_RATIO_RULE"]
