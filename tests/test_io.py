"""Data sources named on the command line: arrays, Parquet, saved datasets, labelled folders."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from multissl.adapters import get_adapter
from multissl.errors import DataError
from multissl.io import load_data, load_labelled, save_npy_atomic


def images(n=6, seed=0):
    return np.random.default_rng(seed).integers(0, 255, (n, 8, 8, 3), dtype=np.uint8)


def test_npy_and_npz(tmp_path):
    x = images()
    np.save(tmp_path / "x.npy", x)
    np.savez(tmp_path / "xy.npz", x=x, y=np.arange(6) % 2)
    assert np.array_equal(load_data(str(tmp_path / "x.npy")), x)
    assert np.array_equal(load_data(str(tmp_path / "xy.npz")), x)
    prepared, y, classes = load_labelled(str(tmp_path / "xy.npz"), get_adapter("image"))
    assert prepared.shape == (6, 3, 8, 8) and list(y) == [0, 1, 0, 1, 0, 1] and classes == ["0", "1"]


def test_pickled_npy_is_refused(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="obj.npy"):
        load_data(str(tmp_path / "obj.npy"))


def test_parquet_with_class_labels(tmp_path):
    import datasets

    feats = datasets.Features({"img": datasets.Image(), "label": datasets.ClassLabel(names=["cat", "dog"])})
    ds = datasets.Dataset.from_dict({"img": [Image.fromarray(a) for a in images()], "label": [0, 1, 1, 0, 1, 0]},
                                    features=feats)
    ds.to_parquet(str(tmp_path / "d.parquet"))
    ds.save_to_disk(str(tmp_path / "saved"))
    for src in ("d.parquet", "saved"):
        prepared, y, classes = load_labelled(str(tmp_path / src), get_adapter("image"))
        assert prepared.shape == (6, 3, 8, 8) and list(y) == [0, 1, 1, 0, 1, 0] and classes == ["cat", "dog"]
    with pytest.raises(DataError, match="no column 'target'"):
        load_labelled(str(tmp_path / "d.parquet"), get_adapter("image"), label_column="target")


def test_class_folders(tmp_path):
    for c in ("b", "a"):
        (tmp_path / c).mkdir()
        for i, a in enumerate(images(3, seed=ord(c))):
            Image.fromarray(a).save(tmp_path / c / f"{i}.png")
    prepared, y, classes = load_labelled(str(tmp_path), get_adapter("image"))
    assert classes == ["a", "b"] and list(y) == [0, 0, 0, 1, 1, 1] and prepared.shape == (6, 3, 8, 8)


@pytest.mark.parametrize("name, content, needle", [
    ("missing", None, "no such file or folder"),
    ("bad.npy", b"not an array", "cannot read as a .npy array"),
    ("bad.parquet", b"PAR1 broken", "cannot read Parquet"),
])
def test_bad_sources_name_the_file(tmp_path, name, content, needle):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DataError, match=needle) as e:
        load_data(str(path))
    assert name in str(e.value)


def test_save_npy_atomic_leaves_no_temp_files(tmp_path):
    save_npy_atomic(np.ones((2, 3), np.float32), str(tmp_path / "out" / "z.npy"))
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["z.npy"]
    assert np.load(tmp_path / "out" / "z.npy").shape == (2, 3)
