"""Skip or stop on bad records (``on_bad_record``), every built-in adapter.

Each case builds a small source the way a user would end up with it — real files where the
adapter reads files (a PNG that is not one, a JPEG cut in half, a CSV line in Latin-1, an MP4
cut short, a signature file whose line has 6 values) — with k bad records among good ones, and
checks that

- ``"raise"`` (the default) stops with a DataError naming the first bad record;
- ``"skip"`` prepares exactly the good records and reports exactly the k bad ones, by name;
- a source whose records are all bad is a DataError even with ``"skip"``;
- labels held alongside keep their records' rows (records carry their label in their content);
- ``multissl pretrain --on-bad-record skip`` exits 0, warns in one line, and writes the count.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, Callable, List, NamedTuple

import numpy as np
import pytest
import torch
from PIL import Image

from multissl.adapters import get_adapter
from multissl.bad_records import BadRecordPolicy, SkippedRecordsWarning
from multissl.cli import main
from multissl.errors import ConfigError, DataError

GOOD_POINT = "1 2 100 0 1500 600 300\n"


class Case(NamedTuple):
    adapter: str
    #: writes / builds the source under the folder; returns what ``prepare`` takes
    build: Callable[[Path], Any]
    #: records in the source
    total: int
    #: fragments naming the bad records, in the order they are met
    bad: List[str]


# ---------------------------------------------------------------------------- sources
def _png(path: Path, value: int, size: int = 8) -> None:
    Image.fromarray(np.full((size, size, 3), value, np.uint8)).save(path)


def image_folder(d: Path) -> Path:
    root = d / "imgs"
    root.mkdir()
    for i in range(4):
        _png(root / f"good{i}.png", 40 * i)
    (root / "bad1.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((32, 32, 3)) * 255).astype(np.uint8)).save(root / "full.jpg")
    data = (root / "full.jpg").read_bytes()
    (root / "full.jpg").unlink()
    (root / "bad2.jpg").write_bytes(data[: len(data) // 2])  # a JPEG cut in half
    return root


def image_parquet(d: Path) -> Path:
    import datasets

    def png_bytes(v: int) -> bytes:
        import io

        buf = io.BytesIO()
        Image.fromarray(np.full((8, 8), v, np.uint8)).save(buf, format="PNG")
        return buf.getvalue()

    rows = [{"bytes": png_bytes(10), "path": None}, {"bytes": b"garbage bytes", "path": None},
            {"bytes": png_bytes(20), "path": None}, {"bytes": png_bytes(30), "path": None},
            {"bytes": b"\x89PNG\r\n\x1a\ncut", "path": None}]
    ds = datasets.Dataset.from_dict({"image": rows}, features=datasets.Features({"image": datasets.Image()}))
    ds.to_parquet(str(d / "train.parquet"))
    return d / "train.parquet"


def image_array(d: Path) -> np.ndarray:
    x = np.linspace(0, 1, 6)[:, None, None, None] * np.ones((6, 8, 8, 3))
    x[1, 0, 0, 0] = np.nan
    x[4] *= 3.0  # a 0-255 image passed as float: out of [0, 1]
    return x.astype(np.float32)


def text_csv(d: Path) -> Path:
    (d / "m.csv").write_bytes(b"text,label\nhello world,a\ncaf\xe9 au lait,b\n   ,c\nok then,d\nbye now,e\n")
    return d / "m.csv"


def text_list(d: Path) -> List[str]:
    return ["first text", "", "second text", " \t ", "third text"]


def series_array(d: Path) -> np.ndarray:
    x = np.random.default_rng(0).random((7, 2, 20))
    x[2, 1, 5] = np.nan
    x[5, 0, 9] = np.inf
    x[6] = np.nan  # all padding: a zero-length series
    return x


def series_list(d: Path) -> List[np.ndarray]:
    rng = np.random.default_rng(1)
    return [rng.random((2, 12)), np.zeros((2, 0)), rng.random((2, 9)), rng.random((2, 1))]


def _mp4(path: Path, frames: np.ndarray) -> None:
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _bar(t: int = 8, size: int = 16) -> np.ndarray:
    frames = np.full((t, size, size, 3), 20, np.uint8)
    for i in range(t):
        frames[i, :, i:i + 4] = 230
    return frames


def video_folder(d: Path) -> Path:
    root = d / "clips"
    root.mkdir()
    _mp4(root / "a.mp4", _bar())
    _mp4(root / "c.mp4", _bar(6))
    data = (root / "a.mp4").read_bytes()
    (root / "b.mp4").write_bytes(data[:300])  # truncated
    (root / "d.mp4").write_bytes(b"not a video" * 40)  # corrupt
    return root


def video_list(d: Path) -> List[np.ndarray]:
    return [_bar(), np.zeros((0, 16, 16, 3), np.uint8), _bar(5), np.zeros((4, 16, 16, 3), np.float32)]


def signature_folder(d: Path) -> Path:
    root = d / "sigs"
    root.mkdir()
    for k in (1, 2, 4):
        (root / f"U1S{k}.TXT").write_text("3\n" + GOOD_POINT * 3)
    (root / "U1S3.TXT").write_text("3\n" + GOOD_POINT + "3 4 110 1 1500 600\n" + GOOD_POINT)
    (root / "U1S5.TXT").write_text("1\n" + GOOD_POINT)
    return root


def signature_arrays(d: Path) -> List[np.ndarray]:
    rng = np.random.default_rng(2)
    bad = rng.random((6, 3))
    bad[2, 1] = np.inf
    return [rng.random((6, 3)), bad, rng.random((1, 3)), rng.random((5, 3))]


CASES = {
    "image-folder": Case("image", image_folder, 6, ["bad1.png", "bad2.jpg"]),
    "image-parquet": Case("image", image_parquet, 5, ["record 1", "record 4"]),
    "image-array": Case("image", image_array, 6, ["record 1", "record 4"]),
    "text-csv": Case("text", text_csv, 5, ["m.csv line 3", "m.csv line 4"]),
    "text-list": Case("text", text_list, 5, ["record 1", "record 3"]),
    "timeseries-array": Case("timeseries", series_array, 7, ["record 2", "record 5", "record 6"]),
    "timeseries-list": Case("timeseries", series_list, 4, ["record 1", "record 3"]),
    "video-folder": Case("video", video_folder, 4, ["b.mp4", "d.mp4"]),
    "video-list": Case("video", video_list, 4, ["record 1", "record 3"]),
    "signature-folder": Case("signature", signature_folder, 5, ["U1S3.TXT", "U1S5.TXT"]),
    "signature-arrays": Case("signature", signature_arrays, 4, ["record 1", "record 2"]),
}


def _rows(prepared: Any) -> int:
    return len(next(iter(prepared.values()))) if isinstance(prepared, dict) else len(prepared)


@pytest.mark.parametrize("name", list(CASES))
def test_raise_stops_at_the_first_bad_record(name, tmp_path):
    case = CASES[name]
    data = case.build(tmp_path)
    with pytest.raises(DataError) as info:
        get_adapter(case.adapter).prepare(data)  # "raise" is the default
    assert case.bad[0] in str(info.value)
    with pytest.raises(DataError, match=case.bad[0].replace(".", r"\.")):
        get_adapter(case.adapter).prepare(data, on_bad_record="raise")


@pytest.mark.parametrize("name", list(CASES))
def test_skip_prepares_the_good_records_and_reports_the_bad_ones(name, tmp_path):
    case = CASES[name]
    data = case.build(tmp_path)
    policy = BadRecordPolicy("skip")
    prepared = get_adapter(case.adapter).prepare(data, on_bad_record=policy)
    k = len(case.bad)
    assert _rows(prepared) == case.total - k
    assert policy.count == k
    for fragment, skipped in zip(case.bad, policy.skipped):
        assert fragment in skipped.record, (fragment, skipped)
        assert skipped.reason  # says what was wrong
    # a mode string instead of a policy: the same rows, and one warning line with the count
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = get_adapter(case.adapter).prepare(data, on_bad_record="skip")
    assert _rows(again) == case.total - k
    lines = [str(w.message) for w in caught if issubclass(w.category, SkippedRecordsWarning)]
    assert len(lines) == 1 and lines[0].startswith(f"skipped {k} bad ") and "\n" not in lines[0]
    assert case.bad[0] in lines[0]


ALL_BAD = {
    "image": lambda d: [np.zeros((0, 4, 3), np.uint8), np.full((4, 4), np.nan)],
    "text": lambda d: ["", "  ", "\n"],
    "timeseries": lambda d: np.full((3, 2, 10), np.inf),
    "video": lambda d: [np.zeros((0, 8, 8, 3), np.uint8), np.zeros((0, 8, 8), np.uint8)],
    "signature": lambda d: [np.zeros((1, 3)), np.full((4, 3), np.nan)],
}


@pytest.mark.parametrize("adapter", list(ALL_BAD))
def test_skip_with_every_record_bad_is_a_data_error(adapter, tmp_path):
    data = ALL_BAD[adapter](tmp_path)
    with pytest.raises(DataError, match=r"no \w+ left: all \d+ were bad and skipped; the first: record 0"):
        get_adapter(adapter).prepare(data, on_bad_record="skip")


@pytest.mark.parametrize("adapter, data, fragment", [
    ("image", np.zeros(10, np.uint8), "expected (N, H, W)"),                      # wrong rank
    ("timeseries", np.zeros((2, 3, 4, 5)), "expected an (N, T) or (N, C, T)"),  # wrong rank
    ("video", np.zeros((2, 3, 8, 8, 3), np.float32), "expected uint8"),        # wrong dtype
    ("signature", np.zeros((5, 3)), "is one signature"),                         # wrong rank
])
def test_whole_source_errors_still_raise_with_skip(adapter, data, fragment):
    with pytest.raises(DataError) as info:
        get_adapter(adapter).prepare(data, on_bad_record="skip")
    assert fragment in str(info.value)


def test_text_file_without_the_column_still_raises_with_skip(tmp_path):
    (tmp_path / "m.csv").write_text("body\nhello\n")
    with pytest.raises(DataError, match="no column 'text'"):
        get_adapter("text").prepare(str(tmp_path / "m.csv"), on_bad_record="skip")


# ---------------------------------------------------------------------------- labels stay aligned
def test_labels_follow_their_records_when_rows_are_skipped():
    """Each record's content encodes its own label; after skipping, label j belongs to row j."""
    labels = np.arange(8)
    # images: record i is flat gray i * 20
    x = np.stack([np.full((6, 6), i * 20, np.int64) for i in labels])
    x[2, 0, 0], x[5, 3, 3] = -1, 300  # out of 0-255: bad
    policy = BadRecordPolicy("skip")
    prepared = get_adapter("image").prepare(x, on_bad_record=policy)
    kept = policy.drop_skipped(labels)
    assert policy.skipped_indices == [2, 5] and kept.tolist() == [0, 1, 3, 4, 6, 7]
    assert (prepared[:, 0, 3, 3].long() // 20).tolist() == kept.tolist()
    # series: record i is constant i
    s = np.repeat(labels[:, None, None], 10, axis=2).astype(np.float64)
    s[0, 0, 4] = np.nan
    policy = BadRecordPolicy("skip")
    prepared = get_adapter("timeseries").prepare(s, on_bad_record=policy)
    kept = policy.drop_skipped(torch.as_tensor(labels))
    assert prepared["x"][:, 0, 0].long().tolist() == kept.tolist() == list(range(1, 8))
    # texts read with their label column: the label comes with its own line
    import datasets

    ds = datasets.Dataset.from_dict({"text": ["t0", "", "t2", None, "t4"], "label": ["a", "b", "c", "d", "e"]})
    from multissl.adapters.text_io import read_texts

    policy = BadRecordPolicy("skip")
    records = read_texts(ds, label_column="label", policy=policy)
    assert records.texts == ["t0", "t2", "t4"] and records.labels == ["a", "c", "e"]
    assert policy.drop_skipped(["a", "b", "c", "d", "e"]) == ["a", "c", "e"]


def test_pretrain_skips_and_drops_knn_labels_with_their_records(tmp_path):
    from multissl import pretrain

    rng = np.random.default_rng(0)
    x = rng.random((24, 2, 16))
    x[3, 0, 2] = np.nan
    x[10, 1, 7] = np.inf
    y = np.arange(24) % 2
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = pretrain(x, "timeseries", "simclr", epochs=1, batch_size=8, seed=0, output_dir=str(tmp_path / "run"),
                         progress=False, trackers=None, max_steps=2, on_bad_record="skip", knn_data=(x, y, x[:6], y[:6]))
    skipped = model.config["training"]["skipped_records"]
    assert skipped["count"] == 2 and [r["record"] for r in skipped["first"]] == ["record 3", "record 10"]
    assert skipped["knn_data"]["count"] == 3  # records 3 and 10 of the train split, record 3 of the val split
    assert model.config["training"]["num_records"] == 22
    report = json.loads((tmp_path / "run" / "skipped_records.json").read_text())
    assert report["count"] == 2 and [r["index"] for r in report["skipped"]] == [3, 10]
    saved = json.loads((tmp_path / "run" / "final" / "config.json").read_text())
    assert saved["training"]["skipped_records"]["count"] == 2
    assert 'bad records skipped (on_bad_record="skip"): 2' in (tmp_path / "run" / "final" / "README.md").read_text()
    lines = [str(w.message) for w in caught if issubclass(w.category, SkippedRecordsWarning)]
    assert lines[0].startswith("skipped 2 bad records: record 3 (NaN at channel 0, step 2")


def test_pretrain_rejects_an_unknown_on_bad_record_before_reading_data(tmp_path):
    from multissl import pretrain

    with pytest.raises(ConfigError, match="on_bad_record must be one of 'raise', 'skip', got 'ignore'"):
        pretrain(str(tmp_path / "missing"), "image", on_bad_record="ignore", output_dir=str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_policy_drops_rows_of_lists_arrays_and_tensors():
    policy = BadRecordPolicy("skip")
    policy.reject("record 1", "bad", index=1)
    policy.reject("a.csv line 3", "bad")  # no row index: nothing to drop for it
    policy.reject("record 3", "bad", index=3)
    assert policy.count == 3 and policy.skipped_indices == [1, 3]
    assert policy.drop_skipped(["a", "b", "c", "d"]) == ["a", "c"]
    assert policy.drop_skipped(np.arange(5)).tolist() == [0, 2, 4]
    assert policy.drop_skipped(torch.arange(4)).tolist() == [0, 2]
    with pytest.raises(DataError, match="^record 1: bad$"):
        BadRecordPolicy("raise").reject("record 1", "bad", index=1)
    with pytest.raises(ConfigError):
        BadRecordPolicy("warn")


# ---------------------------------------------------------------------------- CLI
CLI_CASES = {
    "image": (image_folder, ["--encoder", "small_cnn"], 2),
    "text": (text_csv, [], 2),
    "timeseries": (lambda d: (np.save(d / "s.npy", series_array(d)), d / "s.npy")[1], [], 3),
    "signature": (signature_folder, [], 2),
}


@pytest.mark.parametrize("adapter", list(CLI_CASES))
def test_cli_skip_exits_0_and_reports_the_count(adapter, tmp_path, capsys):
    build, extra, k = CLI_CASES[adapter]
    data = build(tmp_path)
    out = tmp_path / "out"
    code = main(["pretrain", "--adapter", adapter, "--data", str(data), "--output", str(out), "--epochs", "1",
                 "--batch-size", "2", "--no-progress", "--on-bad-record", "skip", *extra])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    warning = [line for line in captured.err.splitlines() if line.startswith("multissl: warning:")]
    assert len(warning) == 1 and f"skipped {k} bad record" in warning[0], captured.err
    assert f"skipped {k} bad record(s)" in captured.out
    assert json.loads((out / "skipped_records.json").read_text())["count"] == k
    assert json.loads((out / "final" / "config.json").read_text())["training"]["skipped_records"]["count"] == k


def test_cli_default_still_stops_and_an_unknown_value_is_one_line_exit_2(tmp_path, capsys):
    data = image_folder(tmp_path)
    out = tmp_path / "out"
    assert main(["pretrain", "--data", str(data), "--output", str(out), "--no-progress"]) == 2
    assert "bad1.png" in capsys.readouterr().err and not out.exists()
    assert main(["pretrain", "--data", str(data), "--output", str(out), "--on-bad-record", "ignore"]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines == ["multissl: error: on_bad_record must be one of 'raise', 'skip', got 'ignore'"]
    assert not out.exists()


def test_cli_evaluate_skip_drops_labels_with_their_records(tmp_path, capsys):
    rng = np.random.default_rng(0)
    images = (rng.random((24, 8, 8)) * 255).astype(np.uint8)
    np.save(tmp_path / "unlabeled.npy", images)
    assert main(["pretrain", "--data", str(tmp_path / "unlabeled.npy"), "--output", str(tmp_path / "run"),
                 "--encoder", "small_cnn", "--epochs", "1", "--batch-size", "8", "--no-progress"]) == 0
    capsys.readouterr()
    # class k's images are bright in band k; two records are out of [0, 1]
    x = rng.random((20, 8, 8)) * 0.3
    y = np.arange(20) % 2
    x[y == 1, :, 4:] += 0.6
    x[[5, 12]] *= 255.0
    np.savez(tmp_path / "labelled.npz", x=x, y=y)
    folder = tmp_path / "classes"
    for k in (0, 1):
        (folder / f"c{k}").mkdir(parents=True)
        for i in range(6):
            _png(folder / f"c{k}" / f"{i}.png", 30 + 150 * k)
    (folder / "c1" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnope")
    for data, k, total in ((tmp_path / "labelled.npz", 2, 20), (folder, 1, 13)):
        out = tmp_path / f"{data.stem}.json"
        assert main(["evaluate", "--model", str(tmp_path / "run" / "final"), "--data", str(data),
                     "--output", str(out)]) == 2  # the default stops
        err = capsys.readouterr().err
        assert ("record 5" if k == 2 else "broken.png") in err and not out.exists()
        assert main(["evaluate", "--model", str(tmp_path / "run" / "final"), "--data", str(data),
                     "--output", str(out), "--on-bad-record", "skip", "--test-fraction", "0.5"]) == 0
        err = capsys.readouterr().err
        assert f"multissl: warning: skipped {k} bad record" in err
        result = json.loads(out.read_text())
        assert result["train"] + result["test"] == total - k
        assert result["skipped_records"]["count"] == k
    # labels followed their records: the bright band still predicts the class (misaligned labels
    # would flip every label after record 5 and give about chance)
    assert json.loads((tmp_path / "labelled.json").read_text())["accuracy"] >= 0.8
    assert json.loads((tmp_path / "classes.json").read_text())["accuracy"] == 1.0


def test_an_adapter_without_on_bad_record_works_by_default_and_refuses_skip():
    from multissl import pretrain
    from multissl.adapters.timeseries import TimeSeriesAdapter

    class OldAdapter(TimeSeriesAdapter):  # a third-party prepare() without the argument
        def prepare(self, data):
            return super().prepare(data)

    x = np.random.default_rng(0).random((8, 1, 16))
    with pytest.raises(ConfigError, match="does not support on_bad_record='skip'"):
        pretrain(x, OldAdapter(), "simclr", epochs=1, batch_size=4, on_bad_record="skip", progress=False, trackers=None)
    model = pretrain(x, OldAdapter(), "simclr", epochs=1, batch_size=4, max_steps=1, progress=False, trackers=None)
    assert "skipped_records" not in model.config["training"]  # nothing recorded under the default
