"""multissl.streaming: Parquet read batch by batch -- order, sharding, resume, decoding, errors."""
from __future__ import annotations

import io
import threading

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from multissl import pretrain
from multissl.errors import DataError
from multissl.cli import main
from multissl.streaming import ParquetStream
from multissl.trainer import TrainConfig, Trainer, epoch_permutation
from tests.toy import ToyMethod, VectorAdapter


def vectors(n: int, d: int = 8, seed: int = 0) -> np.ndarray:
    """Random vectors whose first entry is the record's index, so a batch tells which rows it holds."""
    x = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    x[:, 0] = np.arange(n)
    return x


def write_vectors(path, x: np.ndarray, row_group: int) -> None:
    column = pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), x.shape[1])
    pq.write_table(pa.table({"x": column, "label": np.arange(len(x))}), path, row_group_size=row_group)


@pytest.fixture
def folder(tmp_path):
    """100 records in two files (60 + 40 rows), row groups of 10."""
    x = vectors(100)
    write_vectors(tmp_path / "a.parquet", x[:60], 10)
    write_vectors(tmp_path / "b.parquet", x[60:], 10)
    return tmp_path, x


def ids(batch: torch.Tensor) -> list:
    return batch[:, 0].round().long().tolist()


def weights(module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in module.parameters()])


# ---------------------------------------------------------------- order and sharding
def test_reads_metadata_and_picks_the_named_column(folder):
    root, _ = folder
    s = ParquetStream(root, VectorAdapter())
    assert len(s) == 100 and len(s.blocks) == 10 and s.column == "x"  # "x" guessed over "label"
    with pytest.raises(DataError, match="no column 'pixels'"):
        ParquetStream(root, VectorAdapter(), column="pixels")


def test_one_window_is_exactly_the_in_memory_order(folder):
    root, _ = folder
    s = ParquetStream(root, VectorAdapter(), shuffle_window=100)
    for epoch in (0, 3):
        assert s.epoch_order(epoch, seed=5).tolist() == epoch_permutation(100, 5, epoch).tolist()


def test_window_shuffle_is_a_seeded_permutation_in_bounded_windows(folder):
    root, _ = folder
    s = ParquetStream(root, VectorAdapter(), shuffle_window=30)
    layout = s.epoch_layout(0, seed=0)
    # 10 row groups of 10 rows, windows of >= 30 rows: 3 + 3 + 3 + 1 row groups
    assert [len(blocks) for blocks, _ in layout] == [3, 3, 3, 1]
    order = s.epoch_order(0, seed=0)
    assert sorted(order.tolist()) == list(range(100))
    # a window holds exactly the rows of its row groups: records never travel between windows
    pos = 0
    for blocks, perm in layout:
        rows = {r for b in blocks for r in range(b * 10, b * 10 + 10)}
        assert set(order[pos:pos + len(perm)].tolist()) == rows
        pos += len(perm)
    assert order.tolist() == s.epoch_order(0, seed=0).tolist()  # a pure function of (seed, epoch)
    assert order.tolist() != s.epoch_order(1, seed=0).tolist()
    assert order.tolist() != s.epoch_order(0, seed=1).tolist()


