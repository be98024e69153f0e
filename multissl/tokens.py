"""``TokenBatch``: what an adapter hands to the masked-prediction methods (``mae``, ``data2vec``).

An adapter's ``tokens(batch, generator=None)`` returns one :class:`TokenBatch` per training step,
computed on the batch's device (augmentation included, every random number from ``generator``):

- ``inputs``: whatever the stem of the adapter's token encoder takes -- normalised augmented
  images (B, C, H, W), a dict of token ids, patched series ... The method never looks inside; it
  calls ``encoder.tokenize(inputs) -> (x (B, N, dim), padding_mask)``.
- ``targets``: what a masked token should be reconstructed as, one row per token --
  float (B, N, T) (pixels of a patch, values of a series patch; regressed with MSE) or
  long (B, N) (token ids; classified with cross-entropy = masked language modelling).
- ``padding_mask``: (B, N) bool, True = padding (never masked, never a target, never attended
  to), or None when every token is real.
- ``mask_groups``: (B, N) long group ids in [0, N), or None. Tokens with the same id are masked
  together (VideoMAE tube masking, whole-word or span masking); None = every token on its own.

The encoder's stem tells the method what the targets look like before any data is seen (the
decoder's output layer must exist when the optimiser is built): a ``target_dim`` attribute
(int, T of float targets) or a ``vocab_size`` attribute (int, number of ids of long targets).

Example::

    tb = adapter.tokens(batch, generator=g)
    tb.validate(num_tokens=encoder.max_tokens)
    out = method(tb, generator=g)              # {"loss": ..., "accuracy": ... for ids}
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import torch

from multissl.errors import ConfigError


@dataclass
class TokenBatch:
    """One batch of tokens for a masked method (see the module docstring for each field)."""

    inputs: Any
    targets: torch.Tensor
    padding_mask: Optional[torch.Tensor] = None
    mask_groups: Optional[torch.Tensor] = None

    @property
    def batch_size(self) -> int:
        return int(self.targets.shape[0])

    @property
    def num_tokens(self) -> int:
        return int(self.targets.shape[1])

    @property
    def discrete(self) -> bool:
        """True when the targets are ids (cross-entropy), False for float targets (regression)."""
        return not self.targets.is_floating_point()

    def validate(self, num_tokens: Optional[int] = None) -> "TokenBatch":
        """Check shapes and dtypes (and ``N == num_tokens`` when given); ConfigError naming the
        field otherwise, since a mismatch is a wiring mistake of the adapter or its encoder."""
        t = self.targets
        if not isinstance(t, torch.Tensor):
            raise ConfigError(f"TokenBatch.targets must be a tensor, got {type(t).__name__}")
        if t.is_floating_point():
            if t.ndim != 3:
                raise ConfigError(f"float TokenBatch.targets must be (B, N, T), got shape {tuple(t.shape)}")
        elif t.dtype in (torch.int64, torch.int32):
            if t.ndim != 2:
                raise ConfigError(f"id TokenBatch.targets must be (B, N), got shape {tuple(t.shape)}")
        else:
            raise ConfigError(f"TokenBatch.targets must be float (B, N, T) or long (B, N), got {t.dtype}")
        b, n = t.shape[:2]
        if num_tokens is not None and n != num_tokens:
            raise ConfigError(f"TokenBatch has {n} target tokens but the encoder made {num_tokens}; "
                              "the adapter's targets and its encoder's stem disagree (patch size?)")
        for field, want in (("padding_mask", torch.bool), ("mask_groups", torch.int64)):
            m = getattr(self, field)
            if m is None:
                continue
            if not isinstance(m, torch.Tensor) or tuple(m.shape) != (b, n) or m.dtype != want:
                desc = f"{m.dtype} {tuple(m.shape)}" if isinstance(m, torch.Tensor) else type(m).__name__
                raise ConfigError(f"TokenBatch.{field} must be a {want} tensor of shape {(b, n)}, got {desc}")
        if self.mask_groups is not None and n and (int(self.mask_groups.min()) < 0 or int(self.mask_groups.max()) >= n):
            raise ConfigError(f"TokenBatch.mask_groups must hold ids in [0, {n}), got "
                              f"[{int(self.mask_groups.min())}, {int(self.mask_groups.max())}]")
        return self


__all__ = ["TokenBatch"]
