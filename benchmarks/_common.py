"""Shared pieces of the side-by-side benchmarks (multissl vs lightly).

Nothing here is part of multissl; it is the harness: data loading, the lightly side's model and
training loop, memory meters, machine description and table printing. Both benchmark scripts
import it (``python benchmarks/<script>.py`` puts this folder on ``sys.path``).

Fairness rules the helpers enforce:

- the lightly backbone is torchvision's ``resnet18`` built with torchvision's own layer builder,
  modified exactly as multissl's image encoder (3x3 stem, stride 1, no max-pool, ``fc`` =
  identity, optional width multiplier), and it is given multissl's *initial weights*
  (``load_state_dict(strict=True)``), so both sides start from the same network;
- the lightly optimiser and schedule are built by the same functions the multissl Trainer uses
  (``multissl.trainer.build_optimizer`` / ``warmup_cosine``), so parameter groups (no weight
  decay on biases and normalisation parameters), learning rate and per-step cosine are identical.
"""
from __future__ import annotations

import gzip
import io
import json
import os
import platform
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

REPO = Path(__file__).resolve().parent.parent
CIFAR_DIR = Path(os.environ.get("MULTISSL_SHARED", "/work/shared")) / "data" / "cifar10_jpeg_parquet"
MNIST_DIR = Path(os.environ.get("MULTISSL_SHARED", "/work/shared")) / "data" / "mnist_test"

# lightly's SimCLR recipe for CIFAR-10 (lightly benchmarks/imagenette+cifar10: SGD, lr 6e-2 per 128
# images, momentum 0.9, weight decay 5e-4, cosine schedule; projection head 512-512-128 for a
# ResNet-18; NT-Xent temperature 0.5). Both sides use exactly these.
SIMCLR = {"temperature": 0.5, "proj_out": 128, "base_lr": 0.06, "lr_batch": 128, "momentum": 0.9, "weight_decay": 5e-4}


def simclr_lr(batch_size: int) -> float:
    return SIMCLR["base_lr"] * batch_size / SIMCLR["lr_batch"]


# ----------------------------------------------------------------------------------------------
# environment
# ----------------------------------------------------------------------------------------------
def set_threads(n: int) -> None:
    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(max(1, n))
    except RuntimeError:  # already set once in this process
        pass


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo (else what ``platform`` knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(device: str) -> Dict[str, Any]:
    import lightly

    import multissl

    info: Dict[str, Any] = {
        "device": device,
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "lightly": lightly.__version__,
        "multissl": multissl.__version__,
        "loadavg_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "nice": os.nice(0),
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def write_json(path: str, payload: Dict[str, Any]) -> None:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(p.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=_json_default) + "\n")
    os.replace(tmp, p)


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, (Path, torch.device)):
        return str(o)
    if isinstance(o, (tuple, set)):
        return list(o)
    return str(o)


