"""The signature adapter: online handwritten signatures (pen-tablet time series).

Raw data -> padded point tensors once (:meth:`SignatureAdapter.prepare`); then, batch by batch
on the device, per-signature normalisation, derived features and stochastic views that mimic
the natural variation between two genuine signatures of one writer.

    >>> from multissl.adapters import get_adapter
    >>> adapter = get_adapter("signature")                 # or SignatureAdapter(resample=256, ...)
    >>> data = adapter.prepare("svc2004_task2/")           # {"points": (N, T, 7), "length": (N,)}
    >>> adapter.fit(data)                                  # feature mean/std into the config
    >>> g = torch.Generator().manual_seed(0)
    >>> v1, v2 = adapter.views(take(data, idx), generator=g)   # {"x": (B, T', C), "mask": (B, T')}
    >>> encoder = adapter.build_encoder()                  # dilated 1D CNN -> (B, 128)

Prepared data is a dict of row-aligned CPU tensors: ``points`` float32 (N, T_max, 7) with the
channels :data:`CHANNELS` (x, y relative to the first sample, time in ms from the first
sample, pen_down, pressure, azimuth, altitude; zero after each signature's end) and
``length`` int64 (N,). See
``docs/adapters/signature.md`` for every option.
"""
from __future__ import annotations

import math
import os
from typing import Any, ClassVar, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn

from multissl.adapters.base import Adapter
from multissl.adapters.signature_encoders import SIGNATURE_ENCODERS, build_signature_encoder
from multissl.adapters.signature_io import SVC2004_COLUMNS, list_signature_files, read_svc2004
from multissl.bad_records import BadRecordPolicy, prepare_scope
from multissl.errors import ConfigError, DataError
from multissl.tokens import TokenBatch

#: canonical channels of prepared ``points``, in order
CHANNELS: Tuple[str, ...] = ("x", "y", "time", "pen_down", "pressure", "azimuth", "altitude")
_C = {name: i for i, name in enumerate(CHANNELS)}
#: channels a signature always has; the others are optional
REQUIRED_CHANNELS = ("x", "y")

#: feature name -> the raw channel it needs (derived features need only x and y)
FEATURES: Dict[str, str] = {
    "x": "x", "y": "y", "dx": "x", "dy": "y", "speed": "x", "ddx": "x", "ddy": "y", "vx": "time", "vy": "time",
    "pressure": "pressure", "pen_down": "pen_down", "azimuth": "azimuth", "altitude": "altitude", "time": "time",
}
#: features used when ``features`` is not configured, minus those the data lacks
DEFAULT_FEATURES: Tuple[str, ...] = ("x", "y", "dx", "dy", "vx", "vy", "pressure", "pen_down", "time")
#: points per signature after resampling, unless ``resample`` is set (None: keep the sampling)
DEFAULT_RESAMPLE = 128
STANDARDIZE = ("dataset", "signature", "none")

#: augmentation options and their defaults (0 disables one); see :meth:`SignatureAdapter.views`
AUGMENT_DEFAULTS: Dict[str, float] = {
    "rotation": 10.0,        # max rotation, degrees
    "shear": 0.1,            # max horizontal shear factor
    "scale": 0.1,            # max |log| of the independent x and y scale factors
    "jitter": 0.0,           # std of per-point coordinate noise, relative to the signature's RMS radius
    "speed": 0.1,            # max |log| of the global tempo change (signature length changes accordingly)
    "time_warp": 0.25,       # std of the log speed of each time-warp segment
    "warp_knots": 4,         # number of piecewise-linear segments of the time warp and the shape warp
    "point_dropout": 0.05,   # probability of dropping each point (the signature is re-compacted)
    "pressure_jitter": 0.1,  # std of the log pressure gain per signature (per-point noise: a quarter of it)
    "shape_warp": 0.0,       # std of the smooth displacement of the trajectory, relative to the RMS radius
    "stroke_shift": 0.03,    # std of each stroke's translation, relative to the RMS radius
    "mask_prob": 0.5,        # probability of masking one time span per signature
    "mask_max_frac": 0.1,    # maximum masked span, as a fraction of the signature's length
}
_DATA_KEYS = ("columns", "features", "resample", "standardize", "feature_mean", "feature_std", "sample_period_ms",
              "patch")
CONFIG_KEYS = _DATA_KEYS + tuple(AUGMENT_DEFAULTS)

_EPS = 1e-6

SignatureBatch = Dict[str, torch.Tensor]


