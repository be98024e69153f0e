"""Reading data sources named on the command line into what adapters accept.

Folders of files are passed through to the adapter (it knows its file formats); array and
table files are opened here with safe readers (``numpy.load(allow_pickle=False)``, Arrow).
Every problem is a :class:`~multissl.errors.DataError` naming the path.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, List, Optional, Tuple

import numpy as np
import torch

from multissl.errors import DataError

ARRAY_KEYS = ("x", "data", "X", "images", "arr_0")
LABEL_KEYS = ("y", "labels", "label", "Y", "targets")


def _is_hf_saved(folder: Path) -> bool:
    return (folder / "dataset_info.json").is_file() or (folder / "state.json").is_file()


def read_idx(path: Path) -> np.ndarray:
    """An IDX array (the MNIST file format, optionally gzipped): magic, dims, big-endian data."""
    import gzip

    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e})") from None
    dtypes = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in dtypes:
        raise DataError(f"{path}: not an IDX file (bad magic number)")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(dtypes[raw[2]])
    body = raw[4 + 4 * ndim:]
    if len(body) != int(np.prod(shape)) * dtype.itemsize:
        raise DataError(f"{path}: header says {shape} but the file holds {len(body)} bytes of data")
    return np.frombuffer(body, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))


def _idx_pair(folder: Path) -> Optional[Tuple[Path, Optional[Path]]]:
    """(images, labels) IDX files in ``folder`` (MNIST layout), or None."""
    images = sorted(folder.glob("*images-idx3-ubyte*"))
    if not images:
        return None
    labels = sorted(folder.glob("*labels-idx1-ubyte*"))
    return images[0], (labels[0] if labels else None)


def load_data(path: str) -> Any:
    """Open ``path`` for an adapter: a folder (passed through), .npy/.npz arrays, Parquet/Arrow
    files (or a glob of them, e.g. ``cifar10/train-*.parquet``), IDX files or an MNIST-style
    folder, or a folder saved by ``datasets.Dataset.save_to_disk``."""
    if any(ch in str(path) for ch in "*?["):
        matches = sorted(Path().glob(str(path))) if not Path(path).is_absolute() else sorted(
            Path("/").glob(str(path).lstrip("/")))
        if not matches:
            raise DataError(f"{path}: the pattern matches no file")
        if all(m.suffix.lower() == ".parquet" for m in matches):
            return _parquet([str(m) for m in matches], path)
        return str(path)  # a glob of image files: the adapter expands it
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(f"{path}: no such file or folder")
    if p.is_file() and "idx" in p.name and "ubyte" in p.name:
        return read_idx(p)
    if p.is_dir() and _idx_pair(p):
        return read_idx(_idx_pair(p)[0])
    if p.is_dir():
        if _is_hf_saved(p):
            import datasets

            try:
                return datasets.load_from_disk(str(p))
            except Exception as e:  # corrupted / partial datasets folders
                raise DataError(f"{path}: cannot load the saved dataset ({e})") from None
        parquet = sorted(p.glob("*.parquet"))
        if parquet and not any(q.suffix.lower() in (".png", ".jpg", ".jpeg") for q in p.iterdir()):
            return _parquet([str(q) for q in parquet], path)
        return str(p)
    suffix = p.suffix.lower()
    if suffix == ".npy":
        try:
            return np.load(p, allow_pickle=False)
        except (ValueError, OSError) as e:
            raise DataError(f"{path}: cannot read as a .npy array ({e})") from None
    if suffix == ".npz":
        x, _ = _npz(p)
        return x
    if suffix == ".parquet":
        return _parquet([str(p)], path)
    if suffix == ".arrow":
        import datasets

        try:
            return datasets.Dataset.from_file(str(p))
        except Exception as e:
            raise DataError(f"{path}: cannot read as an Arrow file ({e})") from None
    return str(p)


def _npz(p: Path) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    try:
        arrays = np.load(p, allow_pickle=False)
        names = list(arrays.keys())
    except (ValueError, OSError) as e:
        raise DataError(f"{p}: cannot read as a .npz archive ({e})") from None
    xkey = next((k for k in ARRAY_KEYS if k in names), names[0] if len(names) == 1 else None)
    if xkey is None:
        raise DataError(f"{p}: .npz has arrays {names}; name the data array one of {', '.join(ARRAY_KEYS)}")
    ykey = next((k for k in LABEL_KEYS if k in names), None)
    x, y = arrays[xkey], (arrays[ykey] if ykey else None)
    if y is not None and len(y) != len(x):
        raise DataError(f"{p}: {len(x)} records in {xkey!r} but {len(y)} labels in {ykey!r}; they must match")
    return x, y


def _parquet(files: List[str], path: str) -> Any:
    import datasets

    try:
        return datasets.Dataset.from_parquet(files)
    except Exception as e:
        raise DataError(f"{path}: cannot read Parquet ({e})") from None


def _label_column(ds: Any, label_column: Optional[str], path: str) -> str:
    import datasets

    if label_column:
        if label_column not in ds.column_names:
            raise DataError(f"{path}: no column {label_column!r} (columns: {', '.join(ds.column_names)})")
        return label_column
    for name, feat in ds.features.items():
        if isinstance(feat, datasets.ClassLabel):
            return name
    for name in ("label", "labels"):
        if name in ds.column_names:
            return name
    raise DataError(f"{path}: cannot find a label column; pass --label-column (columns: {', '.join(ds.column_names)})")


def load_labelled(path: str, adapter: Any, label_column: Optional[str] = None,
                  policy: Any = None) -> Tuple[Any, np.ndarray, List[str]]:
    """Prepared data, integer labels and class names for evaluation.

    Accepts a folder with one sub-folder per class (ImageFolder layout), a .npz with ``x``/``y``
    arrays, or a dataset (Parquet/Arrow/saved) with a label column. Under a "skip"
    :class:`~multissl.bad_records.BadRecordPolicy`, bad records are left out together with
    their labels (and counted in ``policy``).
    """
    from multissl.bad_records import BadRecordPolicy, prepare_with_policy

    policy = BadRecordPolicy.of(policy)

    def prepare_xy(x: Any, y: np.ndarray) -> Tuple[Any, np.ndarray]:
        part = BadRecordPolicy(policy.mode)
        prepared = prepare_with_policy(adapter, x, part)
        policy.skipped += part.skipped
        return prepared, part.drop_skipped(np.asarray(y))

    p = Path(path).expanduser()
    if not any(ch in str(path) for ch in "*?[") and not p.exists():
        raise DataError(f"{path}: no such file or folder")
    if p.is_dir() and _idx_pair(p):
        images, labels = _idx_pair(p)
        if labels is None:
            raise DataError(f"{path}: found {images.name} but no *labels-idx1-ubyte* file next to it")
        x, y = read_idx(images), read_idx(labels)
        if len(x) != len(y):
            raise DataError(f"{path}: {len(x)} images but {len(y)} labels")
        prepared, y = prepare_xy(x, y)
        codes, names = _encode(y)
        return prepared, codes, names
    if p.is_dir() and not _is_hf_saved(p) and not list(p.glob("*.parquet")):
        classes = sorted(d.name for d in p.iterdir() if d.is_dir() and not d.name.startswith("."))
        if len(classes) < 2:
            raise DataError(f"{path}: expected one sub-folder per class (at least two)")
        parts, labels = [], []
        for i, c in enumerate(classes):
            prepared = prepare_with_policy(adapter, str(p / c), policy)  # labels come from the count kept
            parts.append(prepared)
            n = len(prepared) if not isinstance(prepared, dict) else len(next(iter(prepared.values())))
            labels.append(np.full(n, i, dtype=np.int64))
        return _concat(parts), np.concatenate(labels), classes
    if p.suffix.lower() == ".npz":
        x, y = _npz(p)
        if y is None:
            raise DataError(f"{path}: .npz has no label array (name it one of {', '.join(LABEL_KEYS)})")
        prepared, y = prepare_xy(x, y)
        return prepared, _encode(y)[0], _encode(y)[1]
    ds = load_data(path)
    if isinstance(ds, (str, np.ndarray)):
        raise DataError(f"{path}: cannot find labels in this source")
    col = _label_column(ds, label_column, path)
    y = np.asarray(ds[col])
    feat = ds.features[col]
    names = list(getattr(feat, "names", []) or [])
    prepared, y = prepare_xy(ds.remove_columns([col]), y)
    if names:
        return prepared, y.astype(np.int64), names
    codes, names = _encode(y)
    return prepared, codes, names


def _encode(y: np.ndarray) -> Tuple[np.ndarray, List[str]]:
    values, codes = np.unique(np.asarray(y), return_inverse=True)
    return codes.astype(np.int64), [str(v) for v in values]


def _concat(parts: List[Any]) -> Any:
    if isinstance(parts[0], dict):
        return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
    return torch.cat(parts)


def save_npy_atomic(array: np.ndarray, path: str) -> None:
    """Write ``array`` to ``path`` through a temporary file and a rename: never half-written."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            np.save(f, array, allow_pickle=False)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
