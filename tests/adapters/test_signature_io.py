"""The SVC2004 reader on good and bad files; every error names the file and the line.

Also holds the writers of small synthetic SVC2004 folders used by the other signature tests.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pytest

from multissl.adapters.signature_io import list_signature_files, read_svc2004, svc2004_ids
from multissl.errors import DataError


def write_svc2004(path: Path, points: np.ndarray) -> Path:
    """Write (T, 7) or (T, 4) samples in the SVC2004 text format."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = "\n".join(" ".join(str(int(round(v))) for v in row) for row in points)
    path.write_text(f"{len(points)}\n{rows}\n")
    return path


def synthetic_signature(rng: np.random.Generator, base: np.ndarray, noise: float, slow: float = 1.0) -> np.ndarray:
    """A (T, 7) SVC2004-like signing of a writer's ``base`` trajectory (K, 2): resampled at a
    random speed (``slow`` > 1: a slower, forger-like signing), wobbled by ``noise`` (in tablet
    units), three strokes, a pressure profile."""
    t = max(12, int(len(base) * slow * rng.uniform(0.9, 1.1)))
    u = np.linspace(0, len(base) - 1, t)
    xy = np.stack([np.interp(u, np.arange(len(base)), base[:, k]) for k in range(2)], axis=1)
    xy += rng.normal(0, noise, size=xy.shape).cumsum(0) * 0.3
    time = np.arange(t) * 10.0 + 1_000_000
    pen = np.ones(t)
    pen[[0, t // 3, 2 * t // 3]] = 0  # stroke starts
    az = np.full(t, 1500.0)
    alt = np.full(t, 600.0)
    pressure = 400 + 200 * np.sin(np.linspace(0, 3 * np.pi, t)) + rng.normal(0, 10, t)
    return np.column_stack([xy[:, 0], xy[:, 1], time, pen, az, alt, pressure])


def synthetic_svc2004_folder(root: Path, users: int = 4, genuine: int = 6, forgeries: int = 4, seed: int = 0,
                             length: int = 40, forgery_noise: float = 40.0) -> Path:
    """U<u>S<s>.TXT files: per user ``genuine`` signings of its own trajectory, then
    ``forgeries`` slower, noisier signings of the same trajectory by "someone else"."""
    rng = np.random.default_rng(seed)
    for u in range(1, users + 1):
        k = np.linspace(0, 1, length)
        freq = rng.uniform(1, 4, size=(2, 3))
        phase = rng.uniform(0, 2 * np.pi, size=(2, 3))
        wave = lambda f, p: np.sin(2 * np.pi * f * k[:, None] + p).sum(1)  # noqa: E731
        base = np.stack([2000 * k + 300 * wave(freq[0], phase[0]), 800 * wave(freq[1], phase[1])], axis=1) + 5000
        for s in range(1, genuine + forgeries + 1):
            forged = s > genuine
            sig = synthetic_signature(rng, base, noise=forgery_noise if forged else 8.0, slow=1.6 if forged else 1.0)
            write_svc2004(root / f"U{u}S{s}.TXT", sig)
    return root


GOOD = "4\n1 2 100 0 1500 600 300\n3 4 110 1 1500 600 310\n5 6 120 1 1500 600 320\n7 8 130 1 1500 600 0\n"


def write(tmp_path: Path, text: str, name: str = "U1S1.TXT") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_reads_task2_file(tmp_path):
    a = read_svc2004(write(tmp_path, GOOD))
    assert a.shape == (4, 7) and a.dtype == np.float64
    assert a[1].tolist() == [3, 4, 110, 1, 1500, 600, 310]


def test_reads_task1_file_crlf_and_blank_lines(tmp_path):
    a = read_svc2004(write(tmp_path, "3\r\n1 2 0 0\r\n\r\n3 4 10 1\r\n5 6 20 1\r\n\r\n"))
    assert a.shape == (3, 4) and a[:, 0].tolist() == [1, 3, 5]


@pytest.mark.parametrize("text, line, message", [
    ("4\n1 2 100 0 1500 600 300\n3 4 110 1 1500 600\n5 6 120 1 1500 600 320\n7 8 130 1 1500 600 0\n", 3,
     "malformed point line: expected 7 values like the first point line, got 6"),
    ("2\n1 2 3 4 5\n1 2 3 4 5\n", 2, "malformed point line: expected 7 values"),
    ("4\n1 2 100 0 1500 600 300\n3 4 110 1 1500 600 310\n5 6 120 1 1500 600 320\n", 4,
     "header (line 1) says 4 points but the file has 3 point lines"),
    ("2\n1 2 100 0 1500 600 300\n3 4 110 1 1500 600 310\n5 6 120 1 1500 600 320\n", 4,
     "header (line 1) says 2 points but the file has 3 point lines"),
    ("1\n1 2 100 0 1500 600 300\n", 2, "a signature needs at least 2 points, got 1"),
    ("2\n1 2 100 0 1500 600 300\n3 4 abc 1 1500 600 310\n", 3, "non-numeric value 'abc'"),
    ("2\n1 2 100 0 1500 600 300\n3 4 nan 1 1500 600 310\n", 3, "non-finite value"),
    ("two\n1 2 100 0 1500 600 300\n", 1, "expected the number of points (an integer), got 'two'"),
])
def test_bad_files_name_file_and_line(tmp_path, text, line, message):
    p = write(tmp_path, text)
    with pytest.raises(DataError) as err:
        read_svc2004(p)
    assert str(err.value).startswith(f"{p} line {line}: ")
    assert message in str(err.value)


def test_empty_and_missing_files(tmp_path):
    with pytest.raises(DataError, match=r"U1S1.TXT: empty file"):
        read_svc2004(write(tmp_path, "\n\n"))
    with pytest.raises(DataError, match=r"nope.txt: no such file"):
        read_svc2004(tmp_path / "nope.txt")


def test_folder_listing_is_natural_order_and_skips_hidden(tmp_path):
    for name in ["U10S1.TXT", "U2S10.TXT", "U2S2.txt", "notes.md"]:
        write(tmp_path, GOOD, name)
    (tmp_path / ".hidden").mkdir()
    write(tmp_path / ".hidden", GOOD, "U1S1.TXT")
    names = [p.name for p in list_signature_files(tmp_path)]
    assert names == ["U2S2.txt", "U2S10.TXT", "U10S1.TXT"]
    assert [p.name for p in list_signature_files(str(tmp_path / "U2*"))] == ["U2S2.txt", "U2S10.TXT"]
    with pytest.raises(DataError, match="no files match"):
        list_signature_files(str(tmp_path / "X*"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no signature files"):
        list_signature_files(empty)


def test_svc2004_ids():
    assert svc2004_ids("data/U12S34.TXT") == (12, 34)
    with pytest.raises(DataError, match="not an SVC2004 file name"):
        svc2004_ids("sig_1.txt")


def test_synthetic_folder_round_trips(tmp_path):
    root = synthetic_svc2004_folder(tmp_path, users=2, genuine=2, forgeries=1)
    files: Sequence[Path] = list_signature_files(root)
    assert [svc2004_ids(f) for f in files] == [(1, 1), (1, 2), (1, 3), (2, 1), (2, 2), (2, 3)]
    assert all(read_svc2004(f).shape[1] == 7 for f in files)
