"""The training loop, on Hugging Face Accelerate.

One loop serves every adapter and method. Accelerate does device placement, DDP/FSDP
wrapping, mixed precision and state saving; this file adds what a self-supervised run needs
on top: on-device augmentation with per-step seeded generators, gradient accumulation, a
warmup + cosine schedule, atomic checkpoints with exact resume, a progress bar, trackers and
an online kNN monitor.

Why data order and augmentation randomness are derived from ``(seed, epoch)`` and
``(seed, step, rank)`` instead of carried state: a resumed run recomputes them from the step
counter alone, so it continues *exactly* where it stopped, on any number of processes that
divides the data the same way.
"""
from __future__ import annotations

import json
import pickle
import math
from contextlib import nullcontext
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Union

import torch
from torch import nn

from multissl.adapters.base import Adapter, Prepared, num_records, take, to_device
from multissl.distributed import has_accelerator
from multissl.errors import ConfigError, DataError
from multissl import fast_path
from multissl.methods.base import SSLMethod
from multissl.streaming import is_stream

CHECKPOINT_PREFIX = "step_"
TRAINER_STATE = "trainer_state.json"


@dataclass
class TrainConfig:
    """Everything that shapes a training run. ``None`` means "the method's recommended value"."""

    epochs: int = 100
    batch_size: int = 256  # per process, as in Accelerate; the global batch is batch_size * processes
    lr: Optional[float] = None
    optimizer: Optional[str] = None  # "adamw" | "sgd" | "lars"
    weight_decay: Optional[float] = None
    momentum: float = 0.9  # SGD / LARS momentum
    warmup_epochs: Optional[float] = None  # default: 10% of the run, at most 10 epochs
    min_lr_ratio: float = 0.0  # cosine decays to lr * min_lr_ratio
    #: "auto": bf16 on GPUs that support it, and for image/video conv nets on CPUs with native bf16
    #: dot products (AVX-512 BF16: Intel with AMX, AMD Zen 4); "no", "bf16", "fp16"
    mixed_precision: str = "auto"
    grad_accum_steps: int = 1
    clip_grad_norm: Optional[float] = None
    seed: int = 0
    output_dir: Optional[str] = None
    checkpoint_every: Optional[int] = None  # optimiser steps; default: once per epoch when output_dir is set
    keep_checkpoints: int = 2
    resume: Union[bool, str] = False  # True/"latest" or a checkpoint folder
    #: "auto": TensorBoard curves in <output_dir>/logs when tensorboard is installed and there is an
    #: output_dir; None: no trackers; or Accelerate tracker names, e.g. "tensorboard", ["wandb"]
    trackers: Optional[Union[str, List[str]]] = "auto"
    log_every: int = 10
    knn_every: int = 1  # epochs between kNN monitor evaluations
    knn_k: int = 20
    knn_temperature: float = 0.1
    progress: bool = True
    data_on_device: Optional[bool] = None  # keep prepared data on the GPU (default: when it fits easily)
    max_steps: Optional[int] = None  # stop early after this many optimiser steps (tests, quick looks)
    overwrite: bool = False  # start afresh in an output_dir that holds checkpoints of an earlier run
    #: BatchNorm over the global batch (multissl.sync_batchnorm); None = when num_processes > 1
    sync_batchnorm: Optional[bool] = None
    #: deterministic kernels (torch.use_deterministic_algorithms, cuDNN autotuning off,
    #: CUBLAS_WORKSPACE_CONFIG); slower on GPUs, needed for bit-identical GPU reruns. True: an op
    #: without a deterministic kernel raises; "warn": it warns and runs (docs/distributed.md)
    deterministic: Union[bool, str] = False
    #: fused AdamW/SGD kernels (torch's ``fused=True``); None: on CUDA, the plain step elsewhere.
    #: LARS keeps its own step (True with it is a ConfigError)
    fused_optimizer: Optional[bool] = None
    #: model and image/video views in channels_last memory format; None: on CUDA when the adapter
    #: is image or video and the model has 2-D/3-D convolutions
    channels_last: Optional[bool] = None
    #: torch.compile the method's forward: True (inductor), a mode ("max-autotune", ...) or a
    #: backend name ("aot_eager": no C++/Triton code generation); checkpoints keep plain keys
    compile: Union[bool, str] = False

    def validate(self) -> None:
        if self.epochs < 1:
            raise ConfigError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 2:
            raise ConfigError(f"batch_size must be >= 2 (Siamese losses need pairs), got {self.batch_size}")
        if self.grad_accum_steps < 1:
            raise ConfigError(f"grad_accum_steps must be >= 1, got {self.grad_accum_steps}")
        if self.mixed_precision not in ("auto", "no", "bf16", "fp16"):
            raise ConfigError(f"mixed_precision must be auto|no|bf16|fp16, got {self.mixed_precision!r}")
        if self.deterministic not in (True, False, "warn"):
            raise ConfigError(f"deterministic must be true, false or 'warn', got {self.deterministic!r}")
        if self.optimizer not in (None, "adamw", "sgd", "lars"):
            raise ConfigError(f"optimizer must be adamw|sgd|lars, got {self.optimizer!r}")
        for name in ("fused_optimizer", "channels_last"):
            if getattr(self, name) not in (None, True, False):
                raise ConfigError(f"{name} must be true, false or null (automatic), got {getattr(self, name)!r}")
        fast_path.compile_options(self.compile)  # a ConfigError for an unknown mode/backend


