"""Every Siamese and masked method: two-process DDP == one process on the same global batch.

Launched by tests/test_distributed_methods.py as ``accelerate launch --multi_gpu --num_processes 2
tests/ddp_methods_script.py --out results.json`` (``Accelerator(cpu=True)``: two CPU processes,
gloo). For each method every rank builds the real method (:func:`multissl.methods.build_method`)
in float64 from the same seed and runs two SGD steps twice:

* the **reference**: the whole global batch in this one process, with the process group hidden
  (``multissl.distributed.is_distributed`` patched to False, so no loss gathers and no layer
  synchronises -- exactly a 1-process run);
* the **DDP run**: the model converted as the trainer converts it under several processes
  (:func:`multissl.sync_batchnorm.convert_sync_batchnorm`), wrapped by ``accelerator.prepare``,
  each rank fed its slice of the global batch.

Each step is ``forward -> backward -> compare -> optimizer.step() -> on_train_step_end``, so the
second step also covers what the first one changed: BatchNorm running statistics, IterNorm's
running whitening matrix, and the EMA teachers of moco, byol and data2vec. Rank 0 writes, per
method and step, ``|mean over ranks of the DDP losses - reference loss|`` and the largest
absolute difference between every parameter gradient (averaged by DDP) and the reference's, and
after the second step the largest difference over the whole state dict (weights, teachers,
running statistics; relative to the largest entry of each tensor when that exceeds 1).

Siamese methods wrap a small MLP encoder *with BatchNorm* (their heads have BatchNorm too;
vibcreg's ends in IterNorm); ts2vec a small convolutional encoder with BatchNorm over crops
whose overlaps differ from row to row. Masked methods (mae, data2vec) wrap a small TokenEncoder over
3-value tokens with padding: rows have different lengths, so the ranks hide different numbers of
tokens, which is what a per-process mean over hidden tokens gets wrong.

Why the masks are patched: a masked method draws its mask from the step's generator, and the
trainer seeds that generator per (seed, step, *rank*) -- two processes draw other random numbers
than one process over the same rows. Masking is per row, so the runs are comparable only for
the same per-row masks: the script draws the global batch's masks once and patches
``method.sample_mask`` so the reference gets all rows and each rank gets its own rows.

Two negative controls show that the comparison catches the bugs it is for: mode ``no_sync``
runs the Siamese methods under DDP with plain BatchNorm (no conversion), ``no_gather`` ts2vec
with each process contrasting only its own series, mode ``local_mean`` the
masked methods with each process averaging its loss over its *own* hidden tokens (the code
before :func:`multissl.distributed.global_mean`); both must differ from the reference.

``syncbn_uneven`` checks :class:`multissl.sync_batchnorm.SyncBatchNorm` alone with ranks holding
3 and 5 rows: every rank's output, input gradient and running statistics must be those of one
``nn.BatchNorm1d`` over the 8 rows.
"""
from __future__ import annotations

import argparse
import contextlib
import json
from typing import Any, Dict, Iterator, List

import torch
from accelerate import Accelerator
from torch import nn

from multissl import distributed as msd
from multissl.methods import build_method
from multissl.methods.masked import sample_mask
from multissl.methods import mae as mae_module, masked as masked_module
from multissl.sync_batchnorm import SyncBatchNorm, convert_sync_batchnorm
from multissl.tokens import TokenBatch
from multissl.transformer import TokenEncoder

