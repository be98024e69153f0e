"""Pretraining straight from Parquet files on disk, for data larger than memory.

    >>> from multissl import pretrain
    >>> model = pretrain("data/train-*.parquet", adapter="image", streaming=True)   # or `--streaming`

:class:`ParquetStream` stands in for prepared data in :class:`multissl.trainer.Trainer`: instead
of indexing one in-memory tensor, the trainer asks it for the batches of an epoch
(:meth:`ParquetStream.batches`), and it reads, decodes (through the adapter's ``prepare``) and
hands over one batch at a time.

Design, and why:

- **Reads, not memory maps.** Randomly indexing a memory-mapped Arrow file makes every page it
  touches count toward the process's RSS, so one epoch over 1M records maps the whole file in
  (``benchmarks/arrow_mmap_rss.py``, 64 floats per record: +148 MB at 200k records, +533 MB at
  1M; this stream: +135 MB and +162 MB). Parquet row groups are instead read with
  ``ParquetFile.read_row_groups`` into buffers that are freed when the next ones replace them;
  the OS page cache holds the file, not the process.
- **Shuffling in bounded windows.** Each epoch, a seeded permutation of the row groups is cut
  into consecutive *windows* of at least ``shuffle_window`` rows, and the rows inside each window
  are permuted (also seeded). Only the window(s) under the current batch are held (at most two),
  so memory is bounded by the window size, not the dataset. The shuffle is not a full
  permutation: records of one row group land in the same window. Write files with small row
  groups (a few thousand rows) for a better mix. When the whole dataset fits in one window the
  order is exactly the in-memory trainer's ``epoch_permutation`` (file order, then the same
  ``randperm``), so streaming and in-memory training see the same batches.
- **Everything from (seed, epoch, batch).** The window layout and the permutations depend only
  on ``(seed, epoch)``, and a batch's rows only on its index in the epoch, so a resumed run
  restarts mid-epoch at exactly the batch it stopped at; nothing is carried between batches.
- **Sharding.** Global batch ``b`` is positions ``[b*G, (b+1)*G)`` of the epoch's order (``G`` =
  per-process batch x processes); rank ``r`` takes ``[b*G + r*P, b*G + (r+1)*P)``. The shares are
  disjoint, and every rank runs ``N // G`` batches (the remainder is dropped, as in memory), so
  no rank waits forever in a DDP all-reduce.
- **Decoding per batch, overlapped.** A background thread reads and decodes the next batches
  (``prefetch`` of them) while the step runs; decoding is done by the adapter's ``prepare`` on
  just the rank's rows (JPEG/PNG bytes, ``datasets`` image structs, nested/fixed-size lists of
  numbers, strings). On CUDA the batch is put in pinned memory so the copy can be non-blocking.
- **Statistics from a bounded sample.** :meth:`ParquetStream.sample` decodes at most
  ``fit_rows`` rows (row groups spread over the data) for the adapter's ``fit``.

Bad records are found when their batch is decoded: a :class:`~multissl.errors.DataError`
naming the file and the row in it.
"""
from __future__ import annotations

import glob
import os
import queue
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from multissl.errors import DataError

Source = Union[str, os.PathLike, Sequence[Union[str, os.PathLike]]]
#: column names tried, in order, when the files have several columns and none is named
COLUMN_GUESSES = ("image", "img", "x", "series", "values", "text", "data", "signature", "video")


@dataclass(frozen=True)
class _Block:
    """One Parquet row group: which file, which group, its rows and its first row in the file."""

    file: int
    group: int
    rows: int
    file_row: int


def parquet_files(source: Source) -> List[Path]:
    """The Parquet files a source names: a file, a folder (its ``*.parquet``, sorted), a glob
    pattern, or a list of those."""
    if isinstance(source, (list, tuple)):
        out: List[Path] = []
        for s in source:
            out.extend(parquet_files(s))
        if not out:
            raise DataError("no Parquet files: the list is empty")
        return out
    if not isinstance(source, (str, os.PathLike)):
        raise DataError(f"streaming reads Parquet files from disk; got {type(source).__name__} (pass a file, folder "
                        "or glob of .parquet files, or leave streaming off for in-memory data)")
    text = os.fspath(source)
    if any(ch in text for ch in "*?["):
        files = [Path(p) for p in sorted(glob.glob(text, recursive=True)) if Path(p).is_file()]
        if not files:
            raise DataError(f"{text}: the pattern matches no file")
    else:
        p = Path(text).expanduser()
        if not p.exists():
            raise DataError(f"{text}: no such file or folder")
        files = sorted(p.glob("*.parquet")) if p.is_dir() else [p]
        if not files:
            raise DataError(f"{text}: no .parquet files in this folder (streaming reads Parquet)")
    bad = [f for f in files if f.suffix.lower() != ".parquet"]
    if bad:
        raise DataError(f"{bad[0]}: streaming reads Parquet files only (convert a datasets folder with "
                        "Dataset.to_parquet)")
    return files