class LARS(torch.optim.SGD):
    """SGD with layer-wise adaptive rate scaling (You et al. 2017), as used by SimCLR/BYOL.

    Biases and normalisation parameters (``lars_exclude=True`` groups) skip the adaptation.
    """

    def __init__(self, params: Any, lr: float, momentum: float = 0.9, weight_decay: float = 0.0, eta: float = 0.02):
        super().__init__(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
        self.eta = eta

    @torch.no_grad()
    def step(self, closure: Optional[Callable] = None) -> Any:  # type: ignore[override]
        for group in self.param_groups:
            if group.get("lars_exclude", False):
                continue
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad.add(p, alpha=group["weight_decay"])
                p_norm, g_norm = torch.norm(p), torch.norm(g)
                trust = torch.where((p_norm > 0) & (g_norm > 0), self.eta * p_norm / g_norm, torch.ones_like(p_norm))
                p.grad.copy_(g.mul(trust))
        # weight decay already folded in for adapted groups
        saved = [g["weight_decay"] for g in self.param_groups]
        for g in self.param_groups:
            if not g.get("lars_exclude", False):
                g["weight_decay"] = 0.0
        try:
            return super().step(closure)
        finally:
            for g, wd in zip(self.param_groups, saved):
                g["weight_decay"] = wd


def build_optimizer(model: nn.Module, name: str, lr: float, weight_decay: float, momentum: float,
                    fused: bool = False) -> torch.optim.Optimizer:
    """Weight decay on weights only: biases and normalisation parameters (ndim <= 1) are exempt.
    ``fused``: torch's fused AdamW/SGD kernels (one launch for all parameters on CUDA)."""
    if fused and name not in ("adamw", "sgd"):
        raise ConfigError(f"fused=True applies to adamw and sgd, not {name!r}")
    kernel = {"fused": True} if fused else {}
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0, "lars_exclude": True},
    ]
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, **kernel)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, **kernel)
    if name == "lars":
        return LARS(groups, lr=lr, momentum=momentum)
    raise ConfigError(f"unknown optimizer {name!r}")


def warmup_cosine(total_steps: int, warmup_steps: int, min_ratio: float = 0.0) -> Callable[[int], float]:
    """LR multiplier: linear warmup from ~0 to 1, then half-cosine down to ``min_ratio``."""

    def factor(step: int) -> float:
        if warmup_steps > 0 and step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        progress = min(1.0, progress)
        return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def step_generator(device: torch.device, seed: int, step: int, rank: int) -> torch.Generator:
    """A generator for one step's augmentations, derived from (seed, step, rank) alone."""
    g = torch.Generator(device=device)
    g.manual_seed((seed * 1_000_003 + step * 7919 + rank * 104_729) % (2**63 - 1))
    return g


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g)


