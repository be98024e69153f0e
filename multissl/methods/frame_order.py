"""Frame order: tell a clip played forwards from the same clip reversed or shuffled.

References:
- D. Wei, J. Lim, A. Zisserman, W. T. Freeman, "Learning and Using the Arrow of Time",
  CVPR 2018 (forward vs backward), https://arxiv.org/abs/1805.03584;
- I. Misra, C. L. Zitnick, M. Hebert, "Shuffle and Learn: Unsupervised Learning using
  Temporal Order Verification", ECCV 2016 (ordered vs shuffled), https://arxiv.org/abs/1603.08561.

Every clip of the batch goes through the network in each of its orderings, built from the
**same** augmented view (same crop, flip and colour; the video adapter draws them per clip):
the copies differ only in the order of their frames, so nothing but motion can give the answer
away. A static clip looks identical in every ordering and cannot be classified above chance --
the property Wei et al. enforce by removing static cues.

Classes (``arrow`` and ``shuffled`` choose):

- ``arrow=True, shuffled=True`` (default): 0 forward, 1 reversed, 2 shuffled (a random
  permutation that is neither the identity nor the reversal), 3 copies per clip;
- ``arrow=True, shuffled=False``: the arrow of time alone, 0 forward, 1 reversed;
- ``arrow=False, shuffled=True``: temporal order verification, 0 in order, 1 shuffled.

Physics matters: bouncing digits (Moving MNIST) move the same way played backwards, so the
arrow-of-time classes are at chance there by construction and only the shuffled class is
learnable; on real footage (falling, pouring, smoke) the arrow is visible.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import nn

from multissl.errors import ConfigError
from multissl.heads import MLPHead
from multissl.methods.pretext import PretextMethod, classification_outputs
from multissl.methods.random_stream import init_random_stream, next_generator

FORWARD, REVERSED = 0, 1


def random_shuffles(batch: int, frames: int, generator: Optional[torch.Generator] = None,
                    device: Optional[torch.device] = None) -> torch.Tensor:
    """(batch, frames) frame permutations, each neither the identity nor the reversal.

    Needs ``frames >= 3`` (two frames have no other order). Drawn from ``generator``; rows that
    come out as the identity or the reversal are drawn again.
    """
    if frames < 3:
        raise ConfigError(f"shuffled clips need at least 3 frames, got {frames}")
    dev = device if device is not None else (generator.device if generator is not None else torch.device("cpu"))
    identity = torch.arange(frames, device=dev)
    perm = torch.rand(batch, frames, generator=generator, device=dev).argsort(dim=1)
    while True:
        bad = (perm == identity).all(1) | (perm == identity.flip(0)).all(1)
        if not bad.any():
            return perm
        redraw = torch.rand(int(bad.sum()), frames, generator=generator, device=dev).argsort(dim=1)
        perm[bad] = redraw


def order_variants(x: torch.Tensor, arrow: bool, shuffled: bool,
                   generator: Optional[torch.Generator] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """Every clip of ``x`` (B, C, T, H, W) in each ordering of the task, and the labels.

    Returns ``(clips (V*B, C, T, H, W), labels (V*B,))`` ordered by variant: rows
    ``v*B .. (v+1)*B - 1`` hold variant ``v`` of the B clips (forward, then reversed if
    ``arrow``, then shuffled if ``shuffled``; see the module docstring for the labels).
    """
    if not (arrow or shuffled):
        raise ConfigError("frame_order: arrow and shuffled are both off, nothing to predict")
    if x.ndim != 5:
        raise ValueError(f"frame_order needs clips (B, C, T, H, W), got shape {tuple(x.shape)}")
    B, T = x.shape[0], x.shape[2]
    if T < (3 if shuffled else 2):
        raise ConfigError(f"frame_order needs clips of at least {3 if shuffled else 2} frames, got {T}; "
                          "raise the video adapter's clip_length")
    variants: List[torch.Tensor] = [x]
    if arrow:
        variants.append(x.flip(2))
    if shuffled:
        perm = random_shuffles(B, T, generator=generator, device=x.device)
        index = perm.view(B, 1, T, 1, 1).expand(-1, x.shape[1], -1, x.shape[3], x.shape[4])
        variants.append(torch.gather(x, 2, index))
    labels = torch.arange(len(variants), device=x.device).repeat_interleave(B)
    return torch.cat(variants), labels


class FrameOrder(PretextMethod):
    """Encoder + MLP head classifying the ordering of each clip; cross-entropy.

    Each step runs the encoder on 2 or 3 copies of every clip. Returns ``{"loss", "accuracy"}``.
    The shuffles come from a random stream derived from a seed drawn from torch's RNG at
    construction (so ``pretrain(seed=...)`` fixes them) and a step counter, both buffers so
    that checkpoints resume the stream; ``forward(views, generator=g)`` uses ``g`` instead,
    and in eval mode the stream is fixed (the same batch gives the same shuffles).

    Example::

        >>> method = FrameOrder(encoder, embed_dim=256)      # forward / reversed / shuffled
        >>> out = method([clips])                             # clips: float (B, C, T, H, W), T >= 3
        >>> out["loss"].backward(); out["accuracy"]
    """

    name = "frame_order"
    hparam_defaults = {"arrow": True, "shuffled": True, "head_hidden_dim": 256}
    adapter_defaults = {"video": {"preset": "light"}}

    def __init__(self, encoder: nn.Module, embed_dim: int, **hparams: Any) -> None:
        super().__init__(encoder, embed_dim, **hparams)
        if not (self._hparams["arrow"] or self._hparams["shuffled"]):
            raise ConfigError("method 'frame_order': arrow and shuffled are both False, nothing to predict; "
                              "set at least one")
        self.num_classes = int(self._hparams["arrow"]) + 1 + int(self._hparams["shuffled"])
        self.head = MLPHead([self.embed_dim, self._hparams["head_hidden_dim"], self.num_classes])
        init_random_stream(self)

    def forward(self, views: List[Any], generator: Optional[torch.Generator] = None) -> Dict[str, torch.Tensor]:
        x = self.single_view(views)
        if generator is None and self._hparams["shuffled"]:
            generator = next_generator(self, x.device)
        clips, labels = order_variants(x, self._hparams["arrow"], self._hparams["shuffled"], generator)
        return classification_outputs(self.head(self.encode(clips)), labels)


__all__ = ["FrameOrder", "order_variants", "random_shuffles"]