GLOBAL_BATCH = 8
IN_DIM, EMBED = 6, 8
TOKENS, TOKEN_DIM = 6, 8
LR = 0.1
HEADS = {"proj_hidden_dim": 16, "proj_dim": 8}
SIAMESE: Dict[str, Dict[str, Any]] = {
    "simclr": {**HEADS, "temperature": 0.5},
    "moco": {**HEADS, "pred_hidden_dim": 16, "momentum": 0.9},
    "byol": {**HEADS, "pred_hidden_dim": 16, "momentum": 0.9},
    "simsiam": {**HEADS, "pred_hidden_dim": 4},
    "barlowtwins": {**HEADS, "lambda_": 0.1},
    "vicreg": dict(HEADS),
    "vibcreg": {**HEADS, "iternorm_groups": 2},
}
SERIES: Dict[str, Dict[str, Any]] = {"ts2vec": {"alpha": 0.5}}
MASKED: Dict[str, Dict[str, Any]] = {
    "mae": {"mask_ratio": 0.5, "decoder_dim": 8, "decoder_depth": 1, "decoder_heads": 2},
    "data2vec": {"mask_ratio": 0.5, "top_k_layers": 2, "ema_decay": 0.5, "ema_end_decay": 0.9},
}


class ValueStem(nn.Module):
    """(values (B, N, 3), padding (B, N)) -> linear token embeddings; float targets of width 3."""

    target_dim = 3

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, TOKEN_DIM)

    def forward(self, inputs):
        values, padding = inputs
        return self.lin(values), padding


class StepEncoder(nn.Module):
    """Per-step features of a series view {"x": (B, 1, T), "mask", "offset"} (Conv1d ->
    BatchNorm -> ReLU -> Conv1d) for ts2vec; ``forward`` max-pools them over time."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv1d(1, 8, 3, padding=1, bias=False), nn.BatchNorm1d(8), nn.ReLU(),
                                 nn.Conv1d(8, EMBED, 3, padding=1))

    def forward_tokens(self, view: Dict[str, torch.Tensor]) -> torch.Tensor:
        return self.net(view["x"]).transpose(1, 2)

    def forward(self, view: Dict[str, torch.Tensor]) -> torch.Tensor:
        return self.forward_tokens(view).amax(1)


def build(name: str, **override: Any) -> nn.Module:
    torch.manual_seed(0)
    if name in MASKED:
        encoder = TokenEncoder(ValueStem(), TOKEN_DIM, depth=2, heads=2, max_tokens=TOKENS)
        return build_method(name, encoder, TOKEN_DIM, **MASKED[name], **override).double()
    if name in SERIES:
        return build_method(name, StepEncoder(), EMBED, **SERIES[name], **override).double()
    encoder = nn.Sequential(nn.Linear(IN_DIM, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, EMBED))
    return build_method(name, encoder, EMBED, **SIAMESE[name], **override).double()


def siamese_batch(step: int) -> List[torch.Tensor]:
    g = torch.Generator().manual_seed(100 + step)
    x1 = torch.randn(GLOBAL_BATCH, IN_DIM, generator=g, dtype=torch.float64) * 2 + 1
    return [x1, x1 + 0.3 * torch.randn(GLOBAL_BATCH, IN_DIM, generator=g, dtype=torch.float64)]


def series_views(step: int) -> List[Dict[str, torch.Tensor]]:
    """Two crops per series (offsets, lengths) whose overlaps differ from row to row: the
    shortest is 8 steps on rank 0's rows and 6 on rank 1's, so cutting to the *global* shortest
    matters."""
    g = torch.Generator().manual_seed(300 + step)
    source = torch.randn(GLOBAL_BATCH, 1, 10, generator=g, dtype=torch.float64)
    crops = [([0, 1, 2, 0, 3, 0, 4, 1], [10, 9, 8, 10, 7, 10, 6, 9]),
             ([1, 0, 0, 2, 0, 2, 0, 3], [9, 10, 10, 8, 10, 8, 10, 7])]
    views = []
    for offsets, lengths in crops:
        x = torch.zeros(GLOBAL_BATCH, 1, 10, dtype=torch.float64)
        for i, (o, n) in enumerate(zip(offsets, lengths)):
            x[i, :, :n] = source[i, :, o:o + n]
        views.append({"x": x, "mask": torch.arange(10).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1),
                      "offset": torch.tensor(offsets)})
    return views


def token_batch(step: int):
    """Values, padding (rows of 3..6 real tokens: ranks get different numbers of hidden tokens)
    and the global batch's masks."""
    g = torch.Generator().manual_seed(200 + step)
    values = torch.randn(GLOBAL_BATCH, TOKENS, 3, generator=g, dtype=torch.float64)
    lengths = torch.tensor([6, 6, 5, 6, 3, 4, 3, 4])
    padding = torch.arange(TOKENS).unsqueeze(0) >= lengths.unsqueeze(1)
    mask = sample_mask(GLOBAL_BATCH, TOKENS, 0.5, padding, generator=g)
    return values, padding, mask


