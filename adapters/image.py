"""The image adapter: arrays, tensors, PIL images, folders and ``datasets`` -> uint8 tensors,
then batched on-device SimCLR augmentations and ResNet / small CNN encoders.

    >>> from multissl.adapters import get_adapter
    >>> adapter = get_adapter("image")                 # or ImageAdapter(image_size=32, ...)
    >>> x = adapter.prepare("photos/")                 # CPU uint8 (N, C, H, W)
    >>> adapter.fit(x)                                 # per-channel mean/std into the config
    >>> g = torch.Generator().manual_seed(0)
    >>> v1, v2 = adapter.views(x[:256], n_views=2, generator=g)   # normalised float views
    >>> adapter.augment(x[:256], generator=g, preset="light")    # crop + flip only
    >>> encoder = adapter.build_encoder("resnet18")    # (B, C, H, W) -> (B, 512)

See ``docs/adapters/image.md`` for every option.
"""
from __future__ import annotations

import io
import os
from collections import Counter
from pathlib import Path
from typing import Any, ClassVar, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn

from multissl.adapters.base import Adapter
from multissl.adapters.image_encoders import IMAGE_ENCODERS, TOKEN_ENCODERS, build_image_encoder, default_patch_size
from multissl.adapters.image_transforms import AugmentParams, augment, normalize, resize, sample_params
from multissl.bad_records import BadRecordPolicy, prepare_scope
from multissl.errors import ConfigError, DataError
from multissl.tokens import TokenBatch

#: file extensions read from folders (case-insensitive)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff",
                    ".pgm", ".ppm", ".pbm", ".pnm")
_TABLE_EXTENSIONS = (".parquet", ".arrow")
_SPLIT_NAMES = {"train", "test", "validation", "valid", "val", "dev", "unlabeled", "unlabelled"}

#: normalisation used before :meth:`ImageAdapter.fit` has seen data
DEFAULT_MEAN, DEFAULT_STD = 0.5, 0.25

PRESETS = ("simclr", "light", "none")

# augmentation keys accepted in the config (AugmentParams fields plus cj_strength)
_AUG_KEYS = tuple(k for k in AugmentParams.field_names() if k != "crop") + ("cj_strength",)
_DATA_KEYS = ("image_column", "image_size", "channels", "mean", "std", "preset", "patch_size")
CONFIG_KEYS = _DATA_KEYS + _AUG_KEYS

Size = Union[int, Tuple[int, int]]


def _jsonable(v: Any) -> Any:
    if isinstance(v, tuple):
        return [_jsonable(x) for x in v]
    if isinstance(v, list):
        return [_jsonable(x) for x in v]
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return float(v)
    return v


def _hw(size: Any) -> Tuple[int, int]:
    if isinstance(size, (int, np.integer)):
        return (int(size), int(size))
    h, w = size
    return (int(h), int(w))