class ParquetStream:
    """Batches of one column of Parquet files, decoded by an adapter, without loading the data.

    Args:
        source: a Parquet file, a folder of them, a glob pattern or a list of those.
        adapter: the adapter whose ``prepare`` decodes a batch of raw values.
        column: the column to train on (default: the only column, the adapter's
            ``image_column``, else the first of :data:`COLUMN_GUESSES` present).
        shuffle_window: rows per shuffle window (see the module docstring); memory held is
            about two windows of raw column data.
        prefetch: batches decoded ahead by the background thread (0: decode in the loop).
        fit_rows: rows :meth:`sample` decodes for the adapter's statistics.
    """

    def __init__(self, source: Source, adapter: Any, column: Optional[str] = None, shuffle_window: int = 32768,
                 prefetch: int = 2, fit_rows: int = 10000) -> None:
        import pyarrow.parquet as pq

        if shuffle_window < 1:
            raise DataError(f"shuffle_window must be >= 1, got {shuffle_window}")
        self.files = parquet_files(source)
        self.adapter = adapter
        self.shuffle_window = int(shuffle_window)
        self.prefetch = int(prefetch)
        self.fit_rows = int(fit_rows)
        self._readers: Dict[int, Any] = {}
        self.blocks: List[_Block] = []
        schema = None
        for i, f in enumerate(self.files):
            try:
                meta = pq.ParquetFile(f).metadata
            except Exception as e:  # noqa: BLE001 - pyarrow raises several types for a bad file
                raise DataError(f"{f}: cannot read as Parquet ({type(e).__name__}: {e})") from None
            file_schema = meta.schema.to_arrow_schema()
            if schema is None:
                schema = file_schema
                self.column = self._pick_column(column, schema, f)
            elif self.column not in file_schema.names:
                raise DataError(f"{f}: has no column {self.column!r} (columns: {', '.join(file_schema.names)})")
            row = 0
            for g in range(meta.num_row_groups):
                rows = meta.row_group(g).num_rows
                if rows:
                    self.blocks.append(_Block(i, g, rows, row))
                row += rows
        self.num_rows = sum(b.rows for b in self.blocks)
        if self.num_rows == 0:
            raise DataError(f"{self.files[0]}: no rows in the Parquet data")
        self._block_start = np.cumsum([0] + [b.rows for b in self.blocks])

    # ------------------------------------------------------------------ description
    def __len__(self) -> int:
        return self.num_rows

    def __repr__(self) -> str:
        return (f"ParquetStream({len(self.files)} file(s), {self.num_rows} rows, {len(self.blocks)} row groups, "
                f"column={self.column!r}, shuffle_window={self.shuffle_window})")

    def _pick_column(self, column: Optional[str], schema: Any, where: Path) -> str:
        names = list(schema.names)
        if column is not None:
            if column not in names:
                raise DataError(f"{where}: no column {column!r} (columns: {', '.join(names)})")
            return column
        configured = getattr(self.adapter, "config", {}).get("image_column")
        if configured:
            return self._pick_column(configured, schema, where)
        if len(names) == 1:
            return names[0]
        guess = next((c for c in COLUMN_GUESSES if c in names), None)
        if guess is None:
            raise DataError(f"{where}: several columns ({', '.join(names)}) and none of {', '.join(COLUMN_GUESSES)}; "
                            "name the one to train on (column=... / --column)")
        return guess

    # ------------------------------------------------------------------ reading
    def _reader(self, file: int) -> Any:
        import pyarrow.parquet as pq

        if file not in self._readers:
            self._readers[file] = pq.ParquetFile(self.files[file])
        return self._readers[file]

    def _read_block(self, b: int) -> Any:
        block = self.blocks[b]
        try:
            table = self._reader(block.file).read_row_group(block.group, columns=[self.column])
        except Exception as e:  # noqa: BLE001
            raise DataError(f"{self.files[block.file]}: cannot read row group {block.group} "
                            f"({type(e).__name__}: {e})") from None
        return table.column(0)

    # ------------------------------------------------------------------ epoch layout
    def epoch_layout(self, epoch: int, seed: int) -> List[Tuple[List[int], torch.Tensor]]:
        """The epoch's windows: ``[(block indices, row permutation within the window), ...]``,
        a pure function of ``(seed, epoch)``."""
        from multissl.trainer import epoch_permutation

        if self.num_rows <= self.shuffle_window:  # one window: exactly the in-memory order
            return [(list(range(len(self.blocks))), epoch_permutation(self.num_rows, seed, epoch))]
        g = torch.Generator().manual_seed((seed * 1_000_003 + epoch) * 31 + 17)
        order = torch.randperm(len(self.blocks), generator=g).tolist()
        windows: List[List[int]] = [[]]
        rows = 0
        for b in order:
            if rows >= self.shuffle_window:
                windows.append([])
                rows = 0
            windows[-1].append(b)
            rows += self.blocks[b].rows
        out = []
        for w, blocks in enumerate(windows):
            gw = torch.Generator().manual_seed(((seed * 1_000_003 + epoch) * 1_000_033 + w) % (2**63 - 1))
            out.append((blocks, torch.randperm(sum(self.blocks[b].rows for b in blocks), generator=gw)))
        return out

    def _window_rows(self, blocks: List[int]) -> np.ndarray:
        """Global record index of every row of a window, in window (pre-permutation) order."""
        return np.concatenate([np.arange(self._block_start[b], self._block_start[b + 1]) for b in blocks])

    def epoch_order(self, epoch: int, seed: int) -> np.ndarray:
        """Global record indices in the order epoch ``epoch`` visits them (for tests and inspection)."""
        return np.concatenate([self._window_rows(bl)[perm.numpy()] for bl, perm in self.epoch_layout(epoch, seed)])

    # ------------------------------------------------------------------ batches
    def num_batches(self, global_batch: int) -> int:
        return self.num_rows // global_batch

    def batches(self, epoch: int, start: int, rank: int, world: int, per_proc: int, seed: int,
                pin_memory: bool = False) -> Iterator[Any]:
        """This rank's decoded batches ``start, start+1, ...`` of epoch ``epoch``, to the end of the
        epoch (``num_rows // (per_proc * world)`` batches in all, the same on every rank)."""
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} out of range for {world} processes")
        jobs = range(start, self.num_batches(per_proc * world))
        make = _BatchMaker(self, epoch, rank, world, per_proc, seed, pin_memory)
        if self.prefetch <= 0:
            return (make(b) for b in jobs)
        return _prefetched(make, jobs, self.prefetch)

    def rows_of_batch(self, layout: List[Tuple[List[int], torch.Tensor]], starts: np.ndarray,
                      lo: int, hi: int) -> List[Tuple[int, np.ndarray]]:
        """Positions ``[lo, hi)`` of an epoch as ``[(window, offsets in its permuted order)]``."""
        out = []
        w = int(np.searchsorted(starts, lo, side="right")) - 1
        while lo < hi:
            end = min(hi, int(starts[w + 1]))
            out.append((w, layout[w][1][lo - int(starts[w]): end - int(starts[w])].numpy()))
            lo, w = end, w + 1
        return out

    def decode(self, values: Any, records: np.ndarray) -> Any:
        """Decode raw column values (an Arrow array) of global records ``records`` with the adapter;
        a DataError about "record i" is reworded to name the file and row."""
        raw = _to_python(values, self._where(int(records[0])) if len(records) else "")
        try:
            return self.adapter.prepare(raw)
        except DataError as e:
            msg = str(e)
            m = re.match(r"record (\d+)", msg)
            if m and int(m.group(1)) < len(records):
                msg = self._where(int(records[int(m.group(1))])) + msg[m.end():]
            else:
                msg = f"a batch of {len(records)} rows starting at {self._where(int(records[0]))}: {msg}"
            raise DataError(msg) from None

    def _where(self, record: int) -> str:
        b = int(np.searchsorted(self._block_start, record, side="right")) - 1
        block = self.blocks[b]
        return f"{self.files[block.file]}: row {block.file_row + record - int(self._block_start[b])}"

    # ------------------------------------------------------------------ fit sample
    def sample(self, rows: Optional[int] = None) -> Any:
        """At most ``rows`` (default ``fit_rows``) records, decoded: all of them in file order when
        the data is that small, else whole row groups spread evenly over the data."""
        import pyarrow as pa

        rows = self.fit_rows if rows is None else rows
        if self.num_rows <= rows:
            chosen = list(range(len(self.blocks)))
        else:
            mean_rows = self.num_rows / len(self.blocks)
            k = max(1, min(len(self.blocks), int(np.ceil(rows / mean_rows))))
            chosen = sorted(set(np.linspace(0, len(self.blocks) - 1, k).round().astype(int).tolist()))
        values = pa.concat_arrays([c for b in chosen for c in self._read_block(b).chunks])
        records = self._window_rows(chosen)
        return self.decode(values[:rows], records[:rows])