@contextlib.contextmanager
def single_process() -> Iterator[None]:
    """Hide the process group from multissl (losses do not gather, layers do not synchronise)."""
    saved = msd.is_distributed
    msd.is_distributed = lambda: False
    try:
        yield
    finally:
        msd.is_distributed = saved


def run(name: str, accelerator: Accelerator, distributed: bool, sync: bool = True, **override: Any) -> Dict[str, Any]:
    """Two steps of ``name``; losses (mean over ranks), gradients per step, final state dict."""
    method = build(name, **override)
    if distributed and sync:
        convert_sync_batchnorm(method, device="cpu")  # what Trainer.fit does when num_processes > 1
    model = accelerator.prepare(method) if distributed else method
    optimizer = torch.optim.SGD([p for p in method.parameters() if p.requires_grad], lr=LR)
    n = GLOBAL_BATCH // accelerator.num_processes
    rows = slice(accelerator.process_index * n, (accelerator.process_index + 1) * n) if distributed else slice(None)
    model.train()
    initial = {k: v.detach().clone() for k, v in method.state_dict().items() if v.is_floating_point()}
    losses, grads = [], []
    for step in range(2):
        if name in MASKED:
            values, padding, mask = token_batch(step)
            method.sample_mask = lambda tb, pad, generator=None, m=mask[rows]: m  # noqa: E731 (see docstring)
            out = model(TokenBatch(inputs=(values[rows], padding[rows]), targets=values[rows].clone(),
                                   padding_mask=padding[rows]))
        elif name in SERIES:
            out = model([{k: t[rows] for k, t in v.items()} for v in series_views(step)])
        else:
            out = model([v[rows] for v in siamese_batch(step)])
        loss = out["loss"]
        if distributed:
            accelerator.backward(loss)
            loss = accelerator.reduce(loss.detach(), reduction="mean")
        else:
            loss.backward()
        losses.append(loss.item())
        grads.append({k: p.grad.detach().clone() for k, p in method.named_parameters() if p.requires_grad})
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        method.on_train_step_end((step + 1) / 2)
    state = {k: v.detach().clone() for k, v in method.state_dict().items() if v.is_floating_point()}
    # how far the EMA teacher and the running statistics moved: the second step depends on them
    moved = {part: max([(state[k] - initial[k]).abs().max().item() for k in state if part in k] or [0.0])
             for part in ("teacher", "running")}
    return {"losses": losses, "grads": grads, "state": state, "moved": moved}


def compare(name: str, accelerator: Accelerator, sync: bool = True, **override: Any) -> Dict[str, Any]:
    with single_process():
        ref = run(name, accelerator, distributed=False)
    ddp = run(name, accelerator, distributed=True, sync=sync, **override)
    assert ddp["grads"][0].keys() == ref["grads"][0].keys()
    result: Dict[str, Any] = {"loss": ref["losses"][0]}
    for step in range(2):
        result[f"loss_err_{step}"] = abs(ddp["losses"][step] - ref["losses"][step])
        errs = {k: (ddp["grads"][step][k] - g).abs().max().item() for k, g in ref["grads"][step].items()}
        result[f"grad_err_{step}"] = max(errs.values())
        result[f"worst_grad_{step}"] = max(errs, key=errs.get)
        result[f"grad_scale_{step}"] = max(g.abs().max().item() for g in ref["grads"][step].values())
    state_errs = {k: (ddp["state"][k] - v).abs().max().item() for k, v in ref["state"].items()}
    # relative to the tensor's size: IterNorm's running whitening matrix holds values ~1e4
    state_errs = {k: e / max(1.0, ref["state"][k].abs().max().item()) for k, e in state_errs.items()}
    result["state_err"] = max(state_errs.values())
    result["worst_state"] = max(state_errs, key=state_errs.get)
    result["teacher_moved"] = ref["moved"]["teacher"]
    result["running_stats_moved"] = ref["moved"]["running"]
    return result


