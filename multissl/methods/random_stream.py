"""A method's own reproducible random stream (jigsaw puzzles, frame shuffles, inpainting
regions, T-Loss sub-series).

Methods that draw random numbers inside ``forward`` keep two buffers: ``rng_seed`` (drawn from
torch's RNG when the method is built, so ``pretrain(seed=...)`` fixes it) and ``rng_step`` (a
counter). Being buffers, both are saved in checkpoints, so a resumed run continues the stream
where it stopped. Each training call gets a generator seeded from (seed, step, rank): different
on every step and every process; in eval mode the stream is fixed (index 0), so the same batch
gives the same draws.
"""
from __future__ import annotations

import torch
from torch import nn

from multissl import distributed as msd


def init_random_stream(module: nn.Module) -> None:
    """Register ``rng_seed`` and ``rng_step`` on ``module``."""
    module.register_buffer("rng_seed", torch.randint(0, 2**62, ()))
    module.register_buffer("rng_step", torch.zeros((), dtype=torch.long))


def next_generator(module: nn.Module, device: torch.device) -> torch.Generator:
    """The next generator of ``module``'s stream (advances ``rng_step`` in training mode)."""
    index = 0  # eval mode: always the same draws
    if module.training:
        module.rng_step += 1
        index = int(module.rng_step)
    g = torch.Generator(device=device)
    g.manual_seed((int(module.rng_seed) * 1_000_003 + index * 7919 + msd.rank() * 104_729) % (2**63 - 1))
    return g


__all__ = ["init_random_stream", "next_generator"]
