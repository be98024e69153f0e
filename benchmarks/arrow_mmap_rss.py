"""Why multissl.streaming reads Parquet row groups instead of memory-mapping Arrow: RSS after one
shuffled epoch of batch reads, both ways, over the same records.

Writes N records of 64 float32 (256 MB at 1M) once as an Arrow IPC file and once as Parquet
(row groups of 4,096), then, each in a fresh child process:

- ``mmap``: ``pyarrow.memory_map`` + ``ipc.open_file(...).read_all()`` (zero-copy, what a
  ``datasets`` Arrow cache gives) and ``table.take`` of every batch of a full random permutation
  -- the obvious "random access into a memory-mapped file" loader;
- ``stream``: :class:`multissl.streaming.ParquetStream` batches of one epoch (window shuffle).

Each child reports VmRSS before the epoch and VmHWM (peak) after. Pages of a memory-mapped file
that a process touches count toward its RSS (file-backed, shared, reclaimable -- but they are what
schedulers and OOM killers see), so the first grows with the file; the second should not.

    .venv/bin/python benchmarks/arrow_mmap_rss.py --records 1000000
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def write(folder: Path, n: int) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    schema = pa.schema([("x", pa.list_(pa.float32(), 64))])
    with pa.OSFile(str(folder / "data.arrow"), "wb") as sink, pa.ipc.new_file(sink, schema) as ipc, \
            pq.ParquetWriter(folder / "data.parquet", schema) as parquet:
        for start in range(0, n, 65536):
            m = min(65536, n - start)
            x = rng.normal(size=(m * 64,)).astype(np.float32)
            table = pa.Table.from_arrays([pa.FixedSizeListArray.from_arrays(pa.array(x), 64)], schema=schema)
            ipc.write_table(table, max_chunksize=4096)
            parquet.write_table(table, row_group_size=4096)


def child(mode: str, folder: Path, batch: int) -> dict:
    import numpy as np
    import pyarrow as pa

    before = status_mb("VmRSS")
    t = time.perf_counter()
    if mode == "mmap":
        table = pa.ipc.open_file(pa.memory_map(str(folder / "data.arrow"))).read_all()
        before = status_mb("VmRSS")
        order = np.random.default_rng(0).permutation(table.num_rows)
        for s in range(0, len(order) - batch + 1, batch):
            chunk = table.take(pa.array(order[s:s + batch]))
            x = np.asarray(chunk.column(0).combine_chunks().flatten()).reshape(batch, 64)  # decode, as a loader would
            del chunk, x
    else:
        from multissl.streaming import ParquetStream

        class Identity:  # decode = to tensor, nothing else
            config: dict = {}

            def prepare(self, data):
                import torch

                return torch.as_tensor(data)

        stream = ParquetStream(folder / "data.parquet", Identity(), shuffle_window=65536, prefetch=2)
        before = status_mb("VmRSS")
        for x in stream.batches(0, 0, 0, 1, batch, seed=0):
            del x
    return {"mode": mode, "rss_before_mb": before, "peak_rss_mb": status_mb("VmHWM"), "rss_after_mb": status_mb("VmRSS"),
            "seconds": time.perf_counter() - t}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--records", type=int, default=1_000_000)
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--output", default=str(REPO / "benchmarks" / "results" / "arrow_mmap_rss.json"))
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--folder", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(args.child, Path(args.folder), args.batch_size)))
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        write(Path(tmp), args.records)
        sizes = {f.name: f.stat().st_size / 2**20 for f in Path(tmp).iterdir()}
        for mode in ("mmap", "stream"):
            out = subprocess.run([sys.executable, __file__, "--child", mode, "--folder", tmp, "--batch-size",
                                  str(args.batch_size)], check=True, capture_output=True, text=True,
                                 env={"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
            r = json.loads(out.stdout.strip().splitlines()[-1])
            r["growth_mb"] = r["peak_rss_mb"] - r["rss_before_mb"]
            rows.append(r)
    print(f"{args.records:,d} records x 64 float32; Arrow file {sizes['data.arrow']:.0f} MB, Parquet {sizes['data.parquet']:.0f} MB")
    for r in rows:
        print(f"{r['mode']:>7}: RSS {r['rss_before_mb']:6.0f} MB before the epoch, peak {r['peak_rss_mb']:6.0f} MB "
              f"(+{r['growth_mb']:.0f} MB), {r['seconds']:.0f} s")
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps({"records": args.records, "file_mb": sizes, "rows": rows,
                                             "command": " ".join(["python"] + sys.argv),
                                             "machine": "2-core CPU, no GPU, shared"}, indent=2))


if __name__ == "__main__":
    main()