class _BatchMaker:
    """Builds one rank's batch ``b``; keeps the (at most two) windows the current batches need."""

    def __init__(self, stream: ParquetStream, epoch: int, rank: int, world: int, per_proc: int, seed: int,
                 pin_memory: bool) -> None:
        self.s, self.rank, self.world, self.per_proc, self.pin = stream, rank, world, per_proc, pin_memory
        self.layout = stream.epoch_layout(epoch, seed)
        self.starts = np.cumsum([0] + [len(perm) for _, perm in self.layout])
        self.cache: Dict[int, Tuple[Any, np.ndarray]] = {}

    def window(self, w: int) -> Tuple[Any, np.ndarray]:
        import pyarrow as pa

        if w not in self.cache:
            for old in [k for k in self.cache if k < w]:  # windows are visited in order
                del self.cache[old]
            blocks = self.layout[w][0]
            values = pa.concat_arrays([c for b in blocks for c in self.s._read_block(b).chunks])
            self.cache[w] = (values, self.s._window_rows(blocks))
        return self.cache[w]

    def __call__(self, b: int) -> Any:
        import pyarrow as pa

        g = self.per_proc * self.world
        lo = b * g + self.rank * self.per_proc
        parts, records = [], []
        for w, offsets in self.s.rows_of_batch(self.layout, self.starts, lo, lo + self.per_proc):
            values, rows = self.window(w)
            parts.append(values.take(pa.array(offsets)))
            records.append(rows[offsets])
        batch = self.s.decode(pa.concat_arrays(parts) if len(parts) > 1 else parts[0], np.concatenate(records))
        return _pin(batch) if self.pin else batch


