"""Two-process DDP vs one process on the same global batch (run by tests/test_distributed.py).

Launched as ``accelerate launch --multi_gpu --num_processes 2 tests/ddp_equivalence_script.py
--out results.json``; ``Accelerator(cpu=True)`` puts both processes on the CPU with gloo. For
each loss, every rank builds the same BN-free model and the same global batch, computes

* the reference: the loss on the whole global batch in this one process (no gather), and
* the DDP run: this rank's slice through the DDP-wrapped model, ``gather_distributed=True``,

and rank 0 writes ``|mean over ranks of the DDP losses - reference loss|`` and the largest
absolute difference between the DDP parameter gradients (averaged by DDP) and the reference
gradients. Mode ``correct`` uses :func:`multissl.distributed.gather`; mode ``no_allreduce``
swaps in a backward pass that skips the all-reduce (the lightly #1528 bug) to prove that the
comparison catches a wrong gather. Float64 keeps summation-order noise far below 1e-5.
"""
from __future__ import annotations

import argparse
import json
from typing import Callable, Dict, Tuple

import torch
from accelerate import Accelerator
from torch import nn

from multissl import distributed as msd
from multissl.losses import barlow_twins_loss, info_nce_loss, nt_xent_loss, vibcreg_loss, vicreg_loss

LossFn = Callable[[torch.Tensor, torch.Tensor, bool], torch.Tensor]
LOSSES: Dict[str, LossFn] = {
    "nt_xent": lambda a, b, g: nt_xent_loss(a, b, temperature=0.5, gather_distributed=g),
    # a larger lambda than the default so the off-diagonal term matters at D = 8
    "barlow_twins": lambda a, b, g: barlow_twins_loss(a, b, lambda_=0.1, gather_distributed=g),
    "vicreg": lambda a, b, g: vicreg_loss(a, b, gather_distributed=g),
    "vibcreg": lambda a, b, g: vibcreg_loss(a, b, gather_distributed=g),
    "info_nce": lambda a, b, g: info_nce_loss(a, b, 0.2, g) + info_nce_loss(b, a, 0.2, g),
}
GLOBAL_BATCH = 8


class TwoViews(nn.Module):
    """A BN-free encoder applied to both views inside one forward, as an SSL method does."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 8))

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        return self.net(x1), self.net(x2)


def make_model() -> TwoViews:
    torch.manual_seed(0)
    return TwoViews().double()


def global_batch() -> Tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x1 = torch.randn(GLOBAL_BATCH, 6, generator=g, dtype=torch.float64)
    return x1, x1 + 0.3 * torch.randn(GLOBAL_BATCH, 6, generator=g, dtype=torch.float64)


def compare(accelerator: Accelerator, loss_fn: LossFn) -> Dict[str, float]:
    x1, x2 = global_batch()
    reference = make_model()
    ref_loss = loss_fn(*reference(x1, x2), False)
    ref_loss.backward()

    ddp = accelerator.prepare(make_model())
    n = GLOBAL_BATCH // accelerator.num_processes
    rows = slice(accelerator.process_index * n, (accelerator.process_index + 1) * n)
    loss = loss_fn(*ddp(x1[rows], x2[rows]), True)
    accelerator.backward(loss)
    mean_loss = accelerator.reduce(loss.detach(), reduction="mean")
    grad_err = max(
        (p.grad - q.grad).abs().max().item()
        for p, q in zip(accelerator.unwrap_model(ddp).parameters(), reference.parameters())
    )
    return {"loss_err": abs(mean_loss.item() - ref_loss.item()), "grad_err": grad_err, "loss": ref_loss.item()}


def uneven_gather_check() -> float:
    """Ranks hold 3 and 5 rows; every rank computes the same global ``sum(w * y^2)`` of the
    gathered tensor, so each rank's input gradient must be ``world_size * 2 * w * x``."""
    r, w = msd.rank(), msd.world_size()
    sizes = [3 + 2 * i for i in range(w)]
    x = torch.full((sizes[r], 2), float(r + 1), dtype=torch.float64, requires_grad=True)
    y, offset = msd.gather_with_offset(x)
    weights = torch.arange(1, y.shape[0] + 1, dtype=torch.float64).unsqueeze(1)
    (weights * y.pow(2)).sum().backward()
    expected = w * 2 * weights[offset : offset + sizes[r]] * x.detach()
    shape_err = 0.0 if y.shape[0] == sum(sizes) and offset == sum(sizes[:r]) else float("inf")
    return max(shape_err, (x.grad - expected).abs().max().item())


def _backward_without_allreduce(ctx, grad):  # type: ignore[no-untyped-def]
    start = sum(ctx.sizes[: ctx.rank])
    return grad[start : start + ctx.sizes[ctx.rank]], None, None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    accelerator = Accelerator(cpu=True)
    assert msd.world_size() == accelerator.num_processes == 2, "launch with 2 processes"

    results: Dict[str, Dict[str, Dict[str, float]]] = {"correct": {}, "no_allreduce": {}}
    for name, fn in LOSSES.items():
        results["correct"][name] = compare(accelerator, fn)
    results["correct"]["uneven_gather"] = {"grad_err": uneven_gather_check()}

    # Negative control: the same comparisons with a gather that does not all-reduce.
    msd._GatherWithGrad.backward = staticmethod(_backward_without_allreduce)
    for name, fn in LOSSES.items():
        results["no_allreduce"][name] = compare(accelerator, fn)

    if accelerator.is_main_process:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=2)
    accelerator.wait_for_everyone()


if __name__ == "__main__":
    main()