@torch.no_grad()
def embed_prepared(encoder: nn.Module, adapter: Adapter, prepared: Prepared, batch_size: int = 256,
                   device: Optional[torch.device] = None) -> torch.Tensor:
    """Embeddings (N, D) of prepared data in eval mode (float32, on CPU)."""
    was_training = encoder.training
    encoder.eval()
    device = device or next(encoder.parameters()).device
    out = []
    n = num_records(prepared)
    for start in range(0, n, batch_size):
        idx = torch.arange(start, min(n, start + batch_size))
        batch = to_device(take(prepared, idx), device)
        out.append(encoder(adapter.eval_transform(batch)).float().cpu())
    encoder.train(was_training)
    return torch.cat(out) if out else torch.empty(0, 0)


@dataclass
class KNNMonitor:
    """A small labelled split watched during training: weighted kNN accuracy (Wu et al. 2018)."""

    train: Prepared
    train_labels: torch.Tensor
    val: Prepared
    val_labels: torch.Tensor

    def evaluate(self, encoder: nn.Module, adapter: Adapter, k: int, temperature: float) -> float:
        from multissl.evaluation.knn import knn_accuracy

        z_train = embed_prepared(encoder, adapter, self.train)
        z_val = embed_prepared(encoder, adapter, self.val)
        return knn_accuracy(z_train, self.train_labels, z_val, self.val_labels, k=k, temperature=temperature)