def _pin(batch: Any) -> Any:
    if isinstance(batch, dict):
        return {k: v.pin_memory() if torch.is_tensor(v) else v for k, v in batch.items()}
    return batch.pin_memory() if torch.is_tensor(batch) else batch


def _prefetched(make: Any, jobs: range, depth: int) -> Iterator[Any]:
    """Run ``make(b)`` for each job in a background thread, at most ``depth`` ahead. Errors are
    re-raised in the consumer; closing the generator stops the thread."""
    q: "queue.Queue[Tuple[str, Any]]" = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def work() -> None:
        try:
            for b in jobs:
                item: Tuple[str, Any] = ("ok", make(b))
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            q.put(("error", e))
            return
        q.put(("done", None))

    thread = threading.Thread(target=work, name="multissl-stream", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = q.get()
            if kind == "done":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        while thread.is_alive():
            try:  # unblock a worker waiting on a full queue
                q.get_nowait()
            except queue.Empty:
                pass
            thread.join(timeout=0.05)


def _to_python(values: Any, where: str) -> Any:
    """An Arrow array of one column -> what adapters' ``prepare`` accepts: a numpy array for
    equal-shaped numeric (nested) lists, else a list (bytes, ``{"bytes", "path"}`` dicts,
    strings, arrays of different lengths)."""
    import pyarrow.types as pt

    t = values.type
    if pt.is_binary(t) or pt.is_large_binary(t) or pt.is_string(t) or pt.is_large_string(t):
        return values.to_pylist()
    if pt.is_struct(t):
        return values.to_pylist()  # e.g. datasets' Image feature {"bytes": ..., "path": ...}
    if pt.is_list(t) or pt.is_large_list(t) or pt.is_fixed_size_list(t):
        shape, leaf = _uniform_shape(values)
        if shape is not None and (pt.is_integer(leaf.type) or pt.is_floating(leaf.type)):
            a = leaf.to_numpy(zero_copy_only=False).reshape((len(values),) + shape)
            return a if a.flags.writeable else a.copy()  # torch refuses read-only buffers
        return [None if v is None else np.asarray(v) for v in values.to_pylist()]
    if pt.is_integer(t) or pt.is_floating(t):
        return np.array(values.to_numpy(zero_copy_only=False)).reshape(-1, 1)
    raise DataError(f"{where}: column type {t} is not something an adapter reads "
                    "(expected bytes, strings, image structs or lists of numbers)")


def _uniform_shape(values: Any) -> Tuple[Optional[Tuple[int, ...]], Any]:
    """(per-record shape, flat leaf values) when every record has the same nested shape and no
    nulls, else (None, None)."""
    import pyarrow.compute as pc
    import pyarrow.types as pt

    shape: List[int] = []
    arr = values
    n = len(values)
    while pt.is_list(arr.type) or pt.is_large_list(arr.type) or pt.is_fixed_size_list(arr.type):
        if arr.null_count:
            return None, None
        if pt.is_fixed_size_list(arr.type):
            size = arr.type.list_size
        else:
            lengths = pc.list_value_length(arr)
            lo, hi = pc.min(lengths).as_py(), pc.max(lengths).as_py()
            if n and lo != hi:
                return None, None
            size = lo or 0
        shape.append(size)
        arr = arr.flatten()
        n *= size
    if arr.null_count:
        return None, None
    return tuple(shape), arr


def is_stream(data: Any) -> bool:
    """True for data the trainer reads batch by batch (a :class:`ParquetStream`)."""
    return hasattr(data, "batches") and hasattr(data, "epoch_layout")


__all__ = ["ParquetStream", "parquet_files", "is_stream", "COLUMN_GUESSES"]
