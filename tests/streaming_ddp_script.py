"""Run by tests/test_streaming.py under ``accelerate launch --multi_gpu --num_processes 2`` (CPU,
gloo): streamed pretraining where each process records which Parquet rows it decoded."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from multissl import pretrain  # noqa: E402
from multissl.streaming import ParquetStream  # noqa: E402
from tests.toy import VectorAdapter  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    adapter = VectorAdapter()
    stream = ParquetStream(args.data, adapter, shuffle_window=30)
    seen = []
    decode = stream.decode

    def recording(values, records):
        batch = decode(values, records)
        if len(records) < len(stream):  # not the fit sample
            seen.append([int(r) for r in records])
        return batch

    stream.decode = recording
    model = pretrain(stream, adapter=adapter, method="simclr", epochs=2, batch_size=8, progress=False, trackers=None)
    from accelerate import PartialState

    state = PartialState()
    weights = torch.cat([q.detach().flatten() for q in model.encoder.parameters()])
    Path(f"{args.out}.rank{state.process_index}.json").write_text(json.dumps(
        {"world": state.num_processes, "batches": seen, "weights": weights.tolist()}))


if __name__ == "__main__":
    main()