@pytest.mark.parametrize("world", [1, 2, 3])
def test_ranks_get_disjoint_shares_of_each_global_batch_and_the_same_count(folder, world):
    root, _ = folder
    s = ParquetStream(root, VectorAdapter(), shuffle_window=30)
    per_proc = 8
    g = per_proc * world
    order = s.epoch_order(2, seed=7)
    shares = [[ids(b) for b in s.batches(2, 0, r, world, per_proc, seed=7)] for r in range(world)]
    assert [len(sh) for sh in shares] == [100 // g] * world  # equal step counts: DDP never waits
    for b in range(100 // g):
        got = [shares[r][b] for r in range(world)]
        assert all(len(x) == per_proc for x in got)
        flat = [i for x in got for i in x]
        assert len(set(flat)) == g  # disjoint
        assert flat == order[b * g:(b + 1) * g].tolist()  # rank r holds slice r of global batch b


def test_starting_mid_epoch_gives_the_same_batches(folder):
    root, _ = folder
    s = ParquetStream(root, VectorAdapter(), shuffle_window=30)
    full = [ids(b) for b in s.batches(1, 0, 1, 2, 6, seed=0)]
    tail = [ids(b) for b in s.batches(1, 3, 1, 2, 6, seed=0)]
    assert tail == full[3:]


def test_prefetch_thread_stops_when_the_consumer_stops(folder):
    root, _ = folder
    s = ParquetStream(root, VectorAdapter(), prefetch=2)
    before = threading.active_count()
    it = s.batches(0, 0, 0, 1, 4, seed=0)
    next(it)
    it.close()
    assert threading.active_count() == before
    assert not any(t.name == "multissl-stream" for t in threading.enumerate())


# ---------------------------------------------------------------- training
def make_trainer(stream_or_data, adapter, **cfg):
    torch.manual_seed(0)
    method = ToyMethod(adapter.build_encoder(), 8)
    config = TrainConfig(epochs=cfg.pop("epochs", 2), batch_size=cfg.pop("batch_size", 8), seed=0, progress=False,
                         trackers=None, **cfg)
    return Trainer(method, adapter, config)


@pytest.mark.parametrize("accum", [1, 2])
def test_streaming_with_one_window_trains_exactly_like_in_memory(folder, accum):
    root, x = folder
    mem = pretrain(x, adapter="toyvector", method="simclr", epochs=2, batch_size=8, progress=False, trackers=None,
                   grad_accum_steps=accum)
    streamed = pretrain(str(root), adapter="toyvector", method="simclr", epochs=2, batch_size=8, progress=False,
                        trackers=None, streaming={"shuffle_window": 1000}, grad_accum_steps=accum)
    assert mem.adapter.get_config() == streamed.adapter.get_config()  # fit on all 100 rows, same order
    assert torch.equal(weights(mem.encoder), weights(streamed.encoder))
    assert streamed.config["training"]["streaming"] is True


def test_unknown_streaming_option_is_a_config_error(folder):
    from multissl.errors import ConfigError

    root, _ = folder
    with pytest.raises(ConfigError, match="unknown streaming option.*window_rows"):
        pretrain(str(root), adapter="toyvector", method="simclr", streaming={"window_rows": 10})


class Crash(Exception):
    pass


def test_resume_mid_epoch_gives_the_uninterrupted_weights(folder, tmp_path):
    root, _ = folder

    def run(out, resume=False, crash_at=None):
        adapter = VectorAdapter()
        stream = ParquetStream(root, adapter, shuffle_window=30)
        adapter.fit(stream.sample())
        trainer = make_trainer(stream, adapter, output_dir=str(out), checkpoint_every=1, resume=resume)
        if crash_at:
            calls = {"n": 0}
            original = adapter.views

            def views_then_crash(*args, **kwargs):
                calls["n"] += 1
                if calls["n"] == crash_at:
                    raise Crash()
                return original(*args, **kwargs)

            adapter.views = views_then_crash
        trainer.fit(stream)
        return trainer

    full = run(tmp_path / "full")
    assert full.resolved["steps_per_epoch"] == 12
    with pytest.raises(Crash):
        run(tmp_path / "cut", crash_at=17)  # dies in step 17: epoch 2, batch 5 (checkpoint step 16)
    resumed = run(tmp_path / "cut", resume=True)
    assert torch.equal(weights(full.method.encoder), weights(resumed.method.encoder))
    assert [h["epoch"] for h in resumed.history] == [1, 2]


def test_streaming_fit_uses_a_bounded_sample(folder):
    root, x = folder
    s = ParquetStream(root, VectorAdapter(), fit_rows=25)
    sample = s.sample()
    # 25 rows of 10-row groups -> 3 groups spread evenly (0, 4/5, 9), truncated to 25 rows
    assert sample.shape == (25, 8)
    assert ids(sample)[:10] == list(range(10))
    assert ids(sample)[20:] == list(range(90, 95))


# ---------------------------------------------------------------- decoding and errors
def png_bytes(rng, size=(6, 5)) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, size + (3,), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def test_image_bytes_column_decodes_like_in_memory(tmp_path):
    from multissl.adapters import get_adapter

    rng = np.random.default_rng(0)
    images = [png_bytes(rng) for _ in range(20)]
    pq.write_table(pa.table({"image": images}), tmp_path / "img.parquet", row_group_size=5)
    adapter = get_adapter("image")
    s = ParquetStream(tmp_path / "img.parquet", adapter, shuffle_window=10, prefetch=0)
    adapter.fit(s.sample())
    reference = get_adapter("image").prepare(images)  # (20, 3, 6, 5) uint8
    order = s.epoch_order(0, seed=3)
    batches = list(s.batches(0, 0, 0, 1, 4, seed=3))
    assert len(batches) == 5 and batches[0].dtype == torch.uint8 and batches[0].shape == (4, 3, 6, 5)
    assert torch.equal(torch.cat(batches), reference[torch.as_tensor(order)])


def test_datasets_image_feature_column(tmp_path):
    import datasets
    from PIL import Image

    from multissl.adapters import get_adapter

    rng = np.random.default_rng(1)
    arrays = [rng.integers(0, 256, (4, 4, 3), dtype=np.uint8) for _ in range(6)]
    ds = datasets.Dataset.from_dict({"img": [Image.fromarray(a) for a in arrays], "label": list(range(6))})
    ds = ds.cast_column("img", datasets.Image())
    ds.to_parquet(str(tmp_path / "train.parquet"))
    s = ParquetStream(tmp_path, get_adapter("image"), prefetch=0)
    assert s.column == "img"
    batch = next(s.batches(0, 0, 0, 1, 6, seed=0))
    order = s.epoch_order(0, seed=0)
    assert torch.equal(batch, torch.from_numpy(np.stack([arrays[i] for i in order])).permute(0, 3, 1, 2))


def test_bad_row_is_a_data_error_naming_file_and_row(tmp_path):
    x = vectors(40)
    x[33, 2] = np.nan  # row 13 of the second file
    write_vectors(tmp_path / "a.parquet", x[:20], 10)
    write_vectors(tmp_path / "b.parquet", x[20:], 10)
    s = ParquetStream(tmp_path, VectorAdapter(), fit_rows=10)
    with pytest.raises(DataError, match=r"b\.parquet: row 13: not finite"):
        for _ in s.batches(0, 0, 0, 1, 8, seed=0):
            pass


def test_bad_sources_are_data_errors(tmp_path):
    with pytest.raises(DataError, match="streaming reads Parquet files from disk; got ndarray"):
        ParquetStream(np.zeros((4, 8)), VectorAdapter())
    with pytest.raises(DataError, match="no such file"):
        ParquetStream(tmp_path / "missing", VectorAdapter())
    (tmp_path / "x.npy").write_bytes(b"")
    with pytest.raises(DataError, match="Parquet files only"):
        ParquetStream(tmp_path / "x.npy", VectorAdapter())
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(DataError, match="broken.parquet: cannot read as Parquet"):
        ParquetStream(tmp_path / "broken.parquet", VectorAdapter())


# ---------------------------------------------------------------- CLI
def test_cli_pretrain_streaming_on_a_tiny_parquet_file(folder, tmp_path, capsys):
    root, _ = folder
    out = tmp_path / "run"
    code = main(["pretrain", "--adapter", "toyvector", "--method", "simclr", "--data", str(root / "a.parquet"),
                 "--streaming", "--column", "x", "--epochs", "1", "--batch-size", "8", "--output", str(out),
                 "--no-progress"])
    assert code == 0
    assert (out / "final" / "model.safetensors").is_file()
    import json

    training = json.loads((out / "final" / "config.json").read_text())["training"]
    assert training["streaming"] is True and training["num_records"] == 60


def test_cli_streaming_errors_exit_2(folder, tmp_path, capsys):
    root, _ = folder
    assert main(["pretrain", "--adapter", "toyvector", "--data", str(root), "--column", "x"]) == 2
    assert "--column goes with --streaming" in capsys.readouterr().err
    assert main(["pretrain", "--adapter", "toyvector", "--method", "simclr", "--data", str(tmp_path / "nope"),
                 "--streaming", "--output", str(tmp_path / "r")]) == 2
    assert "no such file or folder" in capsys.readouterr().err


# ---------------------------------------------------------------- two processes
def test_two_processes_under_accelerate_launch_get_disjoint_equal_shares(folder, tmp_path):
    """``accelerate launch --multi_gpu --num_processes 2`` on CPU (gloo), as tests/test_distributed.py."""
    import json
    from pathlib import Path

    from tests.launch import launch_two

    root, _ = folder
    script = Path(__file__).with_name("streaming_ddp_script.py")
    launch_two(script, "--data", root, "--out", tmp_path / "res", timeout=240)
    ranks = [json.loads((tmp_path / f"res.rank{r}.json").read_text()) for r in range(2)]
    assert [r["world"] for r in ranks] == [2, 2]
    assert len(ranks[0]["batches"]) == len(ranks[1]["batches"]) == 2 * (100 // 16)  # 2 epochs, same count
    s = ParquetStream(root, VectorAdapter(), shuffle_window=30)
    for epoch in range(2):
        order = s.epoch_order(epoch, seed=0).tolist()
        for b in range(100 // 16):
            for r in range(2):
                assert ranks[r]["batches"][epoch * 6 + b] == order[b * 16 + r * 8: b * 16 + (r + 1) * 8]
    assert ranks[0]["weights"] == ranks[1]["weights"]  # DDP kept the replicas in step