def default_columns(num_columns: int) -> Optional[Tuple[str, ...]]:
    """Column names assumed for an array with ``num_columns`` columns (None: ambiguous).

    7 columns are the SVC2004 Task 2 order (x, y, time, pen_down, azimuth, altitude,
    pressure); fewer follow the documented order x, y, time, pen_down, pressure.
    """
    if num_columns == len(SVC2004_COLUMNS):
        return SVC2004_COLUMNS
    if 2 <= num_columns <= 5:
        return ("x", "y", "time", "pen_down", "pressure")[:num_columns]
    return None


# ---------------------------------------------------------------------------------- batch ops
def valid_mask(length: torch.Tensor, t: int) -> torch.Tensor:
    """(B, t) bool: True at the first ``length[b]`` positions of row b."""
    return torch.arange(t, device=length.device).unsqueeze(0) < length.unsqueeze(1)


def _gather_time(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``x`` (B, T, C) at time indices ``index`` (B, T') -> (B, T', C)."""
    return torch.gather(x, 1, index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


def interpolate_points(points: torch.Tensor, length: torch.Tensor, positions: torch.Tensor,
                       new_length: torch.Tensor) -> torch.Tensor:
    """Resample signatures at fractional source ``positions`` (B, T') -> points (B, T', 7).

    Continuous channels are interpolated linearly. Pen-down is not: a stroke start (pen_down
    0) at source index i is kept at the first output point whose nearest source index reaches
    i, so every stroke boundary survives down-sampling and none is duplicated by up-sampling.
    Positions at or beyond ``new_length[b]`` are zero.
    """
    b, t, _ = points.shape
    last = (length - 1).clamp_min(0).unsqueeze(1)
    pos = positions.clamp_min(0.0).minimum(last.to(positions.dtype))
    i0 = pos.floor().long().clamp(max=t - 1)
    i1 = torch.minimum(i0 + 1, last)
    w = (pos - i0.to(pos.dtype)).unsqueeze(-1)
    out = _gather_time(points, i0) * (1 - w) + _gather_time(points, i1) * w
    # pen-up events between consecutive output points, counted with a cumulative sum
    pen_up = (points[..., _C["pen_down"]] < 0.5) & valid_mask(length, t)
    ups = pen_up.cumsum(1)
    nearest = pos.round().long().clamp(max=t - 1).minimum(last)
    ups_at = torch.gather(ups, 1, nearest)
    first = ups_at[:, :1] - torch.gather(pen_up.long(), 1, nearest[:, :1])
    previous = torch.cat([first, ups_at[:, :-1]], dim=1)
    out[..., _C["pen_down"]] = (ups_at == previous).to(out.dtype)
    return out * valid_mask(new_length, positions.shape[1]).unsqueeze(-1).to(out.dtype)


def piecewise_linear(knots: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Values at ``u`` (B, T) in [0, 1] of the piecewise-linear functions through K + 1 evenly
    spaced ``knots`` (B, K + 1, C) -> (B, T, C)."""
    k = knots.shape[1] - 1
    seg = (u * k).floor().long().clamp(0, k - 1)
    frac = (u * k - seg).unsqueeze(-1)
    return _gather_time(knots, seg) * (1 - frac) + _gather_time(knots, seg + 1) * frac


def uniform_positions(length: torch.Tensor, num: int) -> torch.Tensor:
    """(B, num) source positions spreading ``num`` points evenly over each signature."""
    u = torch.linspace(0.0, 1.0, num, device=length.device)
    return u.unsqueeze(0) * (length - 1).clamp_min(0).unsqueeze(1).to(u.dtype)


def normalize_coordinates(points: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Translate each signature's centroid to the origin and divide x and y by its RMS
    radius: invariant to the writer's position and size on the tablet, aspect ratio kept."""
    m = mask.unsqueeze(-1).to(points.dtype)
    n = m.sum(1).clamp_min(1.0)
    xy = points[..., :2]
    centred = (xy - (xy * m).sum(1, keepdim=True) / n.unsqueeze(1)) * m
    radius = ((centred ** 2).sum(-1, keepdim=True) * m).sum(1, keepdim=True) / n.unsqueeze(1)
    out = points.clone()
    out[..., :2] = centred / radius.sqrt().clamp_min(_EPS)
    return out


def _diff(v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """First difference along time, 0 at the first point and at padded positions."""
    d = torch.zeros_like(v)
    d[:, 1:] = v[:, 1:] - v[:, :-1]
    return d * mask.to(v.dtype)


def compute_features(points: torch.Tensor, mask: torch.Tensor, features: Sequence[str]) -> torch.Tensor:
    """Feature channels (B, T, len(features)) from normalised points, zero at padding."""
    x, y = points[..., _C["x"]], points[..., _C["y"]]
    cache: Dict[str, torch.Tensor] = {}

    def get(name: str) -> torch.Tensor:
        if name not in cache:
            if name in ("dx", "dy"):
                cache[name] = _diff(x if name == "dx" else y, mask)
            elif name in ("ddx", "ddy"):
                cache[name] = _diff(get(name[1:]), mask)
            elif name == "speed":
                cache[name] = torch.sqrt(get("dx") ** 2 + get("dy") ** 2)
            elif name in ("vx", "vy"):
                # velocity per second: after resampling (or dropout) a step no longer spans a fixed
                # time, so displacement alone stops measuring speed -- a cue against slow forgeries
                dt = _diff(points[..., _C["time"]], mask) / 1000.0
                cache[name] = get("d" + name[1]) / dt.clamp_min(1e-3)
            elif name == "time":
                cache[name] = points[..., _C["time"]] / 1000.0  # seconds: the same scale as the other channels
            else:
                cache[name] = points[..., _C[name]]
        return cache[name]

    out = torch.stack([get(f) for f in features], dim=-1)
    return out * mask.unsqueeze(-1).to(out.dtype)


def standardize_per_signature(f: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Z-score every channel over each signature's own points (constant channels -> 0)."""
    m = mask.unsqueeze(-1).to(f.dtype)
    n = m.sum(1, keepdim=True).clamp_min(1.0)
    mean = (f * m).sum(1, keepdim=True) / n
    std = ((((f - mean) * m) ** 2).sum(1, keepdim=True) / n).sqrt()
    return (f - mean) / std.clamp_min(_EPS) * m


# ---------------------------------------------------------------------------------- adapter
class SignatureAdapter(Adapter):
    """Online signatures as padded point tensors; features and views computed on the device.

    Config options (all JSON-serialisable; ``None`` means "infer" or "default"):

    - ``columns``: names of the columns of array input, from :data:`CHANNELS` (default: by
      count -- 7 is the SVC2004 order, 2-5 are x, y, time, pen_down, pressure);
    - ``features``: feature channels, from :data:`FEATURES` (default: x, y, dx, dy, vx, vy,
      pressure, pen_down, time, less those the first prepared data lacks);
    - ``resample``: resample every signature to this many points (default 128; ``None`` keeps
      the tablet's sampling). A fixed length makes batches cheap (no padding to the longest
      signature); the ``time`` and ``vx``/``vy`` features keep the duration and speed that
      resampling hides -- strong cues against slow skilled forgeries;
    - ``standardize``: ``"dataset"`` (feature mean/std learnt by :meth:`fit`), ``"signature"``
      (z-score each channel per signature, the classic DTW preprocessing) or ``"none"``;
    - ``feature_mean``, ``feature_std``: learnt by :meth:`fit`;
    - ``sample_period_ms``: time between samples when the data has no time column (10);
    - ``patch``: points per token of the ``transformer`` encoder and of :meth:`tokens` (4);
    - augmentation strengths :data:`AUGMENT_DEFAULTS` (0 disables one).
    """

    name: ClassVar[str] = "signature"
    # Chosen on SVC2004 (pretrain on users 1-20, verify users 21-40; docs/recipes/
    # signature_verification.md): VICReg kept improving up to 60 epochs where SimCLR got worse
    # after 20 and varied more between seeds.
    defaults: ClassVar[Dict[str, Any]] = {
        "method": "vicreg",
        "epochs": 60,
        "batch_size": 128,
        "encoder": "cnn",
    }
    #: the masked methods (mae, data2vec) need a token encoder: the patch Transformer
    token_defaults: ClassVar[Dict[str, Any]] = {"encoder": "transformer"}
    supported_methods: ClassVar[Optional[List[str]]] = None

    def __init__(self, **config: Any) -> None:
        unknown = sorted(set(config) - set(CONFIG_KEYS))
        if unknown:
            raise ConfigError(f"unknown signature adapter option(s) {', '.join(unknown)}; valid: {', '.join(CONFIG_KEYS)}")
        config = {k: _jsonable(v) for k, v in config.items()}
        config.setdefault("standardize", "dataset")
        config.setdefault("resample", DEFAULT_RESAMPLE)
        super().__init__(**config)
        cols = self.config.get("columns")
        if cols is not None:
            self._check_names("columns", cols, CHANNELS)
            missing = [c for c in REQUIRED_CHANNELS if c not in cols]
            if missing:
                raise ConfigError(f"columns must include {', '.join(missing)}, got {cols}")
        feats = self.config.get("features")
        if feats is not None:
            self._check_names("features", feats, tuple(FEATURES))
            if not feats:
                raise ConfigError("features must name at least one feature")
        if self.config["standardize"] not in STANDARDIZE:
            raise ConfigError(f"standardize must be one of {', '.join(STANDARDIZE)}, got {self.config['standardize']!r}")
        r = self.config.get("resample")
        if r is not None and (not isinstance(r, int) or isinstance(r, bool) or r < 2):
            raise ConfigError(f"resample must be an integer >= 2 (points per signature) or None, got {r!r}")
        for key in AUGMENT_DEFAULTS:
            v = self.config.get(key)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0 or not math.isfinite(v)):
                raise ConfigError(f"{key} must be a finite number >= 0, got {v!r}")
        for key in ("mask_prob", "point_dropout"):
            if self.config.get(key) is not None and self.config[key] >= 1:
                raise ConfigError(f"{key} must be < 1, got {self.config[key]}")
        patch = self.config.get("patch")
        if patch is not None and (isinstance(patch, bool) or not isinstance(patch, int) or patch < 1):
            raise ConfigError(f"patch must be a positive integer (points per token), got {patch!r}")
        if self.config.get("warp_knots") is not None and int(self.config["warp_knots"]) < 1:
            raise ConfigError(f"warp_knots must be >= 1, got {self.config['warp_knots']}")
        for key in ("feature_mean", "feature_std"):
            v = self.config.get(key)
            if v is not None and (not isinstance(v, list) or len(v) != len(self.features)):
                raise ConfigError(f"{key} must be a list with one value per feature ({len(self.features)}), got {v!r}")

    @staticmethod
    def _check_names(key: str, names: Any, valid: Tuple[str, ...]) -> None:
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ConfigError(f"{key} must be a list of names, got {names!r}")
        bad = [n for n in names if n not in valid]
        if bad:
            raise ConfigError(f"unknown {key} {', '.join(map(repr, bad))}; valid: {', '.join(valid)}")
        if len(set(names)) != len(names):
            raise ConfigError(f"{key} has duplicates: {names}")

    # ---- properties ------------------------------------------------------------------------
    @property
    def features(self) -> List[str]:
        """The feature channels (configured, resolved by :meth:`prepare`, or the defaults)."""
        return list(self.config.get("features") or DEFAULT_FEATURES)

    @property
    def patch(self) -> int:
        """Points per token of the ``transformer`` encoder and of :meth:`tokens`."""
        return int(self.config.get("patch") or 4)

    def augmentation(self, key: str) -> float:
        """The configured strength of augmentation ``key`` (or its default)."""
        v = self.config.get(key)
        return float(AUGMENT_DEFAULTS[key] if v is None else v)

    # ---- data ------------------------------------------------------------------------------
    def prepare(self, data: Any, on_bad_record: Union[str, BadRecordPolicy] = "raise") -> Dict[str, torch.Tensor]:
        """Decode and validate ``data`` once -> ``{"points": float32 (N, T_max, 7), "length": int64 (N,)}``.

        Accepts a folder of SVC2004 ``.txt`` files (recursive, natural order: U1S2 before
        U1S10), a glob pattern, one file or a list of files; a list of (T_i, F) arrays or
        tensors; one (N, T, F) array or tensor, where trailing all-NaN rows mark the end of
        shorter signatures. Every signature needs at least 2 points and finite values.

        ``on_bad_record="skip"`` (or a :class:`~multissl.bad_records.BadRecordPolicy`) leaves out
        malformed signature files and records (too few points, NaN/inf, wrong shape) and counts
        them; ``"raise"`` stops at the first (see ``docs/training.md``).
        """
        with prepare_scope(on_bad_record, "signatures") as policy:
            return self._prepare(data, policy)

    def _prepare(self, data: Any, policy: BadRecordPolicy) -> Dict[str, torch.Tensor]:
        records: List[Tuple[str, np.ndarray, Tuple[str, ...]]]
        if isinstance(data, (str, os.PathLike)):
            records = self._from_files(list_signature_files(data), policy)
        elif isinstance(data, (np.ndarray, torch.Tensor)):
            records = self._from_array(data, policy)
        elif isinstance(data, (list, tuple)):
            if len(data) == 0:
                raise DataError("no signatures: the list is empty")
            if all(isinstance(r, (str, os.PathLike)) for r in data):
                records = self._from_files(list_signature_files(list(data)), policy)
            else:
                records = []
                for i, r in enumerate(data):
                    with policy.record(f"record {i}", i):
                        records.append((f"record {i}", *self._record_array(r, f"record {i}")))
        else:
            raise DataError(f"unsupported signature data of type {type(data).__name__}; pass a folder of SVC2004 "
                            "files, a list of (T, F) arrays or an (N, T, F) array")
        policy.check_left(len(records), "signatures")
        self._resolve_features(records)
        return _pad(records, float(self.config.get("sample_period_ms") or 10.0))

    def fit(self, prepared: Dict[str, torch.Tensor]) -> "SignatureAdapter":
        """Mean and std of every feature channel over all real points (for ``standardize="dataset"``)."""
        self._check_prepared(prepared)
        n = len(prepared["length"])
        c = len(self.features)
        s, s2, count = torch.zeros(c, dtype=torch.float64), torch.zeros(c, dtype=torch.float64), 0.0
        for start in range(0, n, 512):
            idx = torch.arange(start, min(n, start + 512))
            points, _ = self._points(prepared["points"][idx], prepared["length"][idx])
            f, mask = self._features(points, prepared["length"][idx])
            f = f.double()
            s += f.sum((0, 1))
            s2 += (f * f).sum((0, 1))
            count += float(mask.sum())
        mean = s / count
        std = (s2 / count - mean * mean).clamp_min(0).sqrt()
        std = torch.where(std < 1e-4, torch.ones_like(std), std)  # constant channel (pen always down): leave it
        self.config["feature_mean"] = [float(v) for v in mean]
        self.config["feature_std"] = [float(v) for v in std]
        return self

    # ---- transforms ------------------------------------------------------------------------
    def eval_transform(self, batch: Dict[str, torch.Tensor]) -> SignatureBatch:
        """Deterministic features: ``{"x": float32 (B, T, C), "mask": bool (B, T)}`` on the
        batch's device (T = the batch's longest signature, or ``resample``); x is 0 at padding."""
        self._check_prepared(batch)
        points, _ = self._points(batch["points"], batch["length"])
        return self._finish(points, batch["length"].to(points.device))

    def views(self, batch: Dict[str, torch.Tensor], n_views: int = 2,
              generator: Optional[torch.Generator] = None) -> List[SignatureBatch]:
        """``n_views`` independently augmented feature batches (each like :meth:`eval_transform`).

        Per signature, in this order: a smooth monotone time warp with a global tempo change
        (the length changes), point dropout, a small affine map of x/y about the centroid
        (rotation, shear, anisotropic scale), a smooth displacement of the trajectory, a random
        translation of each stroke, coordinate jitter, a pressure gain with per-point noise;
        then resampling, normalisation and features as in :meth:`eval_transform`, and one
        masked time span (set to 0, the standardised mean) inside the real points. Every
        random number comes from ``generator``.
        """
        if n_views < 1:
            raise ConfigError(f"n_views must be at least 1, got {n_views}")
        self._check_prepared(batch)
        points, _ = self._points(batch["points"], batch["length"])
        length = batch["length"].to(points.device)
        return [self._augment(points, length, generator) for _ in range(n_views)]

    def tokens(self, batch: Dict[str, torch.Tensor], generator: Optional[torch.Generator] = None) -> TokenBatch:
        """Patch tokens for the masked methods (``mae``, ``data2vec``).

        ``inputs``: one augmented feature batch, as :meth:`views` makes it but without the masked
        time span (the method hides whole patches itself), which the ``transformer`` encoder cuts
        into patches of ``patch`` points; ``targets``: its standardised features per patch
        (B, N, patch * C), so ``mae`` reconstructs the hidden pieces of the trajectory, pressure
        and timing; ``padding_mask``: patches that start after a signature's end.
        """
        from multissl.adapters.signature_encoders import patchify_points

        self._check_prepared(batch)
        points, _ = self._points(batch["points"], batch["length"])
        view = self._augment(points, batch["length"].to(points.device), generator, span_mask=False)
        patches, padding = patchify_points(view["x"], view["mask"], self.patch)
        return TokenBatch(inputs=view, targets=patches, padding_mask=padding)

    # ---- model -----------------------------------------------------------------------------
    def build_encoder(self, name: Optional[str] = None, **kwargs: Any) -> nn.Module:
        """``cnn`` (default: dilated residual 1D CNN, masked mean+max pooling) or ``transformer``
        (patch tokens and the shared Transformer; the encoder of ``mae`` and ``data2vec``).

        ``in_channels`` defaults to the number of features, the transformer's ``patch`` to the
        adapter's. Options: ``width``, ``depth``, ``kernel_size``, ``embed_dim``, ``dropout``,
        ``segments`` (cnn); ``dim``, ``depth``, ``heads``, ``patch``, ``max_tokens``, ``dropout``,
        ``pool`` (transformer).
        """
        kwargs.setdefault("in_channels", len(self.features))
        if (name or self.defaults["encoder"]) == "transformer":
            kwargs.setdefault("patch", self.patch)
            if kwargs["patch"] != self.patch:
                raise ConfigError(f"transformer patch {kwargs['patch']} differs from the adapter's patch {self.patch} "
                                  "(its token targets); set the adapter's patch instead")
        return build_signature_encoder(name or self.defaults["encoder"], **kwargs)

    def encoder_names(self) -> List[str]:
        return list(SIGNATURE_ENCODERS)

    # ---- internals: data -------------------------------------------------------------------
    def _from_files(self, files: Sequence[Any], policy: Optional[BadRecordPolicy] = None
                    ) -> List[Tuple[str, np.ndarray, Tuple[str, ...]]]:
        policy = BadRecordPolicy.of(policy)
        out = []
        for i, f in enumerate(files):
            with policy.record(str(f), i):
                arr = read_svc2004(f)
                out.append((str(f), arr, SVC2004_COLUMNS[: arr.shape[1]]))
        return out

    def _columns_for(self, num_columns: int, label: str) -> Tuple[str, ...]:
        cols = self.config.get("columns")
        if cols is not None:
            if len(cols) != num_columns:
                raise DataError(f"{label}: has {num_columns} columns but columns= names {len(cols)} ({', '.join(cols)})")
            return tuple(cols)
        guess = default_columns(num_columns)
        if guess is None:
            raise DataError(f"{label}: {num_columns} columns; name them with columns=[...] "
                            f"(from {', '.join(CHANNELS)})")
        return guess

    def _record_array(self, r: Any, label: str) -> Tuple[np.ndarray, Tuple[str, ...]]:
        if isinstance(r, torch.Tensor):
            r = r.detach().cpu().numpy()
        try:
            a = np.asarray(r, dtype=np.float64)
        except (TypeError, ValueError):
            raise DataError(f"{label}: not numeric pen samples (type {type(r).__name__})") from None
        if a.ndim != 2:
            raise DataError(f"{label}: expected an array (T, F) of pen samples, got shape {a.shape}")
        if a.shape[0] < 2:
            raise DataError(f"{label}: a signature needs at least 2 points, got {a.shape[0]}")
        bad = ~np.isfinite(a).all(axis=1)
        if bad.any():
            raise DataError(f"{label}: non-finite value (NaN or infinity) at point {int(np.argmax(bad))}")
        return a, self._columns_for(a.shape[1], label)

    def _from_array(self, data: Any, policy: Optional[BadRecordPolicy] = None
                    ) -> List[Tuple[str, np.ndarray, Tuple[str, ...]]]:
        a = data.detach().cpu().numpy() if isinstance(data, torch.Tensor) else np.asarray(data)
        if a.ndim == 2:
            raise DataError(f"an array of shape {a.shape} is one signature; pass a list [array] or an (N, T, F) array")
        if a.ndim != 3:
            raise DataError(f"expected an (N, T, F) array of signatures, got shape {a.shape}")
        if a.shape[0] == 0:
            raise DataError("no signatures: the array is empty")
        if a.dtype.kind not in "uif":
            raise DataError(f"expected a numeric array, got dtype {a.dtype}")
        policy = BadRecordPolicy.of(policy)
        records = []
        for i, rec in enumerate(a.astype(np.float64, copy=False)):
            real = ~np.isnan(rec).all(axis=1)
            t = int(real.nonzero()[0][-1]) + 1 if real.any() else 0  # trailing NaN rows are padding
            with policy.record(f"record {i}", i):
                records.append((f"record {i}", *self._record_array(rec[:t], f"record {i}")))
        return records

    def _resolve_features(self, records: List[Tuple[str, np.ndarray, Tuple[str, ...]]]) -> None:
        present = set(CHANNELS)
        for _, _, cols in records:
            present &= set(cols)
        if self.config.get("features") is None:
            self.config["features"] = [f for f in DEFAULT_FEATURES if FEATURES[f] in present]
            return
        for label, _, cols in records:
            lacking = [f for f in self.features if FEATURES[f] not in cols]
            if lacking:
                raise DataError(f"{label}: has no {FEATURES[lacking[0]]} column, needed by feature {lacking[0]!r} "
                                f"(its columns: {', '.join(cols)})")

    def _check_prepared(self, batch: Any) -> None:
        if not isinstance(batch, dict) or "points" not in batch or "length" not in batch:
            raise DataError("expected prepared signatures, a dict with 'points' and 'length'; call adapter.prepare(data)")

    def _points(self, points: torch.Tensor, length: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Points cropped to the batch's longest signature (less padding to compute on), float32."""
        t = int(length.max())
        points = points[:, :t].float()
        return points, valid_mask(length.to(points.device), t)

    # ---- internals: transforms -------------------------------------------------------------
    def _features(self, points: torch.Tensor, length: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Optional resampling, normalisation and features -> (features, mask)."""
        resample = self.config.get("resample")
        if resample is not None:
            length_out = torch.full_like(length, resample)
            points = interpolate_points(points, length, uniform_positions(length, resample), length_out)
            length = length_out
        mask = valid_mask(length, points.shape[1])
        return compute_features(normalize_coordinates(points, mask), mask, self.features), mask

    def _finish(self, points: torch.Tensor, length: torch.Tensor) -> SignatureBatch:
        """Features (:meth:`_features`) standardised as configured."""
        f, mask = self._features(points, length)
        mode = self.config["standardize"]
        if mode == "signature":
            f = standardize_per_signature(f, mask)
        elif mode == "dataset" and self.config.get("feature_mean") is not None:
            mean = torch.tensor(self.config["feature_mean"], device=f.device, dtype=f.dtype)
            std = torch.tensor(self.config["feature_std"], device=f.device, dtype=f.dtype)
            f = (f - mean) / std * mask.unsqueeze(-1).to(f.dtype)
        return {"x": f, "mask": mask}

    def _augment(self, points: torch.Tensor, length: torch.Tensor, g: Optional[torch.Generator],
                 span_mask: bool = True) -> SignatureBatch:
        dev = points.device
        b = points.shape[0]

        def rand(*shape: int) -> torch.Tensor:
            return torch.rand(shape, generator=g, device=dev)

        def randn(*shape: int) -> torch.Tensor:
            return torch.randn(shape, generator=g, device=dev)

        # 1. time warp: piecewise-linear monotone map of [0, 1] with random segment speeds, plus
        #    a global tempo change -- writers never sign twice at the same speed
        speed, warp, knots = self.augmentation("speed"), self.augmentation("time_warp"), int(self.augmentation("warp_knots"))
        if speed > 0 or warp > 0:
            tempo = torch.exp((2 * rand(b) - 1) * speed)
            new_length = (length.to(tempo.dtype) * tempo).round().long().clamp_min(2)
            t_out = int(math.ceil(points.shape[1] * math.exp(speed))) + 1
            u = torch.arange(t_out, device=dev).unsqueeze(0) / (new_length - 1).unsqueeze(1)
            u = u.clamp(max=1.0)
            seg_w = torch.exp(warp * randn(b, knots))
            cum = torch.cat([torch.zeros(b, 1, device=dev), seg_w.cumsum(1) / seg_w.sum(1, keepdim=True)], dim=1)
            src = piecewise_linear(cum.unsqueeze(-1), u)[..., 0] * (length - 1).unsqueeze(1)
            points = interpolate_points(points, length, src, new_length)
            length = new_length
        t = points.shape[1]
        mask = valid_mask(length, t)
        pen_up = (points[..., _C["pen_down"]] < 0.5) & mask

        # 2. point dropout; stroke starts and both ends are kept so strokes stay strokes
        p_drop = self.augmentation("point_dropout")
        if p_drop > 0:
            pos = torch.arange(t, device=dev).unsqueeze(0)
            keep = (rand(b, t) >= p_drop) | pen_up | (pos == 0) | (pos == (length - 1).unsqueeze(1))
            keep &= mask
            order = torch.argsort(torch.where(keep, pos, pos + t), dim=1, stable=True)
            points = _gather_time(points, order)
            length = keep.sum(1)
            mask = valid_mask(length, t)
            points = points * mask.unsqueeze(-1).to(points.dtype)
            pen_up = torch.gather(pen_up, 1, order) & mask

        # 3. small affine map about the centroid: rotation, shear, anisotropic scale
        m = mask.unsqueeze(-1).to(points.dtype)
        n = m.sum(1).clamp_min(1.0)
        centre = (points[..., :2] * m).sum(1) / n
        radius = ((((points[..., :2] - centre.unsqueeze(1)) ** 2).sum(-1, keepdim=True) * m).sum(1) / n).sqrt()
        theta = (2 * rand(b) - 1) * math.radians(self.augmentation("rotation"))
        shear = (2 * rand(b) - 1) * self.augmentation("shear")
        sx, sy = torch.exp((2 * rand(2, b) - 1) * self.augmentation("scale"))
        cos, sin = torch.cos(theta), torch.sin(theta)
        # A = R(theta) @ [[1, shear], [0, 1]] @ diag(sx, sy)
        a = torch.stack([torch.stack([cos * sx, (cos * shear - sin) * sy], -1),
                         torch.stack([sin * sx, (sin * shear + cos) * sy], -1)], 1)
        xy = points[..., :2] - centre.unsqueeze(1)
        xy = torch.einsum("bij,btj->bti", a, xy)

        # 4. shape: a smooth displacement along the signature (random offsets at `warp_knots` + 1
        #    knots, linear in between) bends it the way two genuine signings differ locally
        bend = self.augmentation("shape_warp")
        if bend > 0:
            u = torch.arange(t, device=dev).unsqueeze(0) / (length - 1).clamp_min(1).unsqueeze(1)
            offsets = randn(b, knots + 1, 2) * bend * radius.unsqueeze(1)
            xy = xy + piecewise_linear(offsets, u.clamp(max=1.0))

        # 5. stroke-level perturbation: every stroke (a pen-up starts one) moves a little on its own
        shift = self.augmentation("stroke_shift")
        if shift > 0:
            stroke = pen_up.long().cumsum(1).clamp(max=t - 1)
            offsets = randn(b, t, 2) * shift * radius.unsqueeze(1)
            xy = xy + _gather_time(offsets, stroke)
        jitter = self.augmentation("jitter")
        if jitter > 0:
            xy = xy + randn(b, t, 2) * jitter * radius.unsqueeze(1)
        points = points.clone()
        points[..., :2] = (xy + centre.unsqueeze(1)) * m

        # 6. pressure: a per-signature gain (pen, tablet, mood) and small per-point noise
        pj = self.augmentation("pressure_jitter")
        if pj > 0:
            gain = torch.exp(pj * randn(b, 1)) * (1 + 0.25 * pj * randn(b, t))
            points[..., _C["pressure"]] = (points[..., _C["pressure"]] * gain).clamp_min(0) * mask

        out = self._finish(points, length)

        # 7. mask one time span inside the real points (padding is never a masking target)
        p_mask, frac = self.augmentation("mask_prob"), self.augmentation("mask_max_frac")
        if span_mask and p_mask > 0 and frac > 0:
            mask = out["mask"]
            t = mask.shape[1]
            real = mask.sum(1).to(torch.float32)
            span = (rand(b) * frac * real).floor()
            start = (rand(b) * (real - span + 1)).floor()
            pos = torch.arange(t, device=dev).unsqueeze(0)
            hide = (pos >= start.unsqueeze(1)) & (pos < (start + span).unsqueeze(1)) & (rand(b) < p_mask).unsqueeze(1)
            out["x"] = out["x"].masked_fill((hide & mask).unsqueeze(-1), 0.0)
        return out


def _pad(records: List[Tuple[str, np.ndarray, Tuple[str, ...]]], sample_period_ms: float) -> Dict[str, torch.Tensor]:
    """Canonical padded tensors from (label, array, column names) records; signatures without
    a time column get one from ``sample_period_ms``."""
    n = len(records)
    t_max = max(len(a) for _, a, _ in records)
    points = np.zeros((n, t_max, len(CHANNELS)), dtype=np.float32)
    length = np.zeros(n, dtype=np.int64)
    for i, (_, a, cols) in enumerate(records):
        t = len(a)
        length[i] = t
        points[i, :t, _C["pen_down"]] = 1.0  # pen down throughout unless the data says otherwise
        for j, name in enumerate(cols):
            # x, y and time relative to the first sample, subtracted in float64: large tablet
            # coordinates and clock values (~3e7 ms in SVC2004) would lose digits in float32,
            # and normalisation removes the offset anyway
            origin = a[0, j] if name in ("x", "y", "time") else 0.0
            points[i, :t, _C[name]] = a[:, j] - origin
        if "time" not in cols:
            points[i, :t, _C["time"]] = np.arange(t) * sample_period_ms
    return {"points": torch.from_numpy(points), "length": torch.from_numpy(length)}


def _jsonable(v: Any) -> Any:
    if isinstance(v, (tuple, list)):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    return v


__all__ = ["SignatureAdapter", "CHANNELS", "FEATURES", "DEFAULT_FEATURES", "DEFAULT_RESAMPLE", "AUGMENT_DEFAULTS",
           "CONFIG_KEYS",
           "STANDARDIZE", "compute_features", "normalize_coordinates", "interpolate_points", "uniform_positions",
           "standardize_per_signature", "valid_mask", "default_columns"]