class Trainer:
    """Runs a method on prepared data. ``fit`` returns a per-epoch history."""

    def __init__(self, method: SSLMethod, adapter: Adapter, config: TrainConfig, accelerator: Any = None) -> None:
        config.validate()
        self.method = method
        self.adapter = adapter
        self.config = config
        self._accelerator = accelerator
        self.history: List[Dict[str, Any]] = []

    # ------------------------------------------------------------------ helpers
    def trackers(self) -> List[str]:
        """The Accelerate trackers this run logs to (``config.trackers`` with "auto" resolved)."""
        import importlib.util

        trackers = self.config.trackers
        if trackers == "auto":
            has_tb = importlib.util.find_spec("tensorboard") is not None
            return ["tensorboard"] if has_tb and self.config.output_dir else []
        trackers = [trackers] if isinstance(trackers, str) else list(trackers or [])
        if "tensorboard" in trackers and importlib.util.find_spec("tensorboard") is None:
            raise ConfigError("trackers=['tensorboard'] needs `pip install tensorboard`")
        return trackers

    def _make_accelerator(self, prepared: Optional[Prepared] = None) -> Any:
        from accelerate import Accelerator
        from accelerate.utils import ProjectConfiguration

        cfg = self.config
        trackers = self.trackers()
        project = ProjectConfiguration(project_dir=cfg.output_dir or ".", logging_dir=os.path.join(cfg.output_dir or ".", "logs"))
        # Accelerate keeps one process-wide AcceleratorState and refuses a second Accelerator with
        # another precision; a notebook or script that calls pretrain() twice must still work, so
        # the per-run part of that state is cleared (the process group, PartialState, is kept).
        from accelerate.state import AcceleratorState

        if AcceleratorState._shared_state and hasattr(AcceleratorState, "_reset_state"):
            AcceleratorState._reset_state(reset_partial_state=False)
        # cpu=True on machines without an accelerator: then several processes started by
        # `accelerate launch --multi_gpu` / torchrun form a gloo group (MULTI_CPU) instead of each
        # believing it is the only process.
        on_cpu = not has_accelerator()
        precision = fast_path.resolve_mixed_precision(cfg.mixed_precision, self.adapter.name, self.method, on_cpu,
                                                      None if prepared is None else fast_path.spatial_side(prepared))
        return Accelerator(mixed_precision=precision, log_with=trackers or None, project_config=project, cpu=on_cpu)

    def _checkpoint_root(self) -> Optional[Path]:
        return Path(self.config.output_dir) / "checkpoints" if self.config.output_dir else None

    def latest_checkpoint(self) -> Optional[Path]:
        root = self._checkpoint_root()
        if root is None or not root.is_dir():
            return None
        done = [p for p in root.iterdir() if p.is_dir() and p.name.startswith(CHECKPOINT_PREFIX) and (p / TRAINER_STATE).is_file()]
        return max(done, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX):])) if done else None

    def _save_checkpoint(self, acc: Any, step: int) -> None:
        """``accelerator.save_state`` into a temporary folder, renamed into place when complete:
        an interrupted save never leaves a folder that looks like a checkpoint."""
        root = self._checkpoint_root()
        assert root is not None
        final = root / f"{CHECKPOINT_PREFIX}{step:08d}"
        tmp = root / f".tmp-{CHECKPOINT_PREFIX}{step:08d}"
        if acc.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)  # before any process writes its RNG state file into it
        acc.wait_for_everyone()
        acc.save_state(str(tmp), safe_serialization=True)
        acc.wait_for_everyone()
        if acc.is_main_process:
            state = {"step": step, "history": self.history, "config": asdict(self.config)}
            (tmp / TRAINER_STATE).write_text(json.dumps(state, indent=2, default=str))
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
            kept = sorted((p for p in root.iterdir() if p.is_dir() and p.name.startswith(CHECKPOINT_PREFIX)),
                          key=lambda p: p.name)
            for old in kept[: max(0, len(kept) - self.config.keep_checkpoints)]:
                shutil.rmtree(old, ignore_errors=True)
        acc.wait_for_everyone()

    # ------------------------------------------------------------------ the loop
    def fit(self, prepared: Prepared, knn: Optional[KNNMonitor] = None, positives: Any = None) -> List[Dict[str, Any]]:
        """Train; ``positives`` (N, K) record indices: the second view of record i comes from one
        of ``positives[i]`` (see :mod:`multissl.positives`)."""
        from accelerate.utils import set_seed

        cfg = self.config
        acc = self._accelerator or self._make_accelerator(prepared)
        self.accelerator = acc
        set_seed(cfg.seed)
        if cfg.deterministic:
            use_deterministic_kernels(warn_only=cfg.deterministic == "warn")
        world, rank = acc.num_processes, acc.process_index
        # a stream (multissl.streaming.ParquetStream) hands over decoded batches itself
        streaming = is_stream(prepared)
        n = num_records(prepared)
        if positives is not None:
            positives = self._check_positives(positives, n, streaming)
        per_proc = min(cfg.batch_size, n // world)
        if per_proc < 2:
            raise ConfigError(f"{n} records are too few for {world} process(es): need at least 2 per process")
        if per_proc < cfg.batch_size and acc.is_main_process:
            print(f"multissl: batch_size {cfg.batch_size} > data per process; using {per_proc}")
        global_batch = per_proc * world
        batches_per_epoch = n // global_batch
        steps_per_epoch = max(1, batches_per_epoch // cfg.grad_accum_steps)
        total_steps = steps_per_epoch * cfg.epochs
        if cfg.max_steps is not None:
            total_steps = min(total_steps, cfg.max_steps)
        warmup_epochs = cfg.warmup_epochs if cfg.warmup_epochs is not None else min(10.0, 0.1 * cfg.epochs)
        warmup_steps = int(round(warmup_epochs * steps_per_epoch))

        defaults = dict(getattr(self.method, "defaults", {}))
        opt_name = cfg.optimizer or defaults.get("optimizer", "adamw")
        lr = cfg.lr if cfg.lr is not None else defaults.get("lr", 1e-3)
        if cfg.lr is None and defaults.get("lr_scale_batch"):
            # linear scaling rule (Goyal et al. 2017) for methods tuned with SGD/LARS at batch 256
            lr = lr * global_batch * cfg.grad_accum_steps / 256
        wd = cfg.weight_decay if cfg.weight_decay is not None else defaults.get("weight_decay", 1e-4)
        self.resolved = {"optimizer": opt_name, "lr": lr, "weight_decay": wd, "global_batch": global_batch,
                         "steps_per_epoch": steps_per_epoch, "total_steps": total_steps, "warmup_steps": warmup_steps,
                         "mixed_precision": acc.mixed_precision, "num_processes": world}

        # under DDP each process would normalise with its own slice's statistics: a different model
        # from the 1-process run on the same global batch (tests/test_distributed_methods.py)
        synced = cfg.sync_batchnorm if cfg.sync_batchnorm is not None else world > 1
        if synced:
            from multissl.sync_batchnorm import convert_sync_batchnorm

            convert_sync_batchnorm(self.method, device=acc.device)
        bind = getattr(self.method, "bind_adapter", None)
        if bind is not None:  # before prepare(): buffers it sets move to the device with the model
            bind(self.adapter)
        device = acc.device
        fused = fast_path.resolve_fused(cfg.fused_optimizer, opt_name, device)
        channels_last = fast_path.resolve_channels_last(cfg.channels_last, self.adapter.name, self.method, device)
        if channels_last:  # before prepare(): the move to the device keeps the memory format
            fast_path.model_to_channels_last(self.method)
        compile_opts = fast_path.compile_options(cfg.compile)
        if compile_opts is not None:  # in place: parameters and state-dict keys stay the method's own
            fast_path.compile_in_place(self.method, compile_opts)
        self.resolved.update(fused_optimizer=fused, channels_last=channels_last, compile=cfg.compile)
        if positives is not None:
            from multissl.positives import records_with_partner

            self.resolved["positives"] = {"per_record": int(positives.shape[1]),
                                          "records_with_partner": records_with_partner(positives)}
        optimizer = build_optimizer(self.method, opt_name, lr, wd, cfg.momentum, fused=fused)
        optimizer_kernels = fast_path.kernel_flags(optimizer)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(total_steps, warmup_steps, cfg.min_lr_ratio))
        model, optimizer = acc.prepare(self.method, optimizer)
        # The scheduler is stepped once per optimiser step by us (Accelerate's wrapper would step it
        # num_processes times). It is *not* registered for checkpointing: Accelerate reloads
        # registered objects with a full unpickler (weights_only=False), and its state is a pure
        # function of the step anyway, restored below from trainer_state.json.
        method = acc.unwrap_model(model)

        on_device = cfg.data_on_device and not streaming
        if on_device is None and not streaming:
            on_device = device.type == "cuda" and _nbytes(prepared) < 2 * 1024**3
        data = to_device(prepared, device) if on_device else prepared
        loader = None if streaming else self._in_memory_loader(data, n, on_device, device, total_steps, global_batch,
                                                              per_proc, rank, positives)

        step = 0
        if not cfg.resume and self.latest_checkpoint() is not None:
            # never mix a new run's checkpoints with an old one's, nor delete them silently
            if not cfg.overwrite:
                raise ConfigError(f"{self._checkpoint_root()} holds checkpoints of an earlier run; "
                                  "resume it (resume=True / --resume) or start afresh (overwrite=True / --overwrite)")
            acc.wait_for_everyone()
            if acc.is_main_process:
                shutil.rmtree(self._checkpoint_root())
            acc.wait_for_everyone()
        if cfg.resume:
            ckpt = self.latest_checkpoint() if cfg.resume in (True, "latest") else Path(str(cfg.resume))
            if ckpt is None or not (Path(ckpt) / TRAINER_STATE).is_file():
                raise ConfigError(f"resume requested but no complete checkpoint found under {self._checkpoint_root()}")
            try:  # tensors only: Accelerate loads with torch.load(weights_only=True)
                acc.load_state(str(ckpt))
            except (pickle.UnpicklingError, RuntimeError, OSError, EOFError, ValueError) as e:
                first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
                raise DataError(f"{ckpt}: cannot load this checkpoint ({type(e).__name__}: {first}); "
                                "it may be damaged or tampered with") from None
            state = json.loads((Path(ckpt) / TRAINER_STATE).read_text())
            step = int(state["step"])
            self.history = list(state.get("history", []))
            # the optimizer's param groups (lr included) came back with load_state; the schedule
            # continues from the step
            scheduler.last_epoch = step
            scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]
            fast_path.restore_kernel_flags(optimizer, optimizer_kernels)  # this run's fused/foreach choice
            if acc.is_main_process:
                print(f"multissl: resumed from {ckpt} at step {step}")

        use_trackers = bool(getattr(acc, "log_with", None))  # what the Accelerator was built to log to
        if use_trackers:
            acc.init_trackers("multissl", config={k: v for k, v in {**asdict(cfg), **self.resolved}.items()
                                                  if isinstance(v, (int, float, str, bool))})
        checkpoint_every = cfg.checkpoint_every or steps_per_epoch
        progress = None
        if cfg.progress and acc.is_local_main_process:
            from tqdm.auto import tqdm

            progress = tqdm(total=total_steps, initial=step, desc="pretrain", unit="step", dynamic_ncols=True)

        model.train()
        epoch_loss, epoch_count, t_epoch, seen = 0.0, 0, time.perf_counter(), 0
        stream_batches = None
        while step < total_steps:
            epoch, step_in_epoch = divmod(step, steps_per_epoch)
            if step_in_epoch == 0:
                epoch_loss, epoch_count, t_epoch, seen = 0.0, 0, time.perf_counter(), 0
            if streaming:
                if stream_batches is None or step_in_epoch == 0:  # (re)start at this step's first batch
                    if stream_batches is not None:
                        stream_batches.close()
                    stream_batches = prepared.batches(epoch, step_in_epoch * cfg.grad_accum_steps, rank, world,
                                                      per_proc, cfg.seed, pin_memory=device.type == "cuda")
            logs: Dict[str, float] = {}
            for micro in range(cfg.grad_accum_steps):
                if streaming:
                    batch = to_device(next(stream_batches), device)
                else:
                    batch = loader.get(step * cfg.grad_accum_steps + micro)
                gen = step_generator(device, cfg.seed, step * cfg.grad_accum_steps + micro, rank)
                # masked methods take the adapter's tokens and draw their masks from the same
                # generator, so a seed reproduces them too
                tokens = getattr(method, "input_kind", "views") == "tokens"
                if tokens:
                    token_batch = self.adapter.tokens(batch, generator=gen)
                elif positives is not None:  # the loader put each record's partner in the second half
                    half = num_records(batch) // 2
                    views = [self.adapter.views(take(batch, part), n_views=1, generator=gen)[0]
                             for part in (slice(0, half), slice(half, 2 * half))]
                    if channels_last:
                        views = fast_path.views_to_channels_last(views)
                else:
                    views = self.adapter.views(batch, n_views=method.n_views, generator=gen)
                    if channels_last:
                        views = fast_path.views_to_channels_last(views)
                last = micro == cfg.grad_accum_steps - 1
                ctx = acc.no_sync(model) if (not last and world > 1) else nullcontext()
                with ctx:
                    with acc.autocast():
                        out = model(token_batch, generator=gen) if tokens else model(views)
                    loss = out["loss"]
                    if not torch.isfinite(loss):
                        raise FloatingPointError(f"loss became {loss.item()} at step {step}; lower the lr or check the data")
                    acc.backward(loss / cfg.grad_accum_steps)
                for k, v in out.items():
                    if torch.is_tensor(v) and v.numel() == 1:
                        logs[k] = logs.get(k, 0.0) + float(v.detach()) / cfg.grad_accum_steps
            if cfg.clip_grad_norm:
                acc.clip_grad_norm_(model.parameters(), cfg.clip_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            method.on_train_step_end(step / total_steps)

            seen += global_batch * cfg.grad_accum_steps
            epoch_loss += logs.get("loss", 0.0)
            epoch_count += 1
            if progress is not None:
                progress.update(1)
                rate = seen / max(1e-9, time.perf_counter() - t_epoch)
                progress.set_postfix(epoch=epoch + 1, loss=f"{logs.get('loss', 0.0):.4f}", samples_s=f"{rate:.0f}")
            if use_trackers and (step % cfg.log_every == 0):
                acc.log({**{f"train/{k}": v for k, v in logs.items()}, "train/lr": scheduler.get_last_lr()[0]}, step=step)

            end_of_epoch = step % steps_per_epoch == 0 or step == total_steps
            if end_of_epoch:
                record: Dict[str, Any] = {"epoch": epoch + 1, "step": step, "loss": epoch_loss / max(1, epoch_count),
                                          "lr": scheduler.get_last_lr()[0],
                                          "samples_per_s": seen / max(1e-9, time.perf_counter() - t_epoch)}
                if knn is not None and ((epoch + 1) % cfg.knn_every == 0 or step == total_steps):
                    if acc.is_main_process:
                        record["knn_acc"] = knn.evaluate(method.encoder, self.adapter, cfg.knn_k, cfg.knn_temperature)
                        if progress is not None:
                            progress.write(f"epoch {epoch + 1}: loss {record['loss']:.4f}  kNN acc {record['knn_acc']:.4f}")
                    acc.wait_for_everyone()
                self.history.append(record)
                if use_trackers:
                    acc.log({f"epoch/{k}": v for k, v in record.items() if k not in ("epoch", "step")}, step=step)
            if self.config.output_dir and (step % checkpoint_every == 0 or step == total_steps):
                self._save_checkpoint(acc, step)
        if stream_batches is not None:
            stream_batches.close()  # stops its prefetch thread
        if progress is not None:
            progress.close()
        if use_trackers:
            # not acc.end_training(): it also destroys the process group, which the caller
            # (pretrain saving the model on the main process, then a barrier) still needs
            for tracker in acc.trackers:
                tracker.finish()
        model.eval()
        fast_path.uncompile(self.method)
        if channels_last:
            fast_path.model_to_contiguous(self.method)
        if synced:  # the trained model holds plain BatchNorm layers again (same weights)
            from multissl.sync_batchnorm import revert_sync_batchnorm

            revert_sync_batchnorm(self.method)
        return self.history

    def _check_positives(self, positives: Any, n: int, streaming: bool) -> torch.Tensor:
        from multissl.positives import check_positives

        if streaming:
            raise ConfigError("positives need the records in memory; they are not supported with streaming")
        method = self.method
        if getattr(method, "input_kind", "views") != "views" or method.n_views != 2:
            raise ConfigError(f"positives pair two records as two views; method {method.name!r} does not take "
                              "two views (use a Siamese method: simclr, moco, byol, simsiam, barlow_twins, vicreg, vibcreg)")
        return check_positives(positives, n)

    def _in_memory_loader(self, data: Prepared, n: int, on_device: bool, device: torch.device, total_steps: int,
                          global_batch: int, per_proc: int, rank: int,
                          positives: Optional[torch.Tensor] = None) -> fast_path.DevicePrefetcher:
        """Micro-batch ``i`` of the run (``i = step * grad_accum_steps + micro``) as a function of
        ``i`` alone: this rank's slice of batch ``b`` of the epoch's permutation (followed, with
        ``positives``, by one partner of each of its records, drawn with a generator seeded by
        ``i``). Host data on a CUDA device is prefetched one batch ahead (pinned, non-blocking)."""
        from multissl.positives import draw_partners

        cfg = self.config
        steps_per_epoch = self.resolved["steps_per_epoch"]
        perms: Dict[int, torch.Tensor] = {}

        def fetch(i: int) -> Prepared:
            step, micro = divmod(i, cfg.grad_accum_steps)
            epoch, step_in_epoch = divmod(step, steps_per_epoch)
            if epoch not in perms:  # kept: this epoch's and (while prefetching across the boundary) the last
                for old in [e for e in perms if e < epoch - 1]:
                    del perms[old]
                perms[epoch] = epoch_permutation(n, cfg.seed, epoch)
            b = step_in_epoch * cfg.grad_accum_steps + micro
            idx = perms[epoch][b * global_batch + rank * per_proc: b * global_batch + (rank + 1) * per_proc]
            if positives is not None:
                gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + i * 7_919 + rank)
                idx = torch.cat([idx, draw_partners(positives, idx, gen)])
            return take(data, idx.to(device) if on_device else idx)

        ahead = not on_device and device.type == "cuda"
        return fast_path.DevicePrefetcher(fetch, device, stop=total_steps * cfg.grad_accum_steps, ahead=ahead)


def use_deterministic_kernels(warn_only: bool = False) -> None:
    """Ask torch for deterministic kernels for the rest of the process (an error where an op has
    none, a warning with ``warn_only``): ``torch.use_deterministic_algorithms(True)``, cuDNN
    without autotuning, and ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` unless set (cuBLAS reads it at
    its first use)."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=warn_only)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True


def _nbytes(prepared: Prepared) -> int:
    if isinstance(prepared, dict):
        return sum(v.numel() * v.element_size() for v in prepared.values())
    return prepared.numel() * prepared.element_size()
