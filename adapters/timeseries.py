"""The time-series adapter: univariate and multivariate series, fixed or variable length.

Raw data -> a padded float tensor and the real lengths, once (:meth:`TimeSeriesAdapter.prepare`);
then, batch by batch on the device, normalisation and stochastic views.

    >>> from multissl.adapters import get_adapter
    >>> adapter = get_adapter("timeseries")                # or TimeSeriesAdapter(preset="ts2vec", ...)
    >>> data = adapter.prepare(X)                          # {"x": (N, C, T_max), "length": (N,)}
    >>> adapter.fit(data)                                  # per-channel mean/std into the config
    >>> v1, v2 = adapter.views(take(data, idx), generator=g)   # {"x": (B, C, T'), "mask": (B, T'), ...}
    >>> encoder = adapter.build_encoder()                  # TS2Vec dilated CNN -> (B, 128)

Accepted data, without wrapping: an array or tensor (N, T) (univariate) or (N, C, T)
(channels first, as aeon and PyTorch store them); a list of (C, T_i) or (T_i,) arrays of
different lengths; NaN at the end of a series in an array marks padding (a step is padding
when every channel is NaN there and at every later step). Any other NaN, an infinity, an empty
series or a channel count that differs between records is a :class:`DataError` naming the record.

Prepared data is a dict of row-aligned CPU tensors: ``x`` float32 (N, C, T_max), zero after
each series' end, and ``length`` int64 (N,). See ``docs/adapters/timeseries.md``.
"""
from __future__ import annotations

import math
from typing import Any, ClassVar, Dict, List, Optional, Tuple, Union

import numpy as np
import torch
from torch import nn

from multissl.adapters import timeseries_transforms as T
from multissl.adapters.base import Adapter
from multissl.adapters.timeseries_encoders import TIMESERIES_ENCODERS, build_timeseries_encoder
from multissl.bad_records import BadRecordPolicy, prepare_scope
from multissl.errors import ConfigError, DataError
from multissl.tokens import TokenBatch

NORMALIZE = ("channel", "series", "none")

#: augmentation options (0 disables one), applied in this order by :meth:`TimeSeriesAdapter.views`
AUGMENT_KEYS: Tuple[str, ...] = (
    "crop",              # keep a random sub-series of at least this fraction of the series (0: off), not stretched
    "overlap_crop",      # TS2Vec: two crops sharing a segment of at least this fraction (0: off; 2 views only)
    "window_slice",      # random window of at least this fraction, stretched back to full length (0: off)
    "time_warp",         # std of the log speed of each time-warp segment
    "permute_segments",  # shuffle up to this many segments (0 or 1: off)
    "scaling",           # std of the per-series, per-channel gain around 1
    "magnitude_warp",    # std of the smooth gain curve around 1
    "jitter",            # std of added Gaussian noise (in normalised units)
    "frequency",         # fraction of spectral components removed and added (TF-C)
    "spec_mask",         # max fraction of STFT frequencies and frames masked (SpecAugment)
    "timestamp_mask",    # probability of hiding each step (TS2Vec)
    "warp_knots",        # knots of the time-warp and magnitude-warp curves
)

