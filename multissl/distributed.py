"""Process-group helpers for losses that need the *global* batch.

Contrastive and redundancy-reduction losses (SimCLR, MoCo, Barlow Twins, VICReg, VIbCReg) get
better with more samples per step: more negatives, better estimates of the embedding
statistics. Under data parallelism every process only sees its local slice of the batch, so
the losses gather the other slices with :func:`gather`.

Why the backward pass all-reduces
---------------------------------
:func:`gather` concatenates every rank's tensor in rank order in the forward pass. Its backward
pass *sums the incoming gradient over all ranks* and hands each rank the slice of its own
rows. The reason: the loss computed on rank ``s`` (``L_s``) depends on the rows produced on
every rank ``r``, but autograd on rank ``s`` can only push gradient into the graph of rank
``s``. Rank ``r``'s rows therefore need ``sum_s dL_s/dz_r`` -- the contributions of every
rank's loss -- which is exactly an all-reduce (SUM) of the gathered gradient followed by
taking rank ``r``'s slice. DDP then *averages* the parameter gradients over the ``W`` ranks.
Both ways of writing a loss then give the single-process gradient of the global loss ``L``:

* every rank computes the identical global loss (``L_s = L``; Barlow Twins, the variance and
  covariance terms of VICReg): rank ``r`` receives ``sum_s dL/dz_r = W * dL/dz_r``, and DDP's
  ``1/W`` average cancels the factor ``W``;
* each rank computes the share of its local anchors and the global loss is the mean over
  ranks, ``L = (1/W) sum_s L_s`` (NT-Xent, InfoNCE, per-sample terms): rank ``r`` receives
  ``sum_s dL_s/dz_r = W * dL/dz_r`` as well, and DDP's average again gives ``dL/dtheta``
  (the mean of the shares is the global mean when ranks hold equal batch sizes, which DDP's
  plain gradient average assumes anyway).

Gathering *without* the all-reduce silently produces wrong gradients; lightly shipped both
variants of that bug: its ``GatherLayer`` returned only the local slice of the local gradient,
dropping the other ranks' contributions, so 1- and 2-GPU runs of ``NTXentLoss`` disagreed
(lightly issue #1528, fixed in PR #1531), and its ``BarlowTwinsLoss`` reduced the
cross-correlation matrix with the non-differentiable ``torch.distributed.all_reduce``, which
left the DDP gradient ``1/world_size`` times too small (lightly issue #1977).
``tests/test_distributed.py`` checks both loss styles against a single process, and checks
that a gather without the all-reduce fails that comparison.

When the process group is not initialised, or has one process, :func:`gather` returns its
input unchanged, so the same loss code runs everywhere.

Exiting cleanly
---------------
A process can die with SIGABRT ("terminate called without an active exception") just after
its last collective when gloo is the backend: gloo's worker thread marks a collective complete
*before* it drops its own reference to the work object, and when that object (often a barrier
that holds the collectives before it) owns tensors that had a Python object, dropping it needs
the GIL. If the main thread has meanwhile run off into interpreter shutdown, taking the GIL
kills the worker thread and the process aborts (core dump analysed on this project's CI
failures: ``ProcessGroupGloo::runLoop`` -> ``~AsyncBarrierWork`` -> ``~AsyncAllreduceWork`` ->
``decref_pyobject`` -> ``take_gil`` during ``Py_FinalizeEx``; pytorch PR #179291 describes the
same race). It happened in about one run in ten of a 2-process test on a loaded 2-core machine.
Importing this module registers an ``atexit`` handler that, while the interpreter is still
whole, gives the backend's threads a moment to finish (a 0.25 s sleep with the GIL released)
and destroys the default process group, so ``accelerate launch`` runs of the CLI, the recipes
and user scripts that call :func:`multissl.pretrain` end cleanly without doing it themselves.
``destroy_process_group`` alone is not enough: it does not join gloo's threads while DDP
models still hold the group. The handler does nothing when no group is running.
"""
from __future__ import annotations

import atexit
import time
from typing import Any, List, Tuple, Union

import torch
import torch.distributed as dist


#: seconds the exit handler waits for the backend's threads (see "Exiting cleanly")
EXIT_GRACE_SECONDS = 0.25


def _destroy_process_group_at_exit() -> None:
    if dist.is_available() and dist.is_initialized():
        time.sleep(EXIT_GRACE_SECONDS)
        dist.destroy_process_group()


atexit.register(_destroy_process_group_at_exit)


