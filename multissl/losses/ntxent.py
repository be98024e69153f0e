"""NT-Xent, the normalised temperature-scaled cross-entropy loss of SimCLR.

Reference: T. Chen, S. Kornblith, M. Norouzi, G. Hinton, "A Simple Framework for Contrastive
Learning of Visual Representations", ICML 2020, https://arxiv.org/abs/2002.05709 (eq. 1).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from multissl.distributed import gather_with_offset
from multissl.losses._common import check_pair, check_positive, full_precision, upcast


def nt_xent_loss(
    z1: torch.Tensor,
    z2: torch.Tensor,
    temperature: float = 0.5,
    gather_distributed: bool = True,
) -> torch.Tensor:
    """SimCLR's NT-Xent loss for two batches of projections of the same samples.

    Every one of the 2N embeddings is an anchor; its positive is the other view of the same
    sample and its negatives are the remaining 2N - 2 embeddings. With ``s`` the cosine
    similarity and ``tau`` the temperature, the loss of anchor ``i`` with positive ``j`` is
    ``-log(exp(s_ij / tau) / sum_{k != i} exp(s_ik / tau))``, averaged over the anchors.

    With ``gather_distributed`` the negatives come from every process (the global batch of
    size N = sum of local batches), while each process only computes the loss of its *local*
    anchors; the mean of the per-rank losses is the global loss and
    :func:`multissl.distributed.gather` makes the DDP gradient equal to the single-process
    one.

    Args:
        z1, z2: (B, D) projections of view 1 and view 2; row ``i`` of both is sample ``i``.
        temperature: softmax temperature ``tau`` (> 0); 0.5 is the paper's CIFAR-10 value.
        gather_distributed: use the other processes' embeddings as negatives.

    Returns:
        Scalar loss, float32 (float64 for float64 inputs).

    Example::

        >>> z1, z2 = torch.randn(8, 32), torch.randn(8, 32)
        >>> loss = nt_xent_loss(z1, z2, temperature=0.5)
    """
    check_pair("nt_xent_loss", z1, z2)
    check_positive("nt_xent_loss", "temperature", temperature)
    with full_precision(z1):
        z1 = F.normalize(upcast(z1), dim=1)
        z2 = F.normalize(upcast(z2), dim=1)
        n = z1.shape[0]
        if gather_distributed:
            all1, offset = gather_with_offset(z1)
            all2, _ = gather_with_offset(z2)
        else:
            all1, all2, offset = z1, z2, 0
        total = all1.shape[0]

        anchors = torch.cat([z1, z2])  # (2n, D): the local anchors
        candidates = torch.cat([all1, all2])  # (2N, D): view 1 of all samples, then view 2
        logits = anchors @ candidates.T / temperature  # (2n, 2N)

        local = torch.arange(n, device=z1.device) + offset  # global sample index of each row
        self_index = torch.cat([local, local + total])
        positive_index = torch.cat([local + total, local])
        # An embedding is not its own negative; -inf drops it from the softmax denominator.
        rows = torch.arange(2 * n, device=z1.device)
        logits = logits.index_put((rows, self_index), logits.new_tensor(float("-inf")))
        return F.cross_entropy(logits, positive_index)