#: named augmentation policies; options given explicitly override the preset's
PRESETS: Dict[str, Dict[str, float]] = {
    # a mix of the classic sensor augmentations (Um et al. 2017), moderate strengths
    "default": {"crop": 0.0, "overlap_crop": 0.0, "window_slice": 0.8, "time_warp": 0.2, "permute_segments": 0,
                "scaling": 0.2, "magnitude_warp": 0.1, "jitter": 0.05, "frequency": 0.0, "spec_mask": 0.0,
                "timestamp_mask": 0.1, "warp_knots": 4},
    # TS2Vec: overlapping random crops + timestamp masking of the latent, nothing else
    "ts2vec": {"crop": 0.0, "overlap_crop": 0.3, "window_slice": 0.0, "time_warp": 0.0, "permute_segments": 0,
               "scaling": 0.0, "magnitude_warp": 0.0, "jitter": 0.0, "frequency": 0.0, "spec_mask": 0.0,
               "timestamp_mask": 0.5, "warp_knots": 4},
    # T-Loss-like: random sub-series (the views of one series are crops of it)
    "tloss": {"crop": 0.3, "overlap_crop": 0.0, "window_slice": 0.0, "time_warp": 0.0, "permute_segments": 0,
              "scaling": 0.0, "magnitude_warp": 0.0, "jitter": 0.0, "frequency": 0.0, "spec_mask": 0.0,
              "timestamp_mask": 0.0, "warp_knots": 4},
    # no augmentation: the method makes its own variants (tloss cuts sub-series)
    "none": {"crop": 0.0, "overlap_crop": 0.0, "window_slice": 0.0, "time_warp": 0.0, "permute_segments": 0,
             "scaling": 0.0, "magnitude_warp": 0.0, "jitter": 0.0, "frequency": 0.0, "spec_mask": 0.0,
             "timestamp_mask": 0.0, "warp_knots": 4},
    # small perturbations only (fine-tuning, pretext tasks)
    "light": {"crop": 0.0, "overlap_crop": 0.0, "window_slice": 0.9, "time_warp": 0.0, "permute_segments": 0,
              "scaling": 0.1, "magnitude_warp": 0.0, "jitter": 0.03, "frequency": 0.0, "spec_mask": 0.0,
              "timestamp_mask": 0.0, "warp_knots": 4},
    # frequency-domain views (TF-C style) plus magnitude changes
    "frequency": {"crop": 0.0, "overlap_crop": 0.0, "window_slice": 0.0, "time_warp": 0.0, "permute_segments": 0,
                  "scaling": 0.2, "magnitude_warp": 0.0, "jitter": 0.03, "frequency": 0.1, "spec_mask": 0.2,
                  "timestamp_mask": 0.0, "warp_knots": 4},
}
# both families: the classic sensor views of "default" plus the frequency-domain views of
# "frequency" (benchmarks/ucr.py: the one policy that reaches T-Loss on GunPoint and ItalyPowerDemand)
PRESETS["sensor_frequency"] = {**PRESETS["default"], "frequency": PRESETS["frequency"]["frequency"],
                               "spec_mask": PRESETS["frequency"]["spec_mask"]}
_DATA_KEYS = ("normalize", "channel_mean", "channel_std", "num_channels", "preset", "patch_len")
CONFIG_KEYS = _DATA_KEYS + AUGMENT_KEYS
_FRACTIONS = ("crop", "overlap_crop", "window_slice", "frequency", "spec_mask", "timestamp_mask")

SeriesBatch = Dict[str, torch.Tensor]


