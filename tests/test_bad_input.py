"""Bad input, every adapter, through the CLI: one line on stderr naming the file (and the record,
line or column where there is one) and what was expected, exit status 2, no traceback, and no
output folder left behind.

Each case writes a real file the way a user would end up with it (a PNG that is not one, a JPEG
cut in half, a CSV with non-UTF-8 bytes, a series with a NaN in the middle, a signature file
whose header lies) and runs ``multissl pretrain`` (or ``evaluate``) on it in-process.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, List

import numpy as np
import pytest
from PIL import Image

from multissl.cli import main

GOOD_POINT = "1 2 100 0 1500 600 300\n"


def png_that_is_not(d: Path) -> Path:
    (d / "imgs").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(d / "imgs" / "a.png")
    (d / "imgs" / "b.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    return d / "imgs"


def truncated_jpeg(d: Path) -> Path:
    (d / "imgs").mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((32, 32, 3)) * 255).astype(np.uint8)).save(d / "imgs" / "a.jpg")
    data = (d / "imgs" / "a.jpg").read_bytes()
    (d / "imgs" / "b.jpg").write_bytes(data[: len(data) // 2])
    return d / "imgs"


def npy(array: np.ndarray, name: str = "data.npy") -> Callable[[Path], Path]:
    def write(d: Path) -> Path:
        np.save(d / name, array)
        return d / name
    return write


def text(content: bytes, name: str = "messages.csv") -> Callable[[Path], Path]:
    def write(d: Path) -> Path:
        (d / name).write_bytes(content)
        return d / name
    return write


def svc(content: str) -> Callable[[Path], Path]:
    def write(d: Path) -> Path:
        (d / "sigs").mkdir()
        (d / "sigs" / "U1S1.TXT").write_text(content)
        return d / "sigs"
    return write


def empty_folder(d: Path) -> Path:
    (d / "imgs").mkdir()
    return d / "imgs"


def series_with(value: float, record: int, channel: int, step: int) -> np.ndarray:
    x = np.random.default_rng(0).random((10, 2, 30))
    x[record, channel, step] = value
    return x


# (adapter, writes the bad data and returns its path, fragments the one-line message must contain)
CASES = [
    ("image", png_that_is_not, ["b.png", "cannot decode image"]),
    ("image", truncated_jpeg, ["b.jpg", "cannot decode image"]),
    ("image", empty_folder, ["imgs", "no image files"]),
    ("image", npy(np.zeros(10, np.uint8)), ["data.npy", "shape (10,)", "expected (N, H, W)"]),
    ("image", npy(np.array([["a"] * 4] * 3)), ["data.npy", "dtype"]),
    ("text", text(b"text\nhello world\ncaf\xe9 ok\n"), ["messages.csv", "line 3", "UTF-8"]),
    ("text", text(b"body\nhello world\nok then\n"), ["messages.csv", "no column 'text'"]),
    ("text", text(b""), ["messages.csv", "empty"]),
    ("timeseries", npy(series_with(np.nan, 3, 1, 5)), ["data.npy", "record 3", "NaN", "channel 1, step 5"]),
    ("timeseries", npy(series_with(np.inf, 4, 0, 7)), ["data.npy", "record 4", "infinity"]),
    ("timeseries", npy(np.zeros((10, 2, 0))), ["data.npy", "record 0", "empty series"]),
    ("signature", svc("3\n" + GOOD_POINT + "3 4 110 1 1500 600\n" + GOOD_POINT),
     ["U1S1.TXT line 3", "expected 7 values"]),
    ("signature", svc("4\n" + GOOD_POINT * 2), ["U1S1.TXT", "says 4 points but the file has 2"]),
    ("signature", svc("1\n" + GOOD_POINT), ["U1S1.TXT line 2", "at least 2 points"]),
]


def _run(argv: List[str], capsys) -> tuple:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.err


@pytest.mark.parametrize("adapter, write, fragments", CASES,
                         ids=[f"{a}-{i}" for i, (a, _, _) in enumerate(CASES)])
def test_pretrain_on_bad_data_is_one_line_exit_2(adapter, write, fragments, tmp_path, capsys):
    data = write(tmp_path)
    out = tmp_path / "out"
    code, err = _run(["pretrain", "--adapter", adapter, "--data", str(data), "--output", str(out), "--epochs", "1",
                      "--no-progress"], capsys)
    assert code == 2
    lines = [line for line in err.splitlines() if line.startswith("multissl")]
    assert len(lines) == 1 and lines[0].startswith("multissl: error: "), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    assert not out.exists()  # nothing half-written


def test_every_builtin_adapter_has_bad_input_cases():
    from multissl.adapters import _BUILTIN

    assert set(_BUILTIN) <= {a for a, _, _ in CASES} | {"video"}  # video: tests/adapters/test_video*.py


@pytest.mark.parametrize("arrays, fragments", [
    ({"x": np.zeros((10, 8, 8), np.uint8), "y": np.arange(9)}, ["10 records in 'x' but 9 labels in 'y'"]),
    ({"x": np.zeros((10, 8, 8), np.uint8)}, ["no label array"]),
])
def test_evaluate_with_bad_labels_is_one_line_exit_2(arrays, fragments, tmp_path, capsys):
    images = (np.random.default_rng(0).random((24, 8, 8)) * 255).astype(np.uint8)
    np.save(tmp_path / "unlabeled.npy", images)
    assert main(["pretrain", "--data", str(tmp_path / "unlabeled.npy"), "--output", str(tmp_path / "run"),
                 "--encoder", "small_cnn", "--epochs", "1", "--batch-size", "8", "--no-progress"]) == 0
    np.savez(tmp_path / "labelled.npz", **arrays)
    out = tmp_path / "m.json"
    code, err = _run(["evaluate", "--model", str(tmp_path / "run" / "final"), "--data", str(tmp_path / "labelled.npz"),
                      "--output", str(out)], capsys)
    assert code == 2 and "Traceback" not in err and not out.exists()
    assert all(f in err for f in fragments), err