def print_table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    cells = [[str(c) for c in header]] + [[_fmt(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    text = "\n".join(lines)
    print(text, flush=True)
    return text


def _fmt(c: Any) -> str:
    if isinstance(c, float):
        return f"{c:.3f}" if abs(c) < 10 else f"{c:.1f}"
    return "-" if c is None else str(c)


# ----------------------------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------------------------
def load_cifar_shard(n: int, shard: str = "train-00000-of-00005.parquet", data_dir: Path = CIFAR_DIR
                     ) -> Tuple[np.ndarray, np.ndarray]:
    """The first ``n`` images of one Parquet shard, JPEG-decoded once: uint8 (n, 32, 32, 3), labels."""
    import pyarrow.parquet as pq
    from PIL import Image

    table = pq.read_table(str(Path(data_dir) / shard), columns=["image", "label"]).slice(0, n)
    images = table.column("image").to_pylist()
    x = np.stack([np.asarray(Image.open(io.BytesIO(r["bytes"])).convert("RGB")) for r in images])
    y = np.asarray(table.column("label").to_pylist(), dtype=np.int64)
    return x, y


def load_cifar_split(split: str, data_dir: Path = CIFAR_DIR, limit: Optional[int] = None
                     ) -> Tuple[np.ndarray, np.ndarray]:
    """A whole CIFAR-10 split (``train``: the 5 shards, 50,000 images; ``test``: 10,000), JPEG-decoded
    once, in shard order: uint8 (n, 32, 32, 3) and int64 labels. ``limit`` keeps the first images."""
    shards = sorted(Path(data_dir).glob(f"{split}-*.parquet"))
    if not shards:
        raise SystemExit(f"no {split}-*.parquet files in {data_dir}")
    xs, ys, have = [], [], 0
    for shard in shards:
        x, y = load_cifar_shard(limit - have if limit is not None else 1 << 30, shard.name, data_dir)
        xs.append(x)
        ys.append(y)
        have += len(x)
        if limit is not None and have >= limit:
            break
    return np.concatenate(xs), np.concatenate(ys)


def load_mnist(data_dir: Path = MNIST_DIR) -> Tuple[np.ndarray, np.ndarray]:
    """MNIST test set from the IDX gz files: uint8 (10000, 28, 28) and int64 labels."""
    d = Path(data_dir)
    x = np.frombuffer(gzip.open(d / "t10k-images-idx3-ubyte.gz").read(), np.uint8, offset=16).reshape(-1, 28, 28)
    y = np.frombuffer(gzip.open(d / "t10k-labels-idx1-ubyte.gz").read(), np.uint8, offset=8).astype(np.int64)
    return x.copy(), y


class PILDataset(torch.utils.data.Dataset):
    """Decoded images as PIL, a transform per item: what a lightly user's Dataset does
    (``LightlyDataset`` additionally decodes the file in ``__getitem__``; ours are decoded once,
    as the multissl side's are, so neither side pays JPEG decoding in the measured loop)."""

    def __init__(self, images: np.ndarray, transform: Callable) -> None:
        from PIL import Image

        mode = "L" if images.ndim == 3 else "RGB"
        self.images = [Image.fromarray(a, mode=mode) for a in images]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> Any:
        return self.transform(self.images[i])


# ----------------------------------------------------------------------------------------------
# models
# ----------------------------------------------------------------------------------------------
def torchvision_resnet18(width: float = 1.0, in_channels: int = 3) -> nn.Module:
    """torchvision's ResNet-18 with the small-image stem (3x3 conv, stride 1, no max-pool) and
    ``fc`` = identity -- the backbone lightly's CIFAR-10 examples use. ``width`` scales every
    stage (64 * width base channels); layers are still made by torchvision's ``_make_layer``."""
    import torchvision
    from torchvision.models.resnet import BasicBlock

    model = torchvision.models.resnet18()
    base = max(1, int(round(64 * width)))
    model.conv1 = nn.Conv2d(in_channels, base, kernel_size=3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    model.fc = nn.Identity()
    if base != 64:
        model.bn1 = nn.BatchNorm2d(base)
        model.inplanes = base
        model.layer1 = model._make_layer(BasicBlock, base, 2)
        model.layer2 = model._make_layer(BasicBlock, base * 2, 2, stride=2)
        model.layer3 = model._make_layer(BasicBlock, base * 4, 2, stride=2)
        model.layer4 = model._make_layer(BasicBlock, base * 8, 2, stride=2)
    for m in model.modules():  # torchvision's initialisation (overwritten by copy_weights anyway)
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)
    model.embed_dim = base * 8
    return model


def copy_weights(src: nn.Module, dst: nn.Module) -> None:
    """Give ``dst`` exactly ``src``'s parameters and buffers (same names and shapes required)."""
    dst.load_state_dict({k: v.detach().clone() for k, v in src.state_dict().items()}, strict=True)


def count_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


class LightlySimCLR(nn.Module):
    """lightly's SimCLR as in its examples: backbone -> SimCLRProjectionHead, NTXentLoss."""

    def __init__(self, backbone: nn.Module, embed_dim: int, hidden_dim: int, out_dim: int, temperature: float) -> None:
        super().__init__()
        from lightly.loss import NTXentLoss
        from lightly.models.modules import SimCLRProjectionHead

        self.backbone = backbone
        self.projection_head = SimCLRProjectionHead(embed_dim, hidden_dim, out_dim)
        self.criterion = NTXentLoss(temperature=temperature)

    def forward(self, x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
        z0 = self.projection_head(self.backbone(x0).flatten(start_dim=1))
        z1 = self.projection_head(self.backbone(x1).flatten(start_dim=1))
        return self.criterion(z0, z1)


def lightly_transform(input_size: int, normalize: Optional[Dict[str, List[float]]] = None) -> Any:
    """``SimCLRTransform(input_size, cj_strength=0.5, gaussian_blur=0.0)``: lightly's documented
    setting for CIFAR-sized images (everything else at lightly's defaults)."""
    from lightly.transforms import SimCLRTransform
    from lightly.transforms.utils import IMAGENET_NORMALIZE

    return SimCLRTransform(input_size=input_size, cj_strength=0.5, gaussian_blur=0.0,
                           normalize=normalize or IMAGENET_NORMALIZE)


@dataclass
class StepClock:
    """Wall-clock timestamps at the end of every optimiser step (after a device sync when
    ``sync`` is set, only at the steps that bound the measured window)."""

    warmup: int
    measure: int
    device: torch.device = torch.device("cpu")
    times: Dict[int, float] = field(default_factory=dict)
    step: int = 0
    on_step: Optional[Callable[[int], None]] = None

    def tick(self) -> None:
        self.step += 1
        if self.step in (self.warmup, self.warmup + self.measure):
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self.times[self.step] = time.perf_counter()
        if self.on_step is not None:
            self.on_step(self.step)

    def seconds(self) -> float:
        return self.times[self.warmup + self.measure] - self.times[self.warmup]


def train_lightly(model: LightlySimCLR, loader: Iterable, *, epochs: int, total_steps: int, lr: float,
                  device: torch.device, warmup_steps: int = 0, bf16: bool = False, channels_last: bool = False,
                  clock: Optional[StepClock] = None, log: Optional[Callable[[str], None]] = None) -> List[float]:
    """The training loop of lightly's examples, with multissl's optimiser and schedule builders
    (identical parameter groups and per-step warmup + cosine). Returns the mean loss per epoch.
    ``bf16`` / ``channels_last``: the two lines an expert adds (autocast, NHWC model and inputs)."""
    from multissl.trainer import build_optimizer, warmup_cosine

    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model.to(device, memory_format=fmt).train()
    opt = build_optimizer(model, "sgd", lr, SIMCLR["weight_decay"], SIMCLR["momentum"])
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(total_steps, warmup_steps, 0.0))
    step, history = 0, []
    non_blocking = device.type == "cuda"
    for epoch in range(epochs):
        total, count = torch.zeros((), device=device), 0
        t0 = time.perf_counter()
        for views in loader:
            x0, x1 = (v.to(device, non_blocking=non_blocking).contiguous(memory_format=fmt) for v in views[:2])
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                loss = model(x0, x1)
            loss.backward()
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            total += loss.detach()
            count += 1
            step += 1
            if clock is not None:
                clock.tick()
            if step >= total_steps:
                break
        history.append(float(total) / max(1, count))
        if log is not None:
            log(f"  lightly epoch {epoch + 1}/{epochs}: loss {history[-1]:.4f}  "
                f"{count * getattr(loader, 'batch_size', 0) / (time.perf_counter() - t0):.1f} img/s")
        if step >= total_steps:
            break
    return history


# ----------------------------------------------------------------------------------------------
# memory
# ----------------------------------------------------------------------------------------------
def _uss_kib(pid: int) -> int:
    """Unique set size of a process in KiB (Private_Clean + Private_Dirty from smaps_rollup):
    the memory only this process holds. For a forked DataLoader worker that is what it adds;
    the copy-on-write pages it shares with the trainer are already in the trainer's RSS."""
    total = 0
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith(("Private_Clean:", "Private_Dirty:")):
                total += int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return total


def _malloc_trim() -> None:
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def _children(pid: int) -> List[int]:
    try:
        import psutil

        return [c.pid for c in psutil.Process(pid).children(recursive=True)]
    except Exception:  # psutil missing or a child exited meanwhile
        return []


class MemoryMeter:
    """Peak memory of one side of a benchmark.

    CPU, this process: the kernel's resident-set high-water mark ``VmHWM``, reset when the side
    starts (``echo 5 > /proc/self/clear_refs``) and read when it ends, minus ``VmRSS`` at the
    start (after ``gc.collect()`` and glibc ``malloc_trim(0)``, so memory the previous run freed
    but the allocator kept does not hide this run's growth). Exact and free: nothing samples
    the training process. CPU, DataLoader workers: a thread samples the proportional set size
    (PSS, ``/proc/<pid>/smaps_rollup``; shared copy-on-write pages split between sharers, so
    forked workers are not double counted) of the child processes every ``interval`` s; their
    peak sum is added. Not used: tracemalloc (sees only Python's allocator, not torch's tensor
    memory); ``ru_maxrss`` (a high-water mark that cannot be reset, so in one process the second
    side would inherit the first side's peak); sampling the main process's smaps (each read of a
    2 GB process takes ~20 ms under the mm lock and measurably slowed training).
    GPU: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats`` (tensor memory
    held by the caching allocator, the number PyTorch users quote).
    """

    def __init__(self, device: torch.device, interval: float = 0.5) -> None:
        self.device = device
        self.interval = interval
        self.baseline_rss_kib = 0
        self.hwm_kib: Optional[int] = None
        self.peak_workers_kib = 0
        self.peak_main_sampled_kib = 0
        self._hwm_reset = False
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def _sample(self) -> None:
        pid = os.getpid()
        while not self._stop.is_set():
            kids = _children(pid)
            if kids:
                self.peak_workers_kib = max(self.peak_workers_kib, sum(_uss_kib(c) for c in kids))
            if not self._hwm_reset:  # fallback when clear_refs is not writable: cheap VmRSS samples
                self.peak_main_sampled_kib = max(self.peak_main_sampled_kib, _status_kib(pid, "VmRSS"))
            self._stop.wait(self.interval)

    def __enter__(self) -> "MemoryMeter":
        import gc

        gc.collect()
        _malloc_trim()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
            self.baseline_cuda = torch.cuda.memory_allocated(self.device)
        try:
            Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
            self._hwm_reset = True
        except OSError:
            self._hwm_reset = False
        self.baseline_rss_kib = _status_kib(os.getpid(), "VmRSS")
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.hwm_kib = _status_kib(os.getpid(), "VmHWM") if self._hwm_reset else self.peak_main_sampled_kib

    def result(self) -> Dict[str, Any]:
        main = max(0, (self.hwm_kib or 0) - self.baseline_rss_kib)
        out: Dict[str, Any] = {
            "cpu_peak_above_baseline_mib": round((main + self.peak_workers_kib) / 1024, 1),
            "cpu_main_peak_rss_above_baseline_mib": round(main / 1024, 1),
            "cpu_main_peak_rss_mib": round((self.hwm_kib or 0) / 1024, 1),
            "cpu_workers_peak_uss_mib": round(self.peak_workers_kib / 1024, 1),
            "cpu_method": ("main process: VmHWM (reset via /proc/self/clear_refs) minus VmRSS at start"
                           if self._hwm_reset else "main process: sampled VmRSS peak minus VmRSS at start")
                          + f"; DataLoader workers: peak summed USS (private pages) sampled every {self.interval}s",
        }
        if self.device.type == "cuda":
            out["cuda_max_allocated_mib"] = round(torch.cuda.max_memory_allocated(self.device) / 2**20, 1)
            out["cuda_max_above_baseline_mib"] = round((torch.cuda.max_memory_allocated(self.device) - self.baseline_cuda) / 2**20, 1)
            out["cuda_method"] = "torch.cuda.max_memory_allocated after reset_peak_memory_stats"
        return out


def _status_kib(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)