class TimeSeriesAdapter(Adapter):
    """Series as padded (N, C, T) tensors; normalisation and views computed on the device.

    Config options (JSON-serialisable):

    - ``normalize``: ``"channel"`` (default: z-score every channel with the mean/std over all
      real steps of the training data, learnt by :meth:`fit`), ``"series"`` (z-score every
      channel of every series over its own steps -- the UCR convention, which removes level
      and scale) or ``"none"``;
    - ``channel_mean``, ``channel_std``, ``num_channels``: learnt by :meth:`prepare` / :meth:`fit`;
    - ``preset``: augmentation policy from :data:`PRESETS` (default ``"default"``); any option
      in :data:`AUGMENT_KEYS` given explicitly overrides the preset's value;
    - ``patch_len``: steps per patch token of the ``patchtst`` encoder and of :meth:`tokens`
      (default 16, or 8 for series shorter than 64 steps).
    """

    name: ClassVar[str] = "timeseries"
    # TS2Vec (method and encoder) as in its paper for small data: batch 8-16, a few hundred steps
    defaults: ClassVar[Dict[str, Any]] = {
        "method": "ts2vec",
        "epochs": 100,
        "batch_size": 16,
        "encoder": "ts2vec",
    }
    #: the masked methods (mae, data2vec) need patch tokens: a PatchTST-style Transformer
    token_defaults: ClassVar[Dict[str, Any]] = {"encoder": "patchtst"}
    supported_methods: ClassVar[Optional[List[str]]] = None

    def __init__(self, **config: Any) -> None:
        unknown = sorted(set(config) - set(CONFIG_KEYS))
        if unknown:
            raise ConfigError(f"unknown timeseries adapter option(s) {', '.join(unknown)}; valid: {', '.join(CONFIG_KEYS)}")
        config = {k: _jsonable(v) for k, v in config.items()}
        config.setdefault("normalize", "channel")
        config.setdefault("preset", "default")
        super().__init__(**config)
        if self.config["normalize"] not in NORMALIZE:
            raise ConfigError(f"normalize must be one of {', '.join(NORMALIZE)}, got {self.config['normalize']!r}")
        if self.config["preset"] not in PRESETS:
            raise ConfigError(f"unknown preset {self.config['preset']!r}; available: {', '.join(PRESETS)}")
        for key in AUGMENT_KEYS:
            v = self.config.get(key)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0 or not math.isfinite(v)):
                raise ConfigError(f"{key} must be a finite number >= 0, got {v!r}")
            if v is not None and key in _FRACTIONS and v >= 1:
                raise ConfigError(f"{key} must be < 1 (a fraction), got {v}")
        if int(self.augmentation("warp_knots")) < 1:
            raise ConfigError(f"warp_knots must be >= 1, got {self.config.get('warp_knots')}")
        v = self.config.get("patch_len")
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
            raise ConfigError(f"patch_len must be a positive integer, got {v!r}")

    def augmentation(self, key: str) -> float:
        """The strength of augmentation ``key``: the explicit option, else the preset's."""
        v = self.config.get(key)
        return float(PRESETS[self.config["preset"]][key] if v is None else v)

    @property
    def num_channels(self) -> Optional[int]:
        return self.config.get("num_channels")

    # ---- data ------------------------------------------------------------------------------
    def prepare(self, data: Any, on_bad_record: Union[str, BadRecordPolicy] = "raise") -> Dict[str, torch.Tensor]:
        """Decode and validate ``data`` once -> ``{"x": float32 (N, C, T_max), "length": int64 (N,)}``.

        The first data prepared fixes the number of channels (stored in the config); later
        data (test splits, ``embed``) must have the same.

        ``on_bad_record="skip"`` (or a :class:`~multissl.bad_records.BadRecordPolicy`) leaves out
        series with a NaN (other than trailing padding) or an infinity, empty or one-step series
        and non-numeric records, and counts them; ``"raise"`` stops at the first (see
        ``docs/training.md``).
        """
        if isinstance(data, dict) and "x" in data and "length" in data:
            return data  # already prepared
        with prepare_scope(on_bad_record, "series") as policy:
            return self._prepare(data, policy)

    def _prepare(self, data: Any, policy: BadRecordPolicy) -> Dict[str, torch.Tensor]:
        if isinstance(data, (np.ndarray, torch.Tensor)):
            records = self._from_array(data, policy)
        elif isinstance(data, (list, tuple)):
            if len(data) == 0:
                raise DataError("no series: the list is empty")
            records = []
            for i, r in enumerate(data):
                with policy.record(f"record {i}", i):
                    records.append((i, self._record(r, i)))
        else:
            raise DataError(f"unsupported time-series data of type {type(data).__name__}; pass an (N, T) or "
                            "(N, C, T) array or a list of (C, T_i) arrays")
        policy.check_left(len(records), "series")
        first, channels = records[0][0], records[0][1].shape[0]
        for i, r in records:
            if r.shape[0] != channels:
                raise DataError(f"record {i}: has {r.shape[0]} channel(s) but record {first} has {channels}; "
                                "every series needs the same channels")
        expected = self.num_channels
        if expected is not None and channels != expected:
            raise DataError(f"record {first}: has {channels} channel(s) but this adapter was fitted on {expected}")
        records = [r for _, r in records]
        self.config["num_channels"] = int(channels)
        n, t_max = len(records), max(r.shape[1] for r in records)
        x = np.zeros((n, channels, t_max), dtype=np.float32)
        length = np.zeros(n, dtype=np.int64)
        for i, r in enumerate(records):
            x[i, :, : r.shape[1]] = r
            length[i] = r.shape[1]
        return {"x": torch.from_numpy(x), "length": torch.from_numpy(length)}

    def fit(self, prepared: Dict[str, torch.Tensor]) -> "TimeSeriesAdapter":
        """Mean and std of every channel over all real steps (for ``normalize="channel"``)."""
        self._check_prepared(prepared)
        x, length = prepared["x"].double(), prepared["length"]
        m = T.valid_mask(length, x.shape[2]).unsqueeze(1).to(x.dtype)
        count = m.sum()
        mean = (x * m).sum((0, 2)) / count
        var = (((x - mean[None, :, None]) * m) ** 2).sum((0, 2)) / count
        std = var.sqrt()
        std = torch.where(std < 1e-8, torch.ones_like(std), std)  # a constant channel: leave its scale
        self.config["channel_mean"] = [float(v) for v in mean]
        self.config["channel_std"] = [float(v) for v in std]
        return self

    # ---- transforms ------------------------------------------------------------------------
    def eval_transform(self, batch: Dict[str, torch.Tensor]) -> SeriesBatch:
        """Deterministic: ``{"x": float32 (B, C, T), "mask": bool (B, T)}``, normalised, 0 at padding
        (T = the batch's longest series)."""
        x, length = self._crop_to_batch(batch)
        return {"x": x, "mask": T.valid_mask(length, x.shape[2])}

    def tokens(self, batch: Dict[str, torch.Tensor], generator: Optional[torch.Generator] = None) -> TokenBatch:
        """Patch tokens for the masked methods (PatchTST's masked pretraining).

        ``inputs``: one lightly augmented, normalised batch (:meth:`finetune_augment`), which the
        ``patchtst`` encoder cuts into patches; ``targets``: its values per non-overlapping patch
        (B, N, patch_len * C), so ``mae`` reconstructs the hidden patches; ``padding_mask``:
        patches that start after a series' end.
        """
        from multissl.adapters.timeseries_encoders import patchify_series

        view = self.finetune_augment(batch, generator=generator)
        patches, padding = patchify_series(view["x"], view["mask"], self.patch_len)
        return TokenBatch(inputs=view, targets=patches, padding_mask=padding)

    @property
    def patch_len(self) -> int:
        return int(self.config.get("patch_len") or 16)

    def views(self, batch: Dict[str, torch.Tensor], n_views: int = 2,
              generator: Optional[torch.Generator] = None) -> List[SeriesBatch]:
        """``n_views`` independently augmented batches, each like :meth:`eval_transform` plus
        ``"hidden"`` (B, T) (steps hidden by timestamp masking) and ``"offset"`` (B,) (source
        index of each view's first step; 0 unless cropped).

        On normalised series, in the order of :data:`AUGMENT_KEYS`: a crop (or, with
        ``overlap_crop``, TS2Vec's two crops that share a segment), window slice, time warp,
        segment permutation, scaling, magnitude warp, jitter, frequency perturbation,
        spectrogram masking, timestamp masking. Every random number comes from ``generator``.
        """
        if n_views < 1:
            raise ConfigError(f"n_views must be at least 1, got {n_views}")
        x, length = self._crop_to_batch(batch)
        g = generator
        a = self.augmentation
        crops: List[Tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
        if a("overlap_crop") > 0 and n_views == 2:
            crops = list(T.overlapping_crops(x, length, a("overlap_crop"), g))
        elif a("crop") > 0:
            crops = [T.random_crop(x, length, a("crop"), g) for _ in range(n_views)]
        else:
            zero = torch.zeros_like(length)
            crops = [(x, length, zero) for _ in range(n_views)]
        return [self._augment(*c, g) for c in crops]

    def finetune_augment(self, batch: Dict[str, torch.Tensor], generator: Optional[torch.Generator] = None) -> SeriesBatch:
        """The ``light`` preset (small window slice, gain, noise): crops and masks that suit
        contrastive views would hide the label of a short series."""
        x, length = self._crop_to_batch(batch)
        light = PRESETS["light"]
        g = generator
        x = T.window_slice(x, length, light["window_slice"], g)
        x = T.scaling(x, length, light["scaling"], g)
        x = T.jitter(x, length, light["jitter"], g)
        return {"x": x, "mask": T.valid_mask(length, x.shape[2])}

    # ---- model -----------------------------------------------------------------------------
    def build_encoder(self, name: Optional[str] = None, **kwargs: Any) -> nn.Module:
        """``ts2vec`` (default: TS2Vec's dilated CNN with per-step features, max pooled).

        ``in_channels`` defaults to the channels of the prepared data. Options: ``width``,
        ``depth``, ``embed_dim``, ``kernel_size``, ``pooling``, ``dropout``, ``channel_independent``
        (ts2vec); ``dim``,
        ``depth``, ``heads``, ``max_tokens``, ``dropout``, ``pool`` (patchtst, the masked methods'
        default; its patch length is the adapter's ``patch_len``); ``channels``, ``depth``,
        ``reduced_size``, ``embed_dim``, ``kernel_size`` (causal_cnn, T-Loss's encoder).
        """
        if "in_channels" not in kwargs:
            if self.num_channels is None:
                raise ConfigError("build_encoder needs in_channels=, or prepare() some data first")
            kwargs["in_channels"] = self.num_channels
        name = name or self.defaults["encoder"]
        if name == "patchtst":
            kwargs.setdefault("patch_len", self.patch_len)
            if kwargs["patch_len"] != self.patch_len:
                raise ConfigError(f"patchtst patch_len {kwargs['patch_len']} differs from the adapter's patch_len "
                                  f"{self.patch_len} (its token targets); set the adapter's patch_len instead")
        return build_timeseries_encoder(name, **kwargs)

    def encoder_names(self) -> List[str]:
        return list(TIMESERIES_ENCODERS)

    # ---- internals -------------------------------------------------------------------------
    def _record(self, r: Any, i: int) -> np.ndarray:
        """One series as float64 (C, T_i), validated."""
        if isinstance(r, torch.Tensor):
            r = r.detach().cpu().numpy()
        try:
            a = np.asarray(r, dtype=np.float64)
        except (TypeError, ValueError):
            raise DataError(f"record {i}: not a numeric series (type {type(r).__name__})") from None
        if a.ndim == 1:
            a = a[None, :]
        if a.ndim != 2:
            raise DataError(f"record {i}: expected a series (T,) or (C, T), got shape {a.shape}")
        return _validated(a, f"record {i}", trailing_nan_is_padding=False)

    def _from_array(self, data: Any, policy: Optional[BadRecordPolicy] = None) -> List[Tuple[int, np.ndarray]]:
        a = data.detach().cpu().numpy() if isinstance(data, torch.Tensor) else np.asarray(data)
        if a.dtype.kind not in "uifb":
            raise DataError(f"expected a numeric array of series, got dtype {a.dtype}")
        if a.ndim == 2:
            a = a[:, None, :]
        if a.ndim != 3:
            raise DataError(f"expected an (N, T) or (N, C, T) array of series, got shape {a.shape}")
        if a.shape[0] == 0:
            raise DataError("no series: the array is empty")
        a = a.astype(np.float64, copy=False)
        policy = BadRecordPolicy.of(policy)
        records = []
        for i, rec in enumerate(a):
            with policy.record(f"record {i}", i):
                records.append((i, _validated(rec, f"record {i}", trailing_nan_is_padding=True)))
        return records

    def _check_prepared(self, batch: Any) -> None:
        if not isinstance(batch, dict) or "x" not in batch or "length" not in batch:
            raise DataError("expected prepared series, a dict with 'x' and 'length'; call adapter.prepare(data)")

    def _crop_to_batch(self, batch: Dict[str, torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
        """Normalised series cropped to the batch's longest, float32, 0 at padding."""
        self._check_prepared(batch)
        length = batch["length"]
        x = batch["x"][:, :, : int(length.max())].float()
        length = length.to(x.device)
        mask = T.valid_mask(length, x.shape[2]).unsqueeze(1).to(x.dtype)
        mode = self.config["normalize"]
        if mode == "channel" and self.config.get("channel_mean") is not None:
            mean = torch.tensor(self.config["channel_mean"], device=x.device, dtype=x.dtype)[None, :, None]
            std = torch.tensor(self.config["channel_std"], device=x.device, dtype=x.dtype)[None, :, None]
            x = (x - mean) / std
        elif mode == "series":
            n = mask.sum(2, keepdim=True).clamp_min(1.0)
            mean = (x * mask).sum(2, keepdim=True) / n
            std = ((((x - mean) * mask) ** 2).sum(2, keepdim=True) / n).sqrt()
            x = (x - mean) / torch.where(std < 1e-8, torch.ones_like(std), std)
        return x * mask, length

    def _augment(self, x: torch.Tensor, length: torch.Tensor, offset: torch.Tensor,
                 g: Optional[torch.Generator]) -> SeriesBatch:
        a = self.augmentation
        knots = int(a("warp_knots"))
        if a("window_slice") > 0:
            x = T.window_slice(x, length, a("window_slice"), g)
        if a("time_warp") > 0:
            x = T.time_warp(x, length, a("time_warp"), knots, g)
        if a("permute_segments") >= 2:
            x = T.permute_segments(x, length, int(a("permute_segments")), g)
        if a("scaling") > 0:
            x = T.scaling(x, length, a("scaling"), g)
        if a("magnitude_warp") > 0:
            x = T.magnitude_warp(x, length, a("magnitude_warp"), knots, g)
        if a("jitter") > 0:
            x = T.jitter(x, length, a("jitter"), g)
        if a("frequency") > 0:
            x = T.frequency_perturb(x, length, a("frequency"), g)
        if a("spec_mask") > 0:
            x = T.spectrogram_mask(x, length, a("spec_mask"), a("spec_mask"), g=g)
        hidden = torch.zeros(x.shape[0], x.shape[2], dtype=torch.bool, device=x.device)
        if a("timestamp_mask") > 0:
            x, hidden = T.timestamp_mask(x, length, a("timestamp_mask"), g)
        return {"x": x, "mask": T.valid_mask(length, x.shape[2]), "hidden": hidden, "offset": offset}


def _validated(a: np.ndarray, label: str, trailing_nan_is_padding: bool) -> np.ndarray:
    """``a`` (C, T) without trailing all-NaN padding; DataError on any other non-finite value
    or on an empty series."""
    if trailing_nan_is_padding and a.shape[1] > 0:
        real = ~np.isnan(a).all(axis=0)
        a = a[:, : (int(real.nonzero()[0][-1]) + 1 if real.any() else 0)]
    if a.shape[0] == 0:
        raise DataError(f"{label}: has no channels")
    if a.shape[1] == 0:
        raise DataError(f"{label}: empty series (0 time steps)")
    if a.shape[1] < 2:
        raise DataError(f"{label}: a series needs at least 2 time steps, got 1")
    bad = ~np.isfinite(a)
    if bad.any():
        c, t = (int(v[0]) for v in np.nonzero(bad))
        what = "NaN" if np.isnan(a[c, t]) else "infinity"
        raise DataError(f"{label}: {what} at channel {c}, step {t} (only trailing NaN padding is allowed)")
    return a


def _jsonable(v: Any) -> Any:
    if isinstance(v, (tuple, list)):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    return v


__all__ = ["TimeSeriesAdapter", "PRESETS", "AUGMENT_KEYS", "CONFIG_KEYS", "NORMALIZE"]
