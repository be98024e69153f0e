"""Batched, on-device augmentations of token-id sequences (for the Siamese methods).

Every function takes ``ids`` long (B, L), right-padded with ``pad_id``, and ``lengths`` long
(B,), and returns new ``(ids, lengths)`` of the same width; all random numbers come from one
``torch.Generator`` on the batch's device, drawn for the whole batch at once (per-sample
parameters, no Python loop over samples), so a seed reproduces a view exactly.

Deleting operations re-pack the kept tokens to the left and re-pad; a sequence always keeps
at least one token. Padding never becomes a real token and real tokens never become padding
except by deletion.

The augmentations are the usual ones for sentence embeddings without labels: random
contiguous crop and token deletion (Wu et al., "CLEAR: Contrastive Learning for Sentence
Representation", 2020; Meng et al., "COCO-LM", 2021), span deletion, and token masking as in
BERT (Devlin et al. 2019); and "no augmentation at all", where the encoder's dropout makes two
passes differ (Gao, Yao, Chen, "SimCSE", EMNLP 2021).
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch

Ids = Tuple[torch.Tensor, torch.Tensor]


def real_mask(ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """(B, L) bool: True at the real (non-padding) positions."""
    return torch.arange(ids.shape[1], device=ids.device).unsqueeze(0) < lengths.unsqueeze(1)


def _uniform(shape: Tuple[int, ...], generator: Optional[torch.Generator], device: torch.device) -> torch.Tensor:
    return torch.rand(shape, generator=generator, device=device)


def compact(ids: torch.Tensor, keep: torch.Tensor, pad_id: int) -> Ids:
    """Keep the tokens where ``keep`` (B, L) is True, in order, packed to the left and re-padded."""
    # a stable sort of "dropped?" moves kept tokens to the front without reordering them
    order = torch.sort((~keep).to(torch.int8), dim=1, stable=True).indices
    packed = torch.gather(ids, 1, order)
    new_lengths = keep.sum(1)
    packed = packed.masked_fill(~real_mask(packed, new_lengths), pad_id)
    return packed, new_lengths


def _keep_one(keep: torch.Tensor, real: torch.Tensor, lengths: torch.Tensor,
              generator: Optional[torch.Generator]) -> torch.Tensor:
    """Where a sequence would lose every token, keep one real token chosen at random."""
    empty = (keep & real).sum(1) == 0
    pick = (_uniform((keep.shape[0],), generator, keep.device) * lengths.clamp_min(1)).long()
    rescue = torch.zeros_like(keep)
    rescue[torch.arange(keep.shape[0], device=keep.device), pick] = True
    return (keep & real) | (rescue & empty.unsqueeze(1) & real)


def token_dropout(ids: torch.Tensor, lengths: torch.Tensor, p: float, pad_id: int,
                  generator: Optional[torch.Generator] = None) -> Ids:
    """Delete each real token independently with probability ``p``."""
    real = real_mask(ids, lengths)
    u = _uniform(tuple(ids.shape), generator, ids.device)  # drawn even when p == 0: same stream for every p
    if p <= 0:
        return ids, lengths
    keep = _keep_one(u >= p, real, lengths, generator)
    return compact(ids, keep, pad_id)


def token_masking(ids: torch.Tensor, lengths: torch.Tensor, p: float, mask_id: int,
                  generator: Optional[torch.Generator] = None) -> Ids:
    """Replace each real token with ``mask_id`` with probability ``p`` (lengths unchanged)."""
    real = real_mask(ids, lengths)
    u = _uniform(tuple(ids.shape), generator, ids.device)
    if p <= 0:
        return ids, lengths
    return ids.masked_fill((u < p) & real, mask_id), lengths


def span_deletion(ids: torch.Tensor, lengths: torch.Tensor, prob: float, max_frac: float, pad_id: int,
                  generator: Optional[torch.Generator] = None) -> Ids:
    """With probability ``prob`` per sequence, delete one contiguous span of 1 to
    ``max_frac * length`` tokens at a random place (never the whole sequence)."""
    b, width = ids.shape
    u = _uniform((b, 3), generator, ids.device)
    if prob <= 0 or max_frac <= 0:
        return ids, lengths
    longest = (lengths.float() * max_frac).floor().clamp(min=1).minimum((lengths - 1).clamp(min=0).float())
    span = (1 + (u[:, 0] * longest).floor()).minimum(longest).long()  # 1..longest (0 when length is 1)
    start = (u[:, 1] * (lengths - span + 1).float()).floor().long()
    apply = (u[:, 2] < prob) & (lengths > 1)
    pos = torch.arange(width, device=ids.device).unsqueeze(0)
    inside = (pos >= start.unsqueeze(1)) & (pos < (start + span).unsqueeze(1)) & apply.unsqueeze(1)
    keep = real_mask(ids, lengths) & ~inside
    return compact(ids, keep, pad_id)


def random_crop(ids: torch.Tensor, lengths: torch.Tensor, min_frac: float, pad_id: int,
                generator: Optional[torch.Generator] = None) -> Ids:
    """Keep one contiguous window of ``U(min_frac, 1) * length`` tokens (at least one)."""
    b, width = ids.shape
    u = _uniform((b, 2), generator, ids.device)
    if min_frac >= 1:
        return ids, lengths
    frac = min_frac + (1.0 - min_frac) * u[:, 0]
    size = (frac * lengths.float()).round().long().clamp(min=1).minimum(lengths.clamp(min=1))
    start = (u[:, 1] * (lengths - size + 1).clamp(min=1).float()).floor().long()
    pos = torch.arange(width, device=ids.device).unsqueeze(0)
    keep = (pos >= start.unsqueeze(1)) & (pos < (start + size).unsqueeze(1)) & real_mask(ids, lengths)
    return compact(ids, keep, pad_id)


def trim(ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Drop the trailing columns that are padding in every row (less work for the encoder;
    the embeddings do not change because padding is masked everywhere)."""
    width = int(lengths.max().clamp(min=1)) if lengths.numel() else ids.shape[1]
    return ids[:, :width]


__all__ = ["real_mask", "compact", "token_dropout", "token_masking", "span_deletion", "random_crop", "trim"]