@contextlib.contextmanager
def per_process_token_mean() -> Iterator[None]:
    """Negative control: each process averages over its own hidden tokens."""
    saved = masked_module.global_mean, mae_module.global_mean
    local = lambda total, count: total / max(float(count), 1.0)  # noqa: E731
    masked_module.global_mean = mae_module.global_mean = local
    try:
        yield
    finally:
        masked_module.global_mean, mae_module.global_mean = saved


def syncbn_uneven() -> Dict[str, float]:
    """SyncBatchNorm with 3 and 5 rows on the two ranks against BatchNorm1d over all 8 rows.
    The loss ``sum(w * y)`` of each rank adds up to the global one; gathering with the
    all-reduce backward gives each rank the gradient of that global loss at its rows."""
    g = torch.Generator().manual_seed(7)
    x = torch.randn(8, 4, generator=g, dtype=torch.float64) * 3 + 1
    w = torch.randn(8, 4, generator=g, dtype=torch.float64)
    torch.manual_seed(0)
    ref = nn.BatchNorm1d(4).double()
    with torch.no_grad():
        ref.weight.uniform_(0.5, 1.5), ref.bias.uniform_(-1, 1)
    sync = SyncBatchNorm(4).double()
    sync.load_state_dict(ref.state_dict())
    xr = x.clone().requires_grad_(True)
    (ref(xr) * w).sum().backward()
    rows = slice(0, 3) if msd.rank() == 0 else slice(3, 8)
    xs = x[rows].clone().requires_grad_(True)
    y = sync(xs)
    (y * w[rows]).sum().backward()
    return {"out_err": (y.detach() - _train_out(ref, x)[rows]).abs().max().item(),
            "grad_err": (xs.grad - xr.grad[rows]).abs().max().item(),
            "running_err": max((sync.running_mean - ref.running_mean).abs().max().item(),
                               (sync.running_var - ref.running_var).abs().max().item())}


def _train_out(bn: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Training-mode output of ``bn`` on ``x`` without touching its running statistics."""
    return nn.functional.batch_norm(x, None, None, bn.weight, bn.bias, True, 0.0, bn.eps).detach()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--methods", default=",".join([*SIAMESE, *SERIES, *MASKED]))
    args = parser.parse_args()
    torch.set_num_threads(1)
    accelerator = Accelerator(cpu=True)
    assert msd.world_size() == accelerator.num_processes == 2, "launch with 2 processes"
    names = args.methods.split(",")
    results: Dict[str, Any] = {"synced": {}, "no_sync": {}, "local_mean": {}, "no_gather": {}}
    for name in names:
        results["synced"][name] = compare(name, accelerator)
    for name in names:  # negative controls
        if name in MASKED:
            with per_process_token_mean():
                results["local_mean"][name] = compare(name, accelerator)
        else:
            results["no_sync"][name] = compare(name, accelerator, sync=False)
        if name in SERIES:  # each process contrasting its own series
            results["no_gather"][name] = compare(name, accelerator, gather_distributed=False)
    results["syncbn_uneven"] = syncbn_uneven()
    if accelerator.is_main_process:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=2)
    accelerator.wait_for_everyone()


if __name__ == "__main__":
    main()