def preset_settings(preset: str, size: Tuple[int, int]) -> Dict[str, Any]:
    """Augmentation settings of a preset for images of ``size`` (H, W), before overrides.

    ``simclr`` follows lightly's ``SimCLRTransform`` (Chen et al. 2020) and its CIFAR-10
    benchmark setting for small images: colour-jitter strength 0.5 and no blur up to
    32/64 px, crop scale (0.2, 1) up to 32 px. ``light`` is crop (scale 0.5-1) + flip, for
    fine-tuning. ``none`` only resizes and normalises (like :meth:`eval_transform`).
    """
    side = min(size)
    if preset == "simclr":
        strength = 0.5 if side <= 64 else 1.0
        return dict(
            crop=True, crop_scale=(0.2, 1.0) if side <= 32 else (0.08, 1.0), crop_ratio=(3 / 4, 4 / 3),
            hflip_prob=0.5, cj_prob=0.8, cj_strength=strength, gray_prob=0.2,
            blur_prob=0.0 if side <= 32 else 0.5, blur_sigma=(0.1, 2.0),
            # SimCLR: a kernel of ~10% of the image side (23 px at 224)
            blur_kernel_size=max(3, int(0.1 * side) // 2 * 2 + 1),
            solarize_prob=0.0, solarize_threshold=0.5,
        )
    if preset == "light":
        return dict(crop=True, crop_scale=(0.5, 1.0), crop_ratio=(3 / 4, 4 / 3), hflip_prob=0.5, cj_prob=0.0,
                    cj_strength=0.0, gray_prob=0.0, blur_prob=0.0, solarize_prob=0.0)
    if preset == "none":
        return dict(crop=False, hflip_prob=0.0, cj_prob=0.0, cj_strength=0.0, gray_prob=0.0, blur_prob=0.0,
                    solarize_prob=0.0)
    raise ConfigError(f"unknown image augmentation preset {preset!r}; available: {', '.join(PRESETS)}")


class ImageAdapter(Adapter):
    """Images of any source as uint8 (N, C, H, W); SimCLR views computed on the device.

    Config options (all JSON-serialisable; ``None`` means "infer" or "preset default"):

    - ``image_column``: column of a ``datasets.Dataset`` (default: the ``Image`` feature,
      else "image" / "img");
    - ``image_size``: int or [H, W] every image is resized to (default: the most common
      size in the first prepared data, ties -> the first image's size);
    - ``channels``: 1 or 3 (default: inferred; RGB if any image is colour);
    - ``mean``, ``std``: per-channel statistics learnt by :meth:`fit`;
    - ``preset``: augmentation preset for :meth:`views` (``"simclr"``, ``"light"``, ``"none"``);
    - augmentation overrides: ``crop_scale``, ``crop_ratio``, ``hflip_prob``, ``cj_prob``,
      ``cj_strength`` (brightness = contrast = saturation = 0.8 s, hue = 0.2 s),
      ``brightness``, ``contrast``, ``saturation``, ``hue``, ``gray_prob``, ``blur_prob``,
      ``blur_sigma``, ``blur_kernel_size``, ``solarize_prob``, ``solarize_threshold``.
    """

    name: ClassVar[str] = "image"
    defaults: ClassVar[Dict[str, Any]] = {
        "method": "simclr",
        "epochs": 100,
        "batch_size": 256,
        "encoder": "resnet18",
    }
    supported_methods: ClassVar[Optional[List[str]]] = None
    # the masked methods (mae, data2vec) need a token encoder: a small ViT instead of the ResNet
    token_defaults: ClassVar[Dict[str, Any]] = {"encoder": "vit_tiny"}

    def __init__(self, **config: Any) -> None:
        unknown = sorted(set(config) - set(CONFIG_KEYS))
        if unknown:
            raise ConfigError(f"unknown image adapter option(s) {', '.join(unknown)}; valid: {', '.join(CONFIG_KEYS)}")
        config = {k: _jsonable(v) for k, v in config.items()}
        config.setdefault("preset", "simclr")
        super().__init__(**config)
        if self.config["preset"] not in PRESETS:
            raise ConfigError(f"unknown image augmentation preset {self.config['preset']!r}; "
                              f"available: {', '.join(PRESETS)}")
        ch = self.config.get("channels")
        if ch is not None and ch not in (1, 3):
            raise ConfigError(f"channels must be 1 or 3, got {ch!r}")
        size = self.config.get("image_size")
        if size is not None:
            try:
                h, w = _hw(size)
            except (TypeError, ValueError):
                raise ConfigError(f"image_size must be an int or [height, width], got {size!r}") from None
            if h < 1 or w < 1:
                raise ConfigError(f"image_size must be positive, got {size!r}")
        patch = self.config.get("patch_size")
        if patch is not None and (isinstance(patch, bool) or not isinstance(patch, int) or patch < 1):
            raise ConfigError(f"patch_size must be a positive integer, got {patch!r}")
        for key in ("mean", "std"):
            v = self.config.get(key)
            if v is not None and (not isinstance(v, list) or (ch is not None and len(v) != ch)):
                raise ConfigError(f"{key} must be a list with one value per channel, got {v!r}")

    # ---- data ----------------------------------------------------------------------------
    def prepare(self, data: Any, on_bad_record: Union[str, BadRecordPolicy] = "raise") -> torch.Tensor:
        """Decode and validate ``data`` once, to a CPU uint8 tensor (N, C, H, W).

        Accepts uint8 (or 0-255 integer) arrays/tensors (N, H, W, C), (N, C, H, W) or
        (N, H, W); float arrays/tensors in [0, 1] (converted with ``round(x * 255)``); a list
        of PIL images, arrays or file paths; a folder (recursive, sorted by path) or file
        pattern of images, a ``.npy``/``.npz`` file, Parquet files; a ``datasets.Dataset``.
        Images are converted to ``channels`` and resized (aspect kept, centre crop) to
        ``image_size``; both are inferred and stored in the config on the first call.

        ``on_bad_record="skip"`` (or a :class:`~multissl.bad_records.BadRecordPolicy`) leaves out
        undecodable / truncated / empty image files and records and NaN or out-of-range rows of an
        array, and counts them; ``"raise"`` stops at the first (see ``docs/training.md``).
        """
        with prepare_scope(on_bad_record, "images") as policy:
            return self._prepare(data, policy)

    def _prepare(self, data: Any, policy: BadRecordPolicy) -> torch.Tensor:
        if isinstance(data, (str, os.PathLike)):
            x = self._from_path(data, policy)
        elif isinstance(data, (np.ndarray, torch.Tensor)):
            x = self._from_array(data, policy)
        elif _is_hf_dataset(data):
            x = self._from_dataset(data, policy)
        elif isinstance(data, (list, tuple)):
            if len(data) == 0:
                raise DataError("no images: the list is empty")
            x = self._from_records([(f"record {i}", r) for i, r in enumerate(data)], policy)
        else:
            try:
                from PIL import Image
            except ImportError:  # pragma: no cover - pillow is a dependency
                Image = None
            if Image is not None and isinstance(data, Image.Image):
                x = self._from_records([("record 0", data)])
            else:
                raise DataError(f"unsupported image data of type {type(data).__name__}; pass an array or tensor "
                                "(N, H, W, C) / (N, C, H, W), a list of PIL images, a folder or a datasets.Dataset")
        if len(x) == 0:
            raise DataError("no images: the data is empty")
        return x.contiguous()

    def fit(self, prepared: torch.Tensor) -> "ImageAdapter":
        """Per-channel mean and std (of pixel values scaled to [0, 1]) into the config."""
        x = self._check_batch(prepared)
        c = x.shape[1]
        s = torch.zeros(c, dtype=torch.float64)
        s2 = torch.zeros(c, dtype=torch.float64)
        n = 0
        for i in range(0, len(x), 2048):
            chunk = x[i:i + 2048].to(torch.float64) / 255.0 if x.dtype == torch.uint8 else x[i:i + 2048].double()
            s += chunk.sum(dim=(0, 2, 3)).cpu()
            s2 += (chunk * chunk).sum(dim=(0, 2, 3)).cpu()
            n += chunk.shape[0] * chunk.shape[2] * chunk.shape[3]
        mean = s / n
        std = (s2 / n - mean * mean).clamp(min=0).sqrt()
        std = torch.where(std < 1e-3, torch.ones_like(std), std)  # constant images: do not blow up
        self.config["mean"] = [float(v) for v in mean]
        self.config["std"] = [float(v) for v in std]
        if self.config.get("channels") is None:
            self.config["channels"] = c
        return self

    # ---- transforms ----------------------------------------------------------------------
    def eval_transform(self, batch: torch.Tensor) -> torch.Tensor:
        """uint8 (B, C, H, W) -> normalised float32 (B, C, H, W) on the same device,
        deterministic; resized (aspect kept, centre crop) to ``image_size`` if needed."""
        x = self._to_float(batch)
        size = self._output_size(x)
        if tuple(x.shape[-2:]) != size:
            x = resize(x, size)
        return self._normalize(x)

    def views(self, batch: torch.Tensor, n_views: int = 2, generator: Optional[torch.Generator] = None) -> List[torch.Tensor]:
        """``n_views`` augmented, normalised views (each float32 (B, C, S, S)) of a uint8 batch,
        with the config's preset and overrides (default: SimCLR), computed on the batch's device.
        Per-sample parameters come from ``generator``: the same seed gives the same views."""
        if n_views < 1:
            raise ConfigError(f"n_views must be at least 1, got {n_views}")
        x = self._to_float(batch)
        settings = self._settings(None, self._output_size(x), {})
        return [self._augment_float(x, settings, generator) for _ in range(n_views)]

    def augment(self, batch: torch.Tensor, generator: Optional[torch.Generator] = None,
                preset: Optional[str] = None, **overrides: Any) -> torch.Tensor:
        """One augmented, normalised view of ``batch``.

        ``preset=None`` uses the config's pipeline (what :meth:`views` uses). Naming a preset
        (``"simclr"``, ``"light"`` -- crop + flip for fine-tuning, ``"none"``) uses that
        preset's defaults plus ``overrides`` only (the config's overrides are for pretraining,
        unless the preset is the config's own), e.g.
        ``adapter.augment(x, g, preset="light", crop_scale=(0.8, 1.0))``.
        """
        x = self._to_float(batch)
        settings = self._settings(preset, self._output_size(x), overrides)
        return self._augment_float(x, settings, generator)

    def finetune_augment(self, batch: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """The light augmentation for supervised fine-tuning: ``augment(batch, generator,
        preset="light")`` (random resized crop, scale 0.5-1, + horizontal flip; normalised)."""
        return self.augment(batch, generator=generator, preset="light")

    def tokens(self, batch: torch.Tensor, generator: Optional[torch.Generator] = None) -> TokenBatch:
        """Patch tokens for the masked methods (``mae``, ``data2vec``), on the batch's device.

        ``inputs``: one augmented, normalised view (B, C, H, W) with the config's pipeline (the
        masked methods recommend ``preset="light"``: random resized crop + flip, as in MAE);
        ``targets``: its pixels per patch (B, N, p*p*C) in the ViT's token order (row-major
        patches, ``(p q c)`` inside a patch), so MAE reconstructs normalised pixels.
        """
        x = self._to_float(batch)
        x = self._augment_float(x, self._settings(None, self._output_size(x), {}), generator)
        return TokenBatch(inputs=x, targets=self.patchify(x))

    def patchify(self, images: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) -> per-patch pixels (B, N, p*p*C), patches in row-major order."""
        from einops import rearrange

        p = self.patch_size(images.shape[-2:])
        return rearrange(images, "b c (h p) (w q) -> b (h w) (p q c)", p=p, q=p)

    def unpatchify(self, patches: torch.Tensor, image_size: Optional[Size] = None) -> torch.Tensor:
        """The inverse of :meth:`patchify`: (B, N, p*p*C) -> (B, C, H, W) (default: the config's size)."""
        from einops import rearrange

        h, w = _hw(image_size) if image_size is not None else (self._configured_size() or (None, None))
        if h is None:
            raise ConfigError("image_size is unknown: prepare data first or pass image_size=")
        p = self.patch_size((h, w))
        return rearrange(patches, "b (h w) (p q c) -> b c (h p) (w q)", h=h // p, w=w // p, p=p, q=p)

    def patch_size(self, image_size: Optional[Size] = None) -> int:
        """The ViT patch side: the config's ``patch_size``, else the default for the image size
        (4 up to 32 px, 8 up to 64 px, else 16); ConfigError when it does not divide the size."""
        size = _hw(image_size) if image_size is not None else self._configured_size()
        if size is None:
            raise ConfigError("image_size is unknown: prepare data first or pass image_size=")
        p = self.config.get("patch_size") or default_patch_size(*size)
        if size[0] % p or size[1] % p:
            raise ConfigError(f"patch_size {p} does not divide the image size {size[0]}x{size[1]}; "
                              "set the image adapter's image_size or patch_size")
        return int(p)

    def augmentation_settings(self, preset: Optional[str] = None, image_size: Optional[Size] = None,
                              **overrides: Any) -> Dict[str, Any]:
        """The resolved augmentation settings (a plain dict) for ``preset`` at ``image_size``."""
        size = _hw(image_size) if image_size is not None else self._configured_size()
        if size is None:
            raise ConfigError("image_size is unknown: prepare data first or pass image_size=")
        return self._settings(preset, size, overrides).to_dict()

    # ---- model ---------------------------------------------------------------------------
    def build_encoder(self, name: Optional[str] = None, **kwargs: Any) -> nn.Module:
        """``resnet18`` (default), ``resnet34``, ``resnet50``, ``small_cnn``, or the ViTs ``vit_tiny``
        / ``vit_small`` (the masked methods' default; ``image_size`` (H, W) and ``patch_size`` come
        from the config, and a ``patch_size`` given here is stored there for :meth:`tokens`).

        ``in_channels`` defaults to the config's ``channels`` (else 3) and ``image_size`` to the
        configured size, which picks the ResNet stem (3x3 stride-1, no max-pool, at <= 64 px).
        Options: ``width`` (channel multiplier), ``small_stem``, ``zero_init_residual``;
        ``embed_dim`` for ``small_cnn``. The encoder's ``embed_dim`` attribute is its output width.
        """
        name = name or self.defaults.get("encoder", "resnet18")
        kwargs.setdefault("in_channels", self.config.get("channels") or 3)
        if name.lower().replace("-", "_") in TOKEN_ENCODERS:
            # a ViT needs both sides, and the patch size its targets are cut with (tokens())
            if kwargs.get("image_size") is None:
                kwargs["image_size"] = self._configured_size()
            size = _hw(kwargs["image_size"]) if kwargs["image_size"] is not None else None
            if kwargs.get("patch_size") is None:
                if size is not None:
                    kwargs["patch_size"] = self.patch_size(size)
            elif self.config.get("patch_size") is None:
                self.config["patch_size"] = int(kwargs["patch_size"])  # tokens() must cut the same patches
            elif int(kwargs["patch_size"]) != self.config["patch_size"]:
                raise ConfigError(f"encoder patch_size {kwargs['patch_size']} differs from the adapter's "
                                  f"patch_size {self.config['patch_size']}")
            return build_image_encoder(name, **kwargs)
        if "image_size" not in kwargs:
            size = self._configured_size()
            kwargs["image_size"] = min(size) if size is not None else None
        elif kwargs["image_size"] is not None:
            kwargs["image_size"] = min(_hw(kwargs["image_size"]))
        return build_image_encoder(name, **kwargs)

    def encoder_names(self) -> List[str]:
        return list(IMAGE_ENCODERS)

    # ---- internals: augmentation -------------------------------------------------------------
    def _settings(self, preset: Optional[str], size: Tuple[int, int], overrides: Dict[str, Any]) -> AugmentParams:
        base_preset = self.config.get("preset", "simclr")
        use_config = preset is None or preset == base_preset
        preset = preset or base_preset
        merged = preset_settings(preset, size)
        if use_config:
            merged.update({k: self.config[k] for k in _AUG_KEYS if self.config.get(k) is not None})
        bad = sorted(set(overrides) - set(_AUG_KEYS))
        if bad:
            raise ConfigError(f"unknown augmentation option(s) {', '.join(bad)}; valid: {', '.join(_AUG_KEYS)}")
        merged.update({k: v for k, v in overrides.items() if v is not None})
        strength = float(merged.pop("cj_strength", 0.0) or 0.0)
        for key, mult in (("brightness", 0.8), ("contrast", 0.8), ("saturation", 0.8), ("hue", 0.2)):
            explicit = overrides.get(key, self.config.get(key) if use_config else None)
            merged[key] = float(explicit) if explicit is not None else mult * strength
        if not 0.0 <= merged["hue"] <= 0.5:
            raise ConfigError(f"hue must be in [0, 0.5], got {merged['hue']}")
        for key in ("crop_scale", "crop_ratio", "blur_sigma"):
            if key in merged:
                merged[key] = tuple(float(v) for v in merged[key])
        lo, hi = merged.get("crop_scale", (0.08, 1.0))
        if not 0.0 < lo <= hi <= 1.0:
            raise ConfigError(f"crop_scale must satisfy 0 < min <= max <= 1, got {(lo, hi)}")
        # reflect padding needs the half kernel to be smaller than the image
        k = int(merged.get("blur_kernel_size", 3))
        k = k if k % 2 == 1 else k + 1
        merged["blur_kernel_size"] = max(1, min(k, 2 * min(size) - 1))
        return AugmentParams(**merged)

    def _augment_float(self, x: torch.Tensor, settings: AugmentParams, generator: Optional[torch.Generator]) -> torch.Tensor:
        size = self._output_size(x)
        params = sample_params(x, settings, generator=generator, size=size)
        return self._normalize(augment(x, params))

    # ---- internals: tensors ----------------------------------------------------------------
    def _configured_size(self) -> Optional[Tuple[int, int]]:
        size = self.config.get("image_size")
        return _hw(size) if size is not None else None

    def _output_size(self, x: torch.Tensor) -> Tuple[int, int]:
        return self._configured_size() or (int(x.shape[-2]), int(x.shape[-1]))

    def _check_batch(self, batch: Any) -> torch.Tensor:
        if isinstance(batch, np.ndarray):
            batch = torch.from_numpy(batch)
        if not isinstance(batch, torch.Tensor):
            raise DataError(f"expected a prepared image tensor (B, C, H, W), got {type(batch).__name__}")
        if batch.ndim != 4 or batch.shape[1] not in (1, 3):
            raise DataError(f"expected a prepared image tensor (B, C, H, W) with C in (1, 3), got shape {tuple(batch.shape)}")
        return batch

    def _to_float(self, batch: Any) -> torch.Tensor:
        """A new float32 batch in [0, 1] with the configured number of channels."""
        x = self._check_batch(batch)
        x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.to(torch.float32, copy=True)
        want = self.config.get("channels")
        if want == 3 and x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1).contiguous()
        elif want == 1 and x.shape[1] == 3:
            x = (x[:, 0:1] * 0.299 + x[:, 1:2] * 0.587 + x[:, 2:3] * 0.114)
        return x

    def _normalize(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        mean = self.config.get("mean") or [DEFAULT_MEAN] * c
        std = self.config.get("std") or [DEFAULT_STD] * c
        return normalize(x, mean, std)

    # ---- internals: decoding ---------------------------------------------------------------
    def _finish(self, images: List[Tuple[str, torch.Tensor]], policy: Optional[BadRecordPolicy] = None) -> torch.Tensor:
        """Common channels and size for decoded (label, uint8 (C, H, W)) records, stacked."""
        if not images:
            if policy is not None:
                policy.check_left(0, "images")
            raise DataError("no images")
        want_c = self.config.get("channels")
        if want_c is None:
            want_c = 3 if any(t.shape[0] == 3 for _, t in images) else 1
        size = self._configured_size()
        if size is None:
            counts = Counter(tuple(t.shape[-2:]) for _, t in images)
            size = counts.most_common(1)[0][0]  # ties: the first image's size (insertion order)
        out = torch.empty((len(images), want_c) + tuple(size), dtype=torch.uint8)
        for i, (label, t) in enumerate(images):
            t = _convert_channels(t, want_c)
            if tuple(t.shape[-2:]) != tuple(size):
                t = resize(t.unsqueeze(0), size)[0]
            out[i] = t
        self._remember(want_c, size)
        return out

    def _remember(self, channels: int, size: Tuple[int, int]) -> None:
        if self.config.get("channels") is None:
            self.config["channels"] = int(channels)
        if self.config.get("image_size") is None:
            h, w = size
            self.config["image_size"] = int(h) if h == w else [int(h), int(w)]

    def _from_array(self, data: Union[np.ndarray, torch.Tensor], policy: Optional[BadRecordPolicy] = None) -> torch.Tensor:
        is_torch = isinstance(data, torch.Tensor)
        x = data.detach().cpu() if is_torch else _numpy_to_tensor(data, "images")
        shape = tuple(x.shape)
        if x.ndim == 3:
            if shape[-1] in (3, 4) and shape[1] > 4:
                raise DataError(f"images of shape {shape}: (N, H, W) is read as N grayscale images, but this looks "
                                "like one (H, W, C) image; pass a batch (1, H, W, C)")
            x = x.unsqueeze(1)
        elif x.ndim == 4:
            first, last = shape[1] in (1, 3), shape[3] in (1, 3)
            if first and last:
                channels_last = not is_torch  # numpy images are usually HWC, torch ones CHW
            elif first or last:
                channels_last = last
            else:
                raise DataError(f"images of shape {shape}: expected 1 or 3 channels as (N, H, W, C) or (N, C, H, W), "
                                f"got {shape[3] if shape[3] < shape[1] else shape[1]}"
                                + (" (drop the alpha channel, e.g. x[..., :3])" if 4 in (shape[1], shape[3]) else ""))
            if channels_last:
                x = x.permute(0, 3, 1, 2)
        else:
            raise DataError(f"images of shape {shape}: expected (N, H, W), (N, H, W, C) or (N, C, H, W)")
        if x.shape[0] == 0:
            raise DataError("no images: the array is empty")
        if policy is not None and policy.skip and x.dtype != torch.uint8 and x.dtype != torch.bool:
            bad = _bad_pixel_rows(x)
            for i, reason in bad.items():
                policy.reject(f"record {i}", reason, index=i)
            if bad:
                keep = torch.ones(len(x), dtype=torch.bool)
                keep[list(bad)] = False
                x = x[keep]
                policy.check_left(len(x), "images")
        x = _to_uint8_batch(x)
        want_c = self.config.get("channels") or x.shape[1]
        size = self._configured_size() or tuple(x.shape[-2:])
        if x.shape[1] != want_c or tuple(x.shape[-2:]) != tuple(size):
            chunks = []
            for i in range(0, len(x), 1024):
                c = _convert_channels(x[i:i + 1024], want_c)
                chunks.append(resize(c, size) if tuple(c.shape[-2:]) != tuple(size) else c)
            x = torch.cat(chunks)
        self._remember(want_c, size)
        return x

    def _from_records(self, records: Sequence[Tuple[str, Any]], policy: Optional[BadRecordPolicy] = None) -> torch.Tensor:
        want_c = self.config.get("channels")
        policy = BadRecordPolicy.of(policy)
        images: List[Tuple[str, torch.Tensor]] = []
        for i, (label, r) in enumerate(records):
            with policy.record(label, i):
                images.append((label, _record_to_tensor(r, label, want_c)))
        return self._finish(images, policy)

    def _from_path(self, data: Union[str, os.PathLike], policy: Optional[BadRecordPolicy] = None) -> torch.Tensor:
        text = os.fspath(data)
        if any(ch in text for ch in "*?["):
            import glob

            files = [Path(p) for p in sorted(glob.glob(text, recursive=True)) if Path(p).is_file()]
            if not files:
                raise DataError(f"{text}: no files match")
            return self._from_files(files, text, policy)
        path = Path(text)
        if not path.exists():
            raise DataError(f"{text}: no such file or directory")
        if path.is_file():
            return self._from_files([path], text, policy)
        files = sorted((p for p in path.rglob("*") if p.is_file() and not _hidden(p.relative_to(path))),
                       key=lambda p: p.relative_to(path).as_posix())
        images = [p for p in files if p.suffix.lower() in IMAGE_EXTENSIONS]
        if images:
            return self._from_records([(str(p), p) for p in images], policy)
        tables = [p for p in files if p.suffix.lower() in _TABLE_EXTENSIONS]
        if tables:
            splits = sorted({p.name.split("-")[0].split("_")[0] for p in tables} & _SPLIT_NAMES)
            if len(splits) > 1:
                raise DataError(f"{text}: holds several splits ({', '.join(splits)}); pass one, e.g. "
                                f"'{text}/{splits[0]}-*{tables[0].suffix}'")
            return self._from_files(tables, text, policy)
        raise DataError(f"{text}: empty folder (no image files: {', '.join(IMAGE_EXTENSIONS)})")

    def _from_files(self, files: List[Path], where: str, policy: Optional[BadRecordPolicy] = None) -> torch.Tensor:
        suffixes = {p.suffix.lower() for p in files}
        if suffixes <= set(IMAGE_EXTENSIONS):
            return self._from_records([(str(p), p) for p in files], policy)
        if suffixes <= set(_TABLE_EXTENSIONS):
            import datasets

            kind = "parquet" if suffixes == {".parquet"} else "arrow"
            if len(suffixes) > 1:
                raise DataError(f"{where}: mixes .parquet and .arrow files")
            try:
                ds = datasets.load_dataset(kind, data_files=[str(p) for p in files], split="train")
            except Exception as exc:  # corrupt or unreadable table
                raise DataError(f"{where}: cannot read {kind} data ({exc.__class__.__name__}: {exc})") from None
            return self._from_dataset(ds, policy)
        if len(files) == 1 and suffixes <= {".npy", ".npz"}:
            p = files[0]
            try:
                arr = np.load(p, allow_pickle=False)
            except Exception as exc:
                raise DataError(f"{p}: cannot read array ({exc.__class__.__name__})") from None
            if isinstance(arr, np.lib.npyio.NpzFile):
                keys = list(arr.keys())
                key = next((k for k in ("images", "x", "X", "data") if k in keys), keys[0] if keys else None)
                if key is None:
                    raise DataError(f"{p}: empty .npz file")
                arr = arr[key]
            return self._from_array(arr, policy)
        raise DataError(f"{where}: unsupported file type(s) {', '.join(sorted(suffixes))}; expected image files "
                        f"({', '.join(IMAGE_EXTENSIONS)}), .npy/.npz, .parquet or .arrow")

    def _from_dataset(self, ds: Any, policy: Optional[BadRecordPolicy] = None) -> torch.Tensor:
        import datasets

        if isinstance(ds, (datasets.DatasetDict, datasets.IterableDatasetDict)):
            raise DataError(f"a DatasetDict with splits {', '.join(ds.keys())}: pass one split, e.g. data['{next(iter(ds.keys()))}']")
        if not isinstance(ds, datasets.Dataset):
            raise DataError(f"unsupported dataset type {type(ds).__name__}; pass a datasets.Dataset")
        col = self.config.get("image_column")
        if col is None:
            col = next((k for k, f in ds.features.items() if isinstance(f, datasets.Image)), None)
            if col is None:
                col = next((k for k in ("image", "img") if k in ds.column_names), None)
            if col is None:
                raise DataError(f"dataset has no image column (columns: {', '.join(ds.column_names)}); "
                                "set image_column=")
        elif col not in ds.column_names:
            raise DataError(f"dataset has no column {col!r} (columns: {', '.join(ds.column_names)})")
        if len(ds) == 0:
            raise DataError("no images: the dataset is empty")
        feature = ds.features[col]
        sub = ds.select_columns([col])
        if isinstance(feature, datasets.Image):
            sub = sub.cast_column(col, datasets.Image(decode=False))
        else:
            sub = sub.with_format("numpy")
        want_c = self.config.get("channels")
        policy = BadRecordPolicy.of(policy)
        images: List[Tuple[str, torch.Tensor]] = []
        i = 0
        for chunk in sub.iter(batch_size=1024):
            for rec in chunk[col]:
                label = f"record {i}"
                if isinstance(rec, dict) and rec.get("path") and not rec.get("bytes"):
                    label = f"record {i} ({rec['path']})"
                with policy.record(label, i):
                    images.append((label, _record_to_tensor(rec, label, want_c)))
                i += 1
        return self._finish(images, policy)


# ---- module helpers ------------------------------------------------------------------------
def _hidden(rel: Path) -> bool:
    return any(part.startswith(".") for part in rel.parts)


def _is_hf_dataset(data: Any) -> bool:
    return type(data).__module__.split(".")[0] == "datasets"


def _numpy_to_tensor(a: np.ndarray, label: str) -> torch.Tensor:
    if a.dtype == object:
        raise DataError(f"{label}: object arrays are not images; pass a list of arrays instead")
    if a.dtype.kind not in "uifb":
        raise DataError(f"{label}: unsupported array dtype {a.dtype}")
    if a.dtype.kind == "u" and a.dtype != np.uint8:
        a = a.astype(np.int64)
    a = np.ascontiguousarray(a)
    if not a.flags.writeable:  # torch.from_numpy warns on read-only memory
        a = a.copy()
    return torch.from_numpy(a)


_PIXEL_TOL = 1e-4


def _bad_pixel_rows(x: torch.Tensor) -> Dict[int, str]:
    """Rows of a float or integer image batch that are not valid images, with the reason:
    non-finite or outside [0, 1] floats, integers outside [0, 255]. Empty for uint8."""
    if x.dtype == torch.uint8 or len(x) == 0:
        return {}
    flat = x.reshape(len(x), -1)
    out: Dict[int, str] = {}
    if x.is_floating_point():
        finite = torch.isfinite(flat).all(dim=1)
        for i in (~finite).nonzero().flatten().tolist():
            out[i] = "NaN or infinite pixel values"
        lo_all = torch.where(torch.isfinite(flat), flat, torch.zeros_like(flat)).amin(dim=1)
        hi_all = torch.where(torch.isfinite(flat), flat, torch.zeros_like(flat)).amax(dim=1)
        bad = finite & ((lo_all < -_PIXEL_TOL) | (hi_all > 1 + _PIXEL_TOL))
        for i in bad.nonzero().flatten().tolist():
            lo, hi = float(lo_all[i]), float(hi_all[i])
            hint = " (divide by 255, or pass uint8)" if hi > 1 + _PIXEL_TOL and hi <= 255 and lo >= 0 else ""
            out[i] = f"float pixel values must be in [0, 1], got [{lo:g}, {hi:g}]{hint}"
        return dict(sorted(out.items()))
    lo_all, hi_all = flat.amin(dim=1), flat.amax(dim=1)
    for i in ((lo_all < 0) | (hi_all > 255)).nonzero().flatten().tolist():
        out[i] = f"integer pixel values must be in [0, 255], got [{int(lo_all[i])}, {int(hi_all[i])}]"
    return out


def _to_uint8_batch(x: torch.Tensor, labels: Optional[Sequence[str]] = None) -> torch.Tensor:
    """uint8 (N, ...) from uint8, 0..255 integers or [0, 1] floats; DataError names the record."""
    if x.dtype == torch.uint8:
        return x
    name = (lambda i: labels[i]) if labels is not None else (lambda i: f"record {i}")
    if x.dtype == torch.bool:
        raise DataError(f"{name(0)}: boolean arrays are not images; convert to uint8 (0-255) or float (0-1)")
    bad = _bad_pixel_rows(x)
    if bad:
        i = next(iter(bad))
        raise DataError(f"{name(i)}: {bad[i]}")
    if x.is_floating_point():
        return (x.float() * 255.0).round_().clamp_(0, 255).to(torch.uint8)
    return x.to(torch.uint8)


def _convert_channels(t: torch.Tensor, want: int) -> torch.Tensor:
    """uint8 (..., C, H, W) to ``want`` channels: gray -> RGB repeats, RGB -> gray uses luma."""
    c = t.shape[-3]
    if c == want:
        return t
    if c == 1 and want == 3:
        return t.expand(*t.shape[:-3], 3, *t.shape[-2:]).contiguous()
    if c == 3 and want == 1:
        w = torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)
        return (t.float() * w).sum(dim=-3, keepdim=True).round_().clamp_(0, 255).to(torch.uint8)
    raise DataError(f"expected {want} channels, got {c}")  # pragma: no cover - callers check first


def _pil_to_tensor(img: Any, label: str, want_c: Optional[int]) -> torch.Tensor:
    """uint8 (C, H, W) from a PIL image: palette/alpha/CMYK -> RGB, 16-bit/float gray -> 8-bit."""
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        a = np.asarray(img, dtype=np.float64)
        if mode == "F":
            a = a * 255.0 if a.size and a.max() <= 1.0 else a
        elif mode.startswith("I;16") or (a.size and a.max() > 255):
            a = a / 257.0
        t = torch.from_numpy(np.clip(np.round(a), 0, 255).astype(np.uint8)).unsqueeze(0)
    else:
        if mode in ("1", "L", "LA", "La"):
            target = "L"
        elif mode in ("P", "PA") and img.palette is not None and img.palette.mode in ("L", "LA"):
            target = "L"
        else:
            target = "RGB"
        if mode != target:
            img = img.convert(target)
        t = torch.from_numpy(np.array(img, dtype=np.uint8))
        t = t.unsqueeze(0) if t.ndim == 2 else t.permute(2, 0, 1).contiguous()
    if t.shape[-1] == 0 or t.shape[-2] == 0:
        raise DataError(f"{label}: empty image")
    # channel changes go through the same luma formula for every source
    return _convert_channels(t, want_c) if want_c is not None else t


_JPEG_MAGIC, _PNG_MAGIC = b"\xff\xd8", b"\x89PNG\r\n\x1a\n"


def _decode_fast(data: bytes) -> Optional[torch.Tensor]:
    """JPEG/PNG via torchvision.io (several times faster than PIL on small images); None when
    the image needs PIL's handling (alpha, CMYK, 16-bit, or a decoding error to report)."""
    if not (data.startswith(_JPEG_MAGIC) or data.startswith(_PNG_MAGIC)):
        return None
    try:
        from torchvision.io import ImageReadMode, decode_image

        t = decode_image(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.UNCHANGED)
    except Exception:  # noqa: BLE001 - PIL decides, and names the problem
        return None
    if t.dtype != torch.uint8 or t.ndim != 3 or t.shape[0] not in (1, 3) or 0 in t.shape:
        return None
    return t


def _decode(src: Any, label: str, want_c: Optional[int]) -> torch.Tensor:
    from PIL import Image, UnidentifiedImageError

    if isinstance(src, (bytes, bytearray)):
        data = bytes(src)
    else:
        try:
            data = Path(src).read_bytes()
        except FileNotFoundError:
            raise DataError(f"{label}: no such file") from None
        except OSError as exc:
            raise DataError(f"{label}: cannot read file ({exc.strerror or exc.__class__.__name__})") from None
    t = _decode_fast(data)
    if t is not None:
        return _convert_channels(t, want_c) if want_c is not None else t
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            return _pil_to_tensor(img, label, want_c)
    except DataError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as exc:
        raise DataError(f"{label}: cannot decode image ({exc.__class__.__name__})") from None


def _record_to_tensor(rec: Any, label: str, want_c: Optional[int]) -> torch.Tensor:
    """One record (PIL image, array/tensor, path, bytes, or datasets' {"bytes", "path"}) ->
    uint8 (C, H, W)."""
    from PIL import Image

    if rec is None:
        raise DataError(f"{label}: missing image (None)")
    if isinstance(rec, Image.Image):
        return _pil_to_tensor(rec, label, want_c)
    if isinstance(rec, dict):
        if rec.get("bytes"):
            return _decode(rec["bytes"], label, want_c)
        if rec.get("path"):
            return _decode(rec["path"], label, want_c)
        raise DataError(f"{label}: image record has neither bytes nor path")
    if isinstance(rec, (bytes, bytearray)):
        return _decode(bytes(rec), label, want_c)
    if isinstance(rec, (str, os.PathLike)):
        p = Path(rec)  # errors name the file itself
        if not p.is_file():
            raise DataError(f"{p}: no such file")
        return _decode(p, str(p), want_c)
    if isinstance(rec, (np.ndarray, torch.Tensor)):
        t = rec.detach().cpu() if isinstance(rec, torch.Tensor) else _numpy_to_tensor(rec, label)
        shape = tuple(t.shape)
        if t.ndim == 2:
            t = t.unsqueeze(0)
        elif t.ndim == 3:
            if shape[0] in (1, 3) and shape[2] not in (1, 3):
                pass  # (C, H, W)
            elif shape[2] in (1, 3):
                t = t.permute(2, 0, 1)  # (H, W, C)
            else:
                c = shape[2] if shape[2] <= 4 or shape[0] > 4 else shape[0]
                raise DataError(f"{label}: expected {want_c or '1 or 3'} channels, got {c} (shape {shape})")
        else:
            raise DataError(f"{label}: expected an image (H, W), (H, W, C) or (C, H, W), got shape {shape}")
        if t.shape[-1] == 0 or t.shape[-2] == 0:
            raise DataError(f"{label}: empty image (shape {shape})")
        t = _to_uint8_batch(t.unsqueeze(0), [label])[0]
        if want_c is not None and t.shape[0] != want_c:
            t = _convert_channels(t, want_c)
        return t.contiguous()
    raise DataError(f"{label}: unsupported image type {type(rec).__name__}")


__all__ = ["ImageAdapter", "IMAGE_EXTENSIONS", "PRESETS", "CONFIG_KEYS", "preset_settings"]
