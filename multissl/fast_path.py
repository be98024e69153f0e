"""The trainer's fast-path switches: mixed precision, fused optimiser kernels, channels_last,
``torch.compile`` and the one-batch host-to-device prefetch.

Each is a ``TrainConfig`` field (``mixed_precision``, ``fused_optimizer``, ``channels_last``,
``compile``; the prefetch is automatic) whose automatic default turns it on where it was
measured to pay off. On a CUDA device: bf16 autocast, fused optimisers, channels_last for
conv nets. On a CPU: channels_last for image/video conv nets (oneDNN's NHWC kernels, 6-29 %
faster steps here), and bf16 autocast for them when the CPU has native bf16 dot products
(AVX-512 BF16: Intel with AMX, 2.3-3.7x faster steps; AMD Zen 4, 1.5-3.2x for 2-D conv nets;
docs/training.md). Fused/foreach optimiser kernels and channels_last convolutions reorder
floating-point work (results equal the plain run to rounding), ``torch.compile`` traces the
same graph, and the prefetch only moves *when* a batch is copied
(tests/test_trainer_fast_path.py); bf16 autocast is the one switch that changes the numbers
(``mixed_precision="no"`` turns it off).
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import torch
from torch import nn

from multissl.adapters.base import Prepared, to_device
from multissl.errors import ConfigError

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


# ---------------------------------------------------------------------- mixed precision
#: below this many pixels per side a conv net's steps are too small for bf16 to pay on a CPU
#: (8x8 digits: 13 % slower in bf16; 32x32 CIFAR: 2.4x faster)
CPU_BF16_MIN_SIDE = 16


def cpu_has_bf16_matmul() -> bool:
    """Whether this CPU computes bf16 dot products natively (AVX-512 BF16: Intel Cooper Lake,
    Sapphire Rapids and later, whose AMX tiles oneDNN also uses; AMD Zen 4 and later), where
    oneDNN's bf16 convolutions beat float32 about 2-4x (docs/training.md, measured on an AMX Xeon
    and on a Zen 4 EPYC). Without it bf16 is emulated and slower than float32."""
    cpu = getattr(torch, "cpu", None)
    try:
        return bool(cpu._is_avx512_bf16_supported())
    except AttributeError:  # a torch without this probe: stay in float32
        return False


def cpu_bf16_units() -> str:
    """What :func:`cpu_has_bf16_matmul` found, in words: ``"amx"``, ``"avx512_bf16"`` or ``"none"``."""
    if not cpu_has_bf16_matmul():
        return "none"
    try:
        return "amx" if torch.cpu._is_amx_tile_supported() else "avx512_bf16"
    except AttributeError:
        return "avx512_bf16"


def resolve_mixed_precision(choice: str, adapter_name: str, model: nn.Module, on_cpu: bool,
                            spatial_side: Optional[int] = None) -> str:
    """``"auto"``: bf16 on a GPU that supports it; on a CPU, bf16 for image and video conv nets
    (inputs at least :data:`CPU_BF16_MIN_SIDE` pixels a side, when known) if the CPU has native
    bf16 dot products (:func:`cpu_has_bf16_matmul`) -- for nets with 3-D convolutions only on
    AMX CPUs: on AVX-512 BF16 without AMX (AMD Zen 4), torch 2.11's oneDNN bf16 Conv3d backward
    returns NaN gradients at random for clips 2 frames deep (see docs/training.md); full
    precision everywhere else."""
    if choice != "auto":
        return choice
    if not on_cpu:
        return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"
    if (adapter_name in ("image", "video") and has_conv(model) and cpu_has_bf16_matmul()
            and (spatial_side is None or spatial_side >= CPU_BF16_MIN_SIDE)
            and (not has_conv3d(model) or cpu_bf16_units() == "amx")):
        return "bf16"
    return "no"


def spatial_side(prepared: Any) -> Optional[int]:
    """The smaller of the last two dimensions of the prepared images/clips (None when unknown,
    e.g. a stream)."""
    tensors = prepared.values() if isinstance(prepared, dict) else [prepared]
    for t in tensors:
        if isinstance(t, torch.Tensor) and t.ndim >= 4:
            return int(min(t.shape[-2:]))
    return None


# ---------------------------------------------------------------------- fused optimiser kernels
def resolve_fused(choice: Optional[bool], optimizer: str, device: torch.device) -> bool:
    """Whether to build AdamW/SGD with ``fused=True``. None: on CUDA only. LARS adapts each
    layer's gradient in Python before its SGD step, so it has no fused form."""
    if choice is None:
        return device.type == "cuda" and optimizer in ("adamw", "sgd")
    if choice and optimizer not in ("adamw", "sgd"):
        raise ConfigError(f"fused_optimizer=True applies to adamw and sgd; {optimizer!r} keeps its own step "
                          "(leave fused_optimizer unset)")
    return bool(choice)


