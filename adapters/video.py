"""The video adapter: uint8 clip arrays, ``.npy`` files and encoded video files -> uint8 tensors,
then clip sampling and clip-consistent augmentation on the device, and 3D CNN / video ViT encoders.

    >>> from multissl.adapters import get_adapter
    >>> adapter = get_adapter("video", clip_length=16)       # or VideoAdapter(frame_size=64, ...)
    >>> data = adapter.prepare(clips)                        # {"video": uint8 (N, T, C, H, W), "length": (N,)}
    >>> adapter.fit(data)                                    # per-channel mean/std into the config
    >>> v1, v2 = adapter.views(take(data, idx), generator=g) # float (B, C, clip_length, H, W) each
    >>> encoder = adapter.build_encoder()                    # small 3D CNN -> (B, 256)

Accepted data: a uint8 array or tensor (N, T, H, W, C), (N, T, C, H, W) or (N, T, H, W)
(grayscale) with C = 1 or 3; a ``.npy`` file of such an array; a list of (T_i, H, W, C) arrays
of different lengths; a video file, a folder of video files or a list of paths (decoded with PyAV, see :mod:`multissl.adapters.video_io`). Videos of
different lengths are padded (``length`` holds the real frame counts); frames of a different size
are resized to ``frame_size``. See ``docs/adapters/video.md``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn

from multissl.adapters.base import Adapter
from multissl.adapters.image_transforms import AugmentParams, resize
from multissl.adapters.video_encoders import (TOKEN_ENCODERS, VIDEO_ENCODERS, build_video_encoder, patchify_clips,
                                              tube_groups)
from multissl.adapters.video_io import is_video_file, list_video_files, read_npy, read_video_file
from multissl.adapters.video_transforms import augment_clips, clip_starts, gather_clips
from multissl.bad_records import BadRecordPolicy, prepare_scope
from multissl.errors import ConfigError, DataError
from multissl.tokens import TokenBatch

PRESETS = ("simclr", "light", "none")
LAYOUTS = ("NTHWC", "NTCHW")
_AUG_KEYS = ("crop_scale", "crop_ratio", "hflip_prob", "cj_prob", "cj_strength", "gray_prob")
_DATA_KEYS = ("clip_length", "frame_stride", "temporal_jitter", "frame_size", "channels", "layout", "mean", "std",
              "preset", "tubelet", "patch_size")
CONFIG_KEYS = _DATA_KEYS + _AUG_KEYS

#: augmentation settings of each preset (before the config's overrides)
PRESET_SETTINGS: Dict[str, Dict[str, Any]] = {
    # SimCLR's image recipe applied per clip, as CVRL (Qian et al. 2021) does for video; milder
    # colour (strength 0.5) and no blur, as for the small images this adapter targets by default
    "simclr": dict(crop_scale=(0.3, 1.0), crop_ratio=(3 / 4, 4 / 3), hflip_prob=0.5, cj_prob=0.8, cj_strength=0.5,
                   gray_prob=0.2),
    # crop + flip only: fine-tuning and the pretext tasks
    "light": dict(crop_scale=(0.5, 1.0), crop_ratio=(3 / 4, 4 / 3), hflip_prob=0.5, cj_prob=0.0, cj_strength=0.0,
                  gray_prob=0.0),
    "none": dict(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), hflip_prob=0.0, cj_prob=0.0, cj_strength=0.0,
                 gray_prob=0.0),
}

Clips = Dict[str, torch.Tensor]


def _jsonable(v: Any) -> Any:
    if isinstance(v, (tuple, list)):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    return v


def _positive_int(key: str, v: Any) -> None:
    if v is not None and (isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1):
        raise ConfigError(f"{key} must be a positive integer, got {v!r}")


class VideoAdapter(Adapter):
    """Videos as uint8 (N, T, C, H, W) plus real lengths; clips sampled and augmented on the device.

    Config options (JSON-serialisable; ``None`` means "infer" or "preset default"):

    - ``clip_length``: frames per clip (default: the shortest video of the first prepared data);
    - ``frame_stride``: step between the frames of a clip (default 1);
    - ``temporal_jitter``: training clips start at a random frame (default True); evaluation
      clips are always centred;
    - ``frame_size``: int or [H, W] frames are resized to (default: the first video's size);
    - ``channels``: 1 or 3 (inferred from the first data); ``layout``: ``"NTHWC"`` or ``"NTCHW"``
      for arrays whose layout is ambiguous (both dims 2 and 4 are 1 or 3);
    - ``mean``, ``std``: per-channel statistics learnt by :meth:`fit`;
    - ``preset``: ``"simclr"``, ``"light"`` or ``"none"``; overrides ``crop_scale``,
      ``crop_ratio``, ``hflip_prob``, ``cj_prob``, ``cj_strength``, ``gray_prob``;
    - ``tubelet``, ``patch_size``: token size for the masked methods (default 2 frames x 16 px,
      or the frame side / 4 when that is smaller).
    """

    name: ClassVar[str] = "video"
    defaults: ClassVar[Dict[str, Any]] = {"method": "simclr", "epochs": 50, "batch_size": 32, "encoder": "c3d_small"}
    supported_methods: ClassVar[Optional[List[str]]] = None
    token_defaults: ClassVar[Dict[str, Any]] = {"encoder": "video_vit_tiny"}

    def __init__(self, **config: Any) -> None:
        unknown = sorted(set(config) - set(CONFIG_KEYS))
        if unknown:
            raise ConfigError(f"unknown video adapter option(s) {', '.join(unknown)}; valid: {', '.join(CONFIG_KEYS)}")
        config = {k: _jsonable(v) for k, v in config.items()}
        config.setdefault("preset", "simclr")
        config.setdefault("frame_stride", 1)
        config.setdefault("temporal_jitter", True)
        super().__init__(**config)
        if self.config["preset"] not in PRESETS:
            raise ConfigError(f"unknown video augmentation preset {self.config['preset']!r}; "
                              f"available: {', '.join(PRESETS)}")
        for key in ("clip_length", "frame_stride", "tubelet", "patch_size"):
            _positive_int(key, self.config.get(key))
        if self.config.get("channels") not in (None, 1, 3):
            raise ConfigError(f"channels must be 1 or 3, got {self.config['channels']!r}")
        if self.config.get("layout") not in (None,) + LAYOUTS:
            raise ConfigError(f"layout must be one of {', '.join(LAYOUTS)}, got {self.config['layout']!r}")
        size = self.config.get("frame_size")
        if size is not None:
            self.config["frame_size"] = list(self._hw(size))

    @staticmethod
    def _hw(size: Any) -> Tuple[int, int]:
        h, w = (size, size) if isinstance(size, (int, np.integer)) else size
        if int(h) < 1 or int(w) < 1:
            raise ConfigError(f"frame_size must be positive, got {size!r}")
        return int(h), int(w)

    @property
    def clip_length(self) -> int:
        if self.config.get("clip_length") is None:
            raise ConfigError("clip_length is unknown: pass clip_length= or prepare() some data first")
        return int(self.config["clip_length"])

    # ---- data ------------------------------------------------------------------------------
    def prepare(self, data: Any, on_bad_record: Union[str, BadRecordPolicy] = "raise") -> Clips:
        """Decode and validate ``data`` once -> ``{"video": uint8 (N, T, C, H, W), "length": int64 (N,)}``.

        The first data prepared fixes ``channels``, ``frame_size`` and ``clip_length`` (stored in
        the config); later data is converted to match.

        ``on_bad_record="skip"`` (or a :class:`~multissl.bad_records.BadRecordPolicy`) leaves out
        corrupt or truncated video files, videos with zero frames and malformed records of a
        list, and counts them; ``"raise"`` stops at the first (see ``docs/training.md``).
        """
        if isinstance(data, dict) and "video" in data and "length" in data:
            return data
        with prepare_scope(on_bad_record, "videos") as policy:
            return self._prepare(data, policy)

    def _prepare(self, data: Any, policy: BadRecordPolicy) -> Clips:
        if isinstance(data, (str, Path)):
            p = Path(data).expanduser()
            if p.is_dir():
                return self._from_files(list_video_files(p), policy)
            if p.suffix.lower() == ".npy":
                if not p.is_file():
                    raise DataError(f"{data}: no such file")
                return self._from_array(read_npy(p), source=str(data))
            if is_video_file(p):
                return self._from_files([p], policy)
            if not p.exists():
                raise DataError(f"{data}: no such file or folder")
            raise DataError(f"{data}: not a video file, a folder of videos or a .npy array of clips")
        if isinstance(data, (list, tuple)):
            if len(data) == 0:
                raise DataError("no videos: the list is empty")
            if all(isinstance(d, (str, Path)) for d in data):
                return self._from_files([Path(d) for d in data], policy)
            return self._from_records(data, policy)
        if isinstance(data, (np.ndarray, torch.Tensor)):
            return self._from_array(data, source="array")
        raise DataError(f"unsupported video data of type {type(data).__name__}; pass a uint8 (N, T, H, W, C) array, "
                        "a .npy file, a video file or a folder of videos")

    def fit(self, prepared: Clips) -> "VideoAdapter":
        """Per-channel mean and std of the real frames (in [0, 1]) of up to 512 videos."""
        video, length = self._check(prepared)
        n = min(len(video), 512)
        idx = torch.linspace(0, len(video) - 1, n).round().long()
        v, lengths = video[idx].double() / 255.0, length[idx]
        real = (torch.arange(v.shape[1]).view(1, -1) < lengths.view(-1, 1)).double()  # (n, T)
        w = real.view(n, -1, 1, 1, 1)
        count = w.sum() * v.shape[3] * v.shape[4]
        mean = (v * w).sum((0, 1, 3, 4)) / count
        var = (((v - mean.view(1, 1, -1, 1, 1)) ** 2) * w).sum((0, 1, 3, 4)) / count
        std = var.sqrt().clamp_min(1e-3)  # a constant channel keeps its scale
        self.config["mean"] = [float(x) for x in mean]
        self.config["std"] = [float(x) for x in std]
        return self

    # ---- transforms ------------------------------------------------------------------------
    def eval_transform(self, batch: Clips) -> torch.Tensor:
        """The centred clip of every video, normalised: float (B, C, clip_length, H, W)."""
        return self._to_model(self._clips(batch, jitter=False, generator=None))

    def views(self, batch: Clips, n_views: int = 2, generator: Optional[torch.Generator] = None) -> List[torch.Tensor]:
        """``n_views`` augmented clips per video, float (B, C, clip_length, H, W) each.

        Each view samples its own clip start (temporal jitter) and its own crop / flip / colour,
        the same for every frame of the clip. Every random number comes from ``generator``.
        """
        if n_views < 1:
            raise ConfigError(f"n_views must be at least 1, got {n_views}")
        settings = self.settings()
        return [self._augmented(batch, settings, generator) for _ in range(n_views)]

    def finetune_augment(self, batch: Clips, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """The ``light`` preset (crop + flip per clip) with temporal jitter."""
        return self._augmented(batch, self.settings("light"), generator)

    def tokens(self, batch: Clips, generator: Optional[torch.Generator] = None) -> TokenBatch:
        """Tubelet tokens for ``mae`` / ``data2vec`` (VideoMAE): the ``light`` view as input, its
        tubelets' normalised values as targets, and tube masking (mask group = spatial position,
        so a hidden patch is hidden in every frame)."""
        x = self.finetune_augment(batch, generator=generator)
        tubelet, patch = self.token_size(x.shape[-2:])
        B, _, T, H, W = x.shape
        if T % tubelet or H % patch or W % patch:
            raise ConfigError(f"clips of {T}x{H}x{W} do not divide into tubelets of {tubelet}x{patch}x{patch}; "
                              "set clip_length / frame_size, or the adapter's tubelet and patch_size")
        targets = patchify_clips(x, tubelet, patch)
        groups = tube_groups(B, T // tubelet, H // patch, W // patch, x.device)
        return TokenBatch(inputs=x, targets=targets, mask_groups=groups)

    def token_size(self, hw: Optional[Sequence[int]] = None) -> Tuple[int, int]:
        """(tubelet frames, patch pixels) of the tokens."""
        tubelet = int(self.config.get("tubelet") or 2)
        patch = self.config.get("patch_size")
        if patch is None:
            side = min(hw) if hw is not None else min(self._hw(self.config["frame_size"])) if self.config.get(
                "frame_size") else 64
            patch = min(16, max(1, side // 4))
        return tubelet, int(patch)

    def settings(self, preset: Optional[str] = None) -> AugmentParams:
        """The augmentation settings of ``preset`` (default: the config's, with its overrides)."""
        use_config = preset is None or preset == self.config["preset"]
        merged = dict(PRESET_SETTINGS[preset or self.config["preset"]])
        if use_config:
            merged.update({k: self.config[k] for k in _AUG_KEYS if self.config.get(k) is not None})
        s = float(merged.pop("cj_strength"))
        return AugmentParams(crop=True, crop_scale=tuple(merged["crop_scale"]), crop_ratio=tuple(merged["crop_ratio"]),
                             hflip_prob=float(merged["hflip_prob"]), cj_prob=float(merged["cj_prob"]),
                             brightness=0.8 * s, contrast=0.8 * s, saturation=0.8 * s, hue=0.2 * s,
                             gray_prob=float(merged["gray_prob"]), blur_prob=0.0, solarize_prob=0.0)

    # ---- model -----------------------------------------------------------------------------
    def build_encoder(self, name: Optional[str] = None, **kwargs: Any) -> nn.Module:
        """``c3d_small`` (default: four 3D conv blocks -> 256), ``r3d_18`` (torchvision's 3D
        ResNet-18 -> 512, for larger frames), ``video_vit_tiny`` (tubelet ViT -> 128, the masked
        methods' default). ``in_channels`` defaults to the prepared data's channels."""
        name = name or self.defaults["encoder"]
        kwargs.setdefault("in_channels", int(self.config.get("channels") or 3))
        if name in TOKEN_ENCODERS:
            tubelet, patch = self.token_size()
            kwargs.setdefault("tubelet", tubelet)
            kwargs.setdefault("patch", patch)
            if (kwargs["tubelet"], kwargs["patch"]) != (tubelet, patch):
                raise ConfigError("the video ViT's tubelet/patch must equal the adapter's (its token targets); "
                                  "set the adapter's tubelet and patch_size instead")
            if self.config.get("clip_length") and self.config.get("frame_size"):
                h, w = self._hw(self.config["frame_size"])
                kwargs.setdefault("max_tokens", max(1, self.clip_length // tubelet) * max(1, h // patch) * max(1, w // patch))
        return build_video_encoder(name, **kwargs)

    def encoder_names(self) -> List[str]:
        return list(VIDEO_ENCODERS)

    # ---- internals -------------------------------------------------------------------------
    def _check(self, batch: Any) -> Tuple[torch.Tensor, torch.Tensor]:
        if not isinstance(batch, dict) or "video" not in batch or "length" not in batch:
            raise DataError("expected prepared videos, a dict with 'video' and 'length'; call adapter.prepare(data)")
        return batch["video"], batch["length"]

    def _clips(self, batch: Clips, jitter: bool, generator: Optional[torch.Generator]) -> torch.Tensor:
        """Float clips (B, clip_length, C, H, W) in [0, 1]."""
        video, length = self._check(batch)
        length = length.to(video.device)
        stride = int(self.config["frame_stride"])
        span = (self.clip_length - 1) * stride + 1
        starts = clip_starts(length, span, jitter and bool(self.config["temporal_jitter"]), generator)
        return gather_clips(video, length, starts, self.clip_length, stride).float().div_(255.0)

    def _augmented(self, batch: Clips, settings: AugmentParams, generator: Optional[torch.Generator]) -> torch.Tensor:
        x = self._clips(batch, jitter=True, generator=generator)
        return self._to_model(augment_clips(x, settings, generator))

    def _to_model(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise (B, T, C, H, W) and move channels first: (B, C, T, H, W)."""
        C = x.shape[2]
        mean = torch.tensor(self.config.get("mean") or [0.5] * C, device=x.device, dtype=x.dtype).view(1, 1, C, 1, 1)
        std = torch.tensor(self.config.get("std") or [0.25] * C, device=x.device, dtype=x.dtype).view(1, 1, C, 1, 1)
        return ((x - mean) / std).permute(0, 2, 1, 3, 4).contiguous()

    def _from_array(self, data: Any, source: str) -> Clips:
        a = data.detach().cpu() if isinstance(data, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(data))
        if a.dtype != torch.uint8:
            raise DataError(f"{source}: expected uint8 frames (0-255), got dtype {str(a.dtype).replace('torch.', '')}; "
                            "convert with (x * 255).round().astype(np.uint8) if they are floats in [0, 1]")
        if a.ndim == 4:
            a = a.unsqueeze(2)  # (N, T, H, W) grayscale
        elif a.ndim == 5:
            a = self._channels_second(a, source)
        else:
            raise DataError(f"{source}: expected clips (N, T, H, W, C), (N, T, C, H, W) or (N, T, H, W), "
                            f"got shape {tuple(a.shape)} ({a.ndim} dimensions)")
        if a.shape[0] == 0:
            raise DataError(f"{source}: no videos (the array is empty)")
        if a.shape[1] == 0:
            raise DataError(f"{source}: the videos have zero frames")
        if a.shape[3] == 0 or a.shape[4] == 0:
            raise DataError(f"{source}: the frames are empty ({a.shape[3]}x{a.shape[4]} pixels)")
        a = self._match_channels(a, source)
        a = self._match_size(a)
        length = torch.full((a.shape[0],), a.shape[1], dtype=torch.long)
        self.config.setdefault("clip_length", None)
        if self.config["clip_length"] is None:
            self.config["clip_length"] = int(a.shape[1])
        return {"video": a.contiguous(), "length": length}

    def _channels_second(self, a: torch.Tensor, source: str) -> torch.Tensor:
        last, second = a.shape[4] in (1, 3), a.shape[2] in (1, 3)
        layout = self.config.get("layout")
        if layout is None:
            if last and not second:
                layout = "NTHWC"
            elif second and not last:
                layout = "NTCHW"
            elif last and second:
                raise DataError(f"{source}: ambiguous layout of shape {tuple(a.shape)}: dims 2 and 4 could both be "
                                "channels; pass adapter_config={'layout': 'NTHWC'} or 'NTCHW'")
            else:
                raise DataError(f"{source}: no channel dimension of size 1 or 3 in shape {tuple(a.shape)}; expected "
                                "(N, T, H, W, C) or (N, T, C, H, W)")
        if layout == "NTHWC":
            if not last:
                raise DataError(f"{source}: layout NTHWC but the last dimension of {tuple(a.shape)} is not 1 or 3")
            return a.permute(0, 1, 4, 2, 3)
        if not second:
            raise DataError(f"{source}: layout NTCHW but dimension 2 of {tuple(a.shape)} is not 1 or 3")
        return a

    def _match_channels(self, a: torch.Tensor, source: str) -> torch.Tensor:
        channels = self.config.get("channels")
        if channels is None:
            self.config["channels"] = int(a.shape[2])
        elif channels != a.shape[2]:
            raise DataError(f"{source}: frames have {a.shape[2]} channel(s) but this adapter uses {channels}")
        return a

    def _match_size(self, a: torch.Tensor) -> torch.Tensor:
        """Frames (N, T, C, H, W) resized to ``frame_size`` (fixed by the first data)."""
        if self.config.get("frame_size") is None:
            self.config["frame_size"] = [int(a.shape[3]), int(a.shape[4])]
        h, w = self._hw(self.config["frame_size"])
        if tuple(a.shape[3:]) == (h, w):
            return a
        N, T = a.shape[:2]
        out = torch.cat([resize(chunk, (h, w)) for chunk in a.reshape(N * T, *a.shape[2:]).split(1024)])
        return out.reshape(N, T, *out.shape[1:])

    def _from_records(self, records: Sequence[Any], policy: Optional[BadRecordPolicy] = None) -> Clips:
        """A list of videos of different lengths, each a uint8 (T, H, W, C) or (T, H, W) array."""
        policy = BadRecordPolicy.of(policy)
        arrays = []
        for i, r in enumerate(records):
            with policy.record(f"record {i}", i):
                arrays.append((f"record {i}", _record_array(r, i)))
        return self._stack(arrays, policy)

    def _from_files(self, paths: Sequence[Path], policy: Optional[BadRecordPolicy] = None) -> Clips:
        policy = BadRecordPolicy.of(policy)

        def decoded():  # lazily: one file's raw frames at a time
            for i, p in enumerate(paths):
                frames = None
                with policy.record(str(p), i):
                    frames = read_video_file(p)
                if frames is not None:
                    yield str(p), frames
        return self._stack(decoded(), policy)

    def _stack(self, records: Any, policy: Optional[BadRecordPolicy] = None) -> Clips:
        """Videos (label, uint8 (T, H, W, C)) converted to the adapter's channels and frame size,
        padded to the longest."""
        videos = []
        for p, array in records:
            frames = torch.from_numpy(np.ascontiguousarray(array)).permute(0, 3, 1, 2)  # (T, C, H, W)
            if self.config.get("channels") == 1 and frames.shape[1] == 3:
                frames = (frames.float() * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(
                    1, keepdim=True).round().clamp(0, 255).to(torch.uint8)
            frames = self._match_channels(frames.unsqueeze(0), p)
            videos.append(self._match_size(frames)[0])
        if policy is not None:
            policy.check_left(len(videos), "videos")
        lengths = [len(v) for v in videos]
        out = torch.zeros((len(videos), max(lengths), *videos[0].shape[1:]), dtype=torch.uint8)
        for i, v in enumerate(videos):
            out[i, : len(v)] = v
        if self.config.get("clip_length") is None:
            self.config["clip_length"] = int(min(lengths))
        return {"video": out, "length": torch.tensor(lengths, dtype=torch.long)}


def _record_array(r: Any, i: int) -> np.ndarray:
    """One video of a list as uint8 (T, H, W, C); DataError naming ``record i`` otherwise."""
    a = r.detach().cpu().numpy() if isinstance(r, torch.Tensor) else r
    if not isinstance(a, np.ndarray):
        raise DataError(f"record {i}: expected a uint8 (T, H, W, C) array or a file path, got {type(r).__name__}")
    if a.dtype != np.uint8:
        raise DataError(f"record {i}: expected uint8 frames (0-255), got dtype {a.dtype}")
    if a.ndim == 3:
        a = a[..., None]
    if a.ndim != 4 or a.shape[-1] not in (1, 3):
        raise DataError(f"record {i}: expected a video (T, H, W, C) with C = 1 or 3 or (T, H, W), "
                        f"got shape {a.shape}")
    if a.shape[0] == 0:
        raise DataError(f"record {i}: the video has zero frames")
    return a


__all__ = ["VideoAdapter", "PRESETS", "PRESET_SETTINGS", "CONFIG_KEYS", "LAYOUTS"]