def has_accelerator() -> bool:
    """True when torch sees a GPU (CUDA/ROCm), an Apple MPS device or an Intel XPU."""
    mps = getattr(torch.backends, "mps", None)
    return torch.cuda.is_available() or bool(mps and mps.is_available()) or bool(
        getattr(torch, "xpu", None) and torch.xpu.is_available())


def process_state() -> Any:
    """accelerate's ``PartialState`` of this process -- what recipes and the CLI ask "am I the
    main process?" and "which device?" -- created as the trainer creates its ``Accelerator``.

    On a machine without an accelerator it is made with ``cpu=True``: then the processes that
    ``accelerate launch --multi_gpu --num_processes N`` (or torchrun) starts form one gloo group
    (``MULTI_CPU``). A bare ``PartialState()`` there reports a single process in *each* of them
    (distributed type ``NO``), so every process would act as the main one, and the
    ``Accelerator`` the trainer makes afterwards inherits that state and trains undistributed.
    """
    from accelerate import PartialState

    return PartialState(cpu=not has_accelerator())


def is_distributed() -> bool:
    """True when a process group with more than one process is running."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    """Number of processes in the default group (1 when not distributed)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def rank() -> int:
    """This process's rank in the default group (0 when not distributed)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return 0


class _GatherWithGrad(torch.autograd.Function):
    """all_gather in the forward pass, all-reduce(SUM) + own slice in the backward pass."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, sizes: List[int], rank_: int) -> torch.Tensor:  # type: ignore[override]
        ctx.sizes = sizes
        ctx.rank = rank_
        # all_gather needs equal shapes: pad the rows of a short last batch, trim afterwards.
        longest = max(sizes)
        padded = x.contiguous()
        if x.shape[0] < longest:
            padded = torch.cat([padded, padded.new_zeros((longest - x.shape[0], *x.shape[1:]))])
        parts = [torch.empty_like(padded) for _ in sizes]
        dist.all_gather(parts, padded)
        return torch.cat([part[:n] for part, n in zip(parts, sizes)])

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> Tuple[torch.Tensor, None, None]:  # type: ignore[override]
        # A copy: all_reduce works in place and autograd may still hold `grad` elsewhere.
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = sum(ctx.sizes[: ctx.rank])
        return grad[start : start + ctx.sizes[ctx.rank]], None, None


def gather_with_offset(x: torch.Tensor) -> Tuple[torch.Tensor, int]:
    """Gather ``x`` (rows = samples) from every process, keeping gradients.

    Returns the concatenation over ranks in rank order and the index of this rank's first row
    in it (used to find the positives of the local anchors). Ranks may hold different numbers
    of rows (e.g. a short last batch). Not distributed: ``(x, 0)``.
    """
    if not is_distributed():
        return x, 0
    if x.ndim == 0:
        raise ValueError("gather needs a tensor with a leading batch dimension, got a scalar")
    local = torch.tensor([x.shape[0]], device=x.device, dtype=torch.long)
    counts = [torch.empty_like(local) for _ in range(dist.get_world_size())]
    dist.all_gather(counts, local)
    sizes = [int(c.item()) for c in counts]
    me = dist.get_rank()
    return _GatherWithGrad.apply(x, sizes, me), sum(sizes[:me])


def gather(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` from every process along dim 0 (rank order) with correct gradients.

    See the module docstring for why the backward pass all-reduces. Not distributed (no
    process group, or world size 1): returns ``x`` unchanged.
    """
    return gather_with_offset(x)[0]


def global_mean(total: torch.Tensor, count: Union[int, torch.Tensor]) -> torch.Tensor:
    """This process's share of a mean over the items of *every* process: ``total * W / N``, with
    ``N`` the sum of ``count`` over the ``W`` processes.

    For losses averaged over a varying number of items per process (the hidden tokens of a
    masked method: rows of different lengths hide different numbers of tokens). Each process
    dividing by its *own* count weights the processes equally instead of the items, so the DDP
    run would differ from the 1-process run. With this share, the mean over processes -- what
    DDP's gradient average and ``accelerator.reduce(loss, "mean")`` compute -- is
    ``sum(total) / N``, the single-process mean of the global batch. Every process must call it
    (it all-reduces ``count``; no gradient flows through the count). Not distributed:
    ``total / max(count, 1)``.
    """
    n = torch.as_tensor(count, dtype=total.dtype, device=total.device).detach().clone()
    if not is_distributed():
        return total / n.clamp(min=1.0)
    dist.all_reduce(n, op=dist.ReduceOp.SUM)
    return total * dist.get_world_size() / n.clamp(min=1.0)


__all__ = ["gather", "gather_with_offset", "global_mean", "has_accelerator", "is_distributed", "process_state", "rank",
           "world_size"]
