"""Count baselines for filling hidden word pieces (the text half of the context-filling recipe).

- **unigram**: always the pieces most frequent in the training texts, whatever the context;
- **bigram** (:class:`BigramFill`): counts of adjacent pieces in the training texts. A hidden
  piece ``v`` between its nearest visible neighbours ``l`` (to the left) and ``r`` (to the right)
  is scored ``log P(v | l) + log P(r | v)``, both add-alpha smoothed; without a visible left
  neighbour the first term is the unigram ``log P(v)``, without a right one the second term is
  dropped. This is what a masked language model must beat to show it uses more than the next
  piece over (a hidden word of two pieces has its neighbours two places away: the counts are
  still those of adjacent pieces, the simple choice).

The counts are sparse (scipy CSR matrices of the pairs seen, scipy coming with scikit-learn), so
vocabularies of tens of thousands of pieces cost only what the texts hold; scores are dense
(hidden pieces x vocabulary) per call, so call it per batch.
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
import torch
from scipy import sparse


def nearest_visible(ids: torch.Tensor, visible: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """For every position of ``ids`` (B, L): the id of the nearest visible token to its left and
    to its right, -1 where there is none (``visible``: (B, L) bool)."""
    b, n = ids.shape
    pos = torch.arange(n, device=ids.device).expand(b, n)
    # last visible position strictly before i: running max of visible positions, shifted by one
    left_pos = torch.where(visible, pos, -1).cummax(dim=1).values
    left_pos = torch.cat([torch.full((b, 1), -1, device=ids.device, dtype=left_pos.dtype), left_pos[:, :-1]], dim=1)
    # first visible position strictly after i: the same on the reversed sequence
    flipped = torch.where(visible, n - 1 - pos, -1).flip(1).cummax(dim=1).values.flip(1)
    right_pos = torch.cat([flipped[:, 1:], torch.full((b, 1), -1, device=ids.device, dtype=flipped.dtype)], dim=1)
    right_pos = torch.where(right_pos >= 0, n - 1 - right_pos, -1)
    left = torch.where(left_pos >= 0, ids.gather(1, left_pos.clamp(min=0)), -1)
    right = torch.where(right_pos >= 0, ids.gather(1, right_pos.clamp(min=0)), -1)
    return left, right


class BigramFill:
    """Adjacent-piece counts of the training texts ``ids`` (N, L) (``pad_id`` ignored).

    Example::

        >>> fill = BigramFill(train_ids, pad_id=tok.pad_id, vocab_size=tok.vocab_size)
        >>> scores = fill.scores(ids, hidden, padding_mask)   # (hidden pieces, vocab), row-major order
        >>> guesses = scores.topk(5, dim=-1).indices
    """

    def __init__(self, ids: torch.Tensor, pad_id: int, vocab_size: int, alpha: float = 0.1) -> None:
        if alpha <= 0:
            raise ValueError(f"alpha must be > 0, got {alpha}")
        ids = ids.cpu().long()
        v = int(vocab_size)
        self.vocab_size, self.alpha, self.pad_id = v, float(alpha), int(pad_id)
        a, b = ids[:, :-1].flatten(), ids[:, 1:].flatten()
        real = (a != pad_id) & (b != pad_id)
        first, second = a[real].numpy(), b[real].numpy()
        ones = np.ones(len(first), dtype=np.float32)
        #: follow[l, v]: how often v came right after l; precede[r, v]: how often v came right before r
        #: (duplicate pairs are summed when the CSR matrix is built)
        self.follow = sparse.csr_matrix((ones, (first, second)), shape=(v, v))
        self.precede = sparse.csr_matrix((ones, (second, first)), shape=(v, v))
        self.out_total = torch.from_numpy(np.asarray(self.follow.sum(axis=1), dtype=np.float32).ravel())
        unigram = torch.bincount(ids[ids != pad_id], minlength=v).float()
        self.log_unigram = ((unigram + alpha) / (unigram.sum() + alpha * v)).log()

    def scores(self, ids: torch.Tensor, hidden: torch.Tensor, padding_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Log-scores (M, vocab) of every piece at the M hidden positions of ``ids`` (B, L), in
        ``ids[hidden]`` order. Only visible, real tokens serve as context."""
        device = ids.device
        pad = padding_mask if padding_mask is not None else torch.zeros_like(hidden)
        hidden = hidden.cpu()
        left, right = nearest_visible(ids.cpu(), ~hidden & ~pad.cpu())
        left, right = left[hidden], right[hidden]
        v, alpha = self.vocab_size, self.alpha
        scores = self.log_unigram.expand(len(left), v).clone()
        has_left = left >= 0
        if has_left.any():
            rows = torch.from_numpy(self.follow[left[has_left].numpy()].toarray())
            total = self.out_total[left[has_left]].unsqueeze(1)
            scores[has_left] = ((rows + alpha) / (total + alpha * v)).log()
        has_right = right >= 0
        if has_right.any():
            rows = torch.from_numpy(self.precede[right[has_right].numpy()].toarray())  # count of (v, r) for every v
            scores[has_right] += ((rows + alpha) / (self.out_total.unsqueeze(0) + alpha * v)).log()
        return scores.to(device)


__all__ = ["BigramFill", "nearest_visible"]