def restore_kernel_flags(optimizer: torch.optim.Optimizer, flags: List[Dict[str, Any]]) -> None:
    """After ``load_state_dict`` the param groups carry the *checkpoint's* ``fused``/``foreach``
    flags (a run saved on a GPU would come back fused on a CPU and vice versa); put this run's
    back. A fused step keeps its ``step`` counters as float32 on the parameter's device."""
    optimizer = getattr(optimizer, "optimizer", optimizer)  # Accelerate's wrapper -> the torch optimiser
    for group, saved in zip(optimizer.param_groups, flags):
        group.update(saved)
        for p in group["params"]:
            state = optimizer.state.get(p, {})
            if "step" in state and torch.is_tensor(state["step"]) and group.get("fused"):
                state["step"] = state["step"].to(device=p.device, dtype=torch.float32)


def kernel_flags(optimizer: torch.optim.Optimizer) -> List[Dict[str, Any]]:
    return [{k: g[k] for k in ("fused", "foreach") if k in g} for g in optimizer.param_groups]


# ---------------------------------------------------------------------- channels_last
def has_conv(module: nn.Module) -> bool:
    return any(isinstance(m, (nn.Conv2d, nn.Conv3d)) for m in module.modules())


def has_conv3d(module: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv3d) for m in module.modules())


def resolve_channels_last(choice: Optional[bool], adapter_name: str, model: nn.Module, device: torch.device) -> bool:
    """None: on for image and video runs whose model has 2-D/3-D convolutions, on CUDA (cuDNN's
    NHWC kernels are the fast ones under bf16/fp16 on tensor cores) and on a CPU with oneDNN
    (its NHWC convolutions: 6-29 % faster SimCLR steps for 8-64 px images and clips here)."""
    if choice is None:
        fast_device = device.type == "cuda" or (device.type == "cpu" and torch.backends.mkldnn.is_available())
        return fast_device and adapter_name in ("image", "video") and has_conv(model)
    return bool(choice)


def _channels_last(t: torch.Tensor) -> torch.Tensor:
    if t.ndim == 4:
        return t.contiguous(memory_format=torch.channels_last)
    if t.ndim == 5:
        return t.contiguous(memory_format=torch.channels_last_3d)
    return t


def model_to_channels_last(model: nn.Module) -> nn.Module:
    """4-D parameters and buffers to channels_last, 5-D ones (Conv3d) to channels_last_3d, in
    place (``Module.to(memory_format=...)`` only knows one format for both ranks)."""
    return model._apply(lambda t: _channels_last(t) if t.is_floating_point() else t)


def model_to_contiguous(model: nn.Module) -> nn.Module:
    """Undo :func:`model_to_channels_last` (the trained model is handed back in the default order)."""
    return model._apply(lambda t: t.contiguous() if t.is_floating_point() else t)


def views_to_channels_last(views: Any) -> Any:
    """The 4-D/5-D float tensors of a view list (or dict) in channels_last order; token ids,
    series and masks pass unchanged."""
    if torch.is_tensor(views):
        return _channels_last(views) if views.is_floating_point() else views
    if isinstance(views, (list, tuple)):
        return type(views)(views_to_channels_last(v) for v in views)
    if isinstance(views, dict):
        return {k: views_to_channels_last(v) for k, v in views.items()}
    return views


