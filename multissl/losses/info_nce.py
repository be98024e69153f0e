"""InfoNCE as used by MoCo v3, with keys from every process.

Reference: X. Chen, S. Xie, K. He, "An Empirical Study of Training Self-Supervised Vision
Transformers", ICCV 2021, https://arxiv.org/abs/2104.02057 (Algorithm 1). InfoNCE itself:
A. van den Oord, Y. Li, O. Vinyals, "Representation Learning with Contrastive Predictive
Coding", 2018, https://arxiv.org/abs/1807.03748.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from multissl.distributed import gather_with_offset
from multissl.losses._common import check_pair, check_positive, full_precision, upcast


def info_nce_loss(
    q: torch.Tensor,
    k: torch.Tensor,
    temperature: float = 0.2,
    gather_distributed: bool = True,
) -> torch.Tensor:
    """MoCo v3 InfoNCE of queries against keys; the positive of query ``i`` is key ``i``.

    Queries and keys are L2-normalised; the logits are ``q @ k_all.T / tau`` against the keys
    of the global batch (gathered from every process), so the label of local query ``i`` is
    ``i + offset`` where ``offset`` is the number of samples held by lower ranks. As in MoCo
    v3, the cross-entropy is multiplied by ``2 * tau`` so the gradient scale does not depend
    on the temperature.

    MoCo v3 is *symmetric*: call this twice with the views swapped,
    ``info_nce_loss(q1, k2) + info_nce_loss(q2, k1)`` (see the example). The keys usually
    come from a momentum encoder without gradients; when they do carry gradients (CLIP-like
    use), :func:`multissl.distributed.gather` passes them back to every process correctly.

    Args:
        q: (B, D) queries (predictor outputs of the online branch).
        k: (B, D) keys (momentum-encoder projections of the other view).
        temperature: ``tau`` (> 0); MoCo v3 uses 0.2 for ViT and 1.0 for ResNet-50.
        gather_distributed: use the keys of every process as negatives.

    Returns:
        Scalar loss, float32 (float64 for float64 inputs).

    Example::

        >>> q1, q2, k1, k2 = (torch.randn(8, 32) for _ in range(4))
        >>> loss = info_nce_loss(q1, k2, 0.2) + info_nce_loss(q2, k1, 0.2)
    """
    check_pair("info_nce_loss", q, k, names="q, k")
    check_positive("info_nce_loss", "temperature", temperature)
    with full_precision(q):
        q = F.normalize(upcast(q), dim=1)
        k = F.normalize(upcast(k), dim=1)
        if gather_distributed:
            k, offset = gather_with_offset(k)
        else:
            offset = 0
        logits = q @ k.T / temperature  # (B, N_global)
        labels = torch.arange(q.shape[0], device=q.device) + offset
        return F.cross_entropy(logits, labels) * (2.0 * temperature)