# ---------------------------------------------------------------------- torch.compile
def compile_options(choice: Union[bool, str]) -> Optional[Dict[str, Any]]:
    """``torch.compile`` keyword arguments for ``TrainConfig.compile``: False -> None; True ->
    the default (inductor); a mode (``"max-autotune"``, ...) or a backend name (``"aot_eager"``
    traces without generating C++/Triton code, so it needs no compiler)."""
    if choice is False or choice is None:
        return None
    if choice is True:
        return {}
    if isinstance(choice, str):
        if choice in COMPILE_MODES:
            return {"mode": choice}
        import torch._dynamo

        backends = set(torch._dynamo.list_backends(exclude_tags=()))
        if choice in backends:
            return {"backend": choice}
        raise ConfigError(f"compile must be true, false, a mode ({', '.join(COMPILE_MODES)}) or a torch.compile "
                          f"backend (torch._dynamo.list_backends(None), e.g. inductor, aot_eager, cudagraphs); "
                          f"got {choice!r}")
    raise ConfigError(f"compile must be true, false or a mode/backend name, got {choice!r}")


def compile_in_place(model: nn.Module, options: Dict[str, Any]) -> None:
    """``nn.Module.compile``: the module's own call is compiled, its parameters stay where they
    are, so state-dict keys (checkpoints, ``save_pretrained``) have no ``_orig_mod.`` prefix.
    Graph breaks (e.g. a ``torch.Generator`` argument) fall back to eager for that part."""
    model.compile(**options)


def uncompile(model: nn.Module) -> None:
    """Undo :func:`compile_in_place` (the trained method is handed back as a plain module)."""
    if getattr(model, "_compiled_call_impl", None) is not None:
        model._compiled_call_impl = None


# ---------------------------------------------------------------------- host -> device prefetch
class DevicePrefetcher:
    """Batches ``0, 1, 2, ...`` of a run, by index, on ``device``.

    ``fetch(i)`` returns batch ``i`` on the host. With ``ahead`` (the trainer sets it for host
    data on a CUDA device) batch ``i + 1`` is fetched and its copy issued when batch ``i`` is
    handed out — before the step on batch ``i`` is queued. On CUDA the batch is gathered into
    pinned memory and copied with ``non_blocking=True`` on a side stream, so the copy runs
    while the GPU computes the step, and the step's stream waits for it. Without ``ahead``
    ``get(i)`` is ``to_device(fetch(i))``.

    Which batch is number ``i`` is the caller's function of ``i`` alone, so fetching ahead
    changes no result; a ``get`` out of sequence (after a resume) fetches synchronously.
    """

    def __init__(self, fetch: Callable[[int], Prepared], device: torch.device, stop: int, ahead: bool) -> None:
        self.fetch = fetch
        self.device = device
        self.stop = stop
        self.ahead = ahead
        self.stream = torch.cuda.Stream(device=device) if ahead and device.type == "cuda" else None
        self._next: Optional[Tuple[int, Prepared]] = None  # (index, batch issued ahead)
        self.prefetched = 0  # batches served from a fetch ahead (tests, diagnostics)

    def _issue(self, i: int) -> Prepared:
        host = self.fetch(i)
        if self.stream is None:
            return to_device(host, self.device)
        host = _pin(host)
        with torch.cuda.stream(self.stream):
            return to_device(host, self.device, non_blocking=True)

    def get(self, i: int) -> Prepared:
        if not self.ahead:
            return to_device(self.fetch(i), self.device)
        if self._next is not None and self._next[0] == i:
            batch = self._next[1]
            self.prefetched += 1
        else:
            batch = self._issue(i)
        self._next = None
        if self.stream is not None:
            current = torch.cuda.current_stream(self.device)
            current.wait_stream(self.stream)  # batch i's copy completes before the step reads it
            for t in _tensors(batch):
                t.record_stream(current)  # its memory is not reused while the step still reads it
        if i + 1 < self.stop:
            self._next = (i + 1, self._issue(i + 1))
        return batch


def _pin(batch: Prepared) -> Prepared:
    if isinstance(batch, dict):
        return {k: v.pin_memory() for k, v in batch.items()}
    return batch.pin_memory()


def _tensors(batch: Prepared) -> List[torch.Tensor]:
    return list(batch.values()) if isinstance(batch, dict) else [batch]
