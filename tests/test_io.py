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


def write_idx(path, array, code):
    import gzip

    header = bytes([0, 0, code, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(array.dtype.newbyteorder(">")).tobytes())


def test_mnist_style_idx_folder(tmp_path):
    x = np.random.default_rng(0).integers(0, 255, (5, 4, 4), dtype=np.uint8)
    y = np.array([3, 1, 3, 0, 1], dtype=np.uint8)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", x, 0x08)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", y, 0x08)
    assert np.array_equal(load_data(str(tmp_path)), x)
    prepared, codes, classes = load_labelled(str(tmp_path), get_adapter("image"))
    assert prepared.shape == (5, 1, 4, 4) and classes == ["0", "1", "3"] and list(codes) == [2, 1, 2, 0, 1]
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", y[:4], 0x08)
    with pytest.raises(DataError, match="5 images but 4 labels"):
        load_labelled(str(tmp_path), get_adapter("image"))


def test_truncated_idx_is_a_clear_error(tmp_path):
    write_idx(tmp_path / "x-images-idx3-ubyte.gz", np.zeros((3, 2, 2), np.uint8), 0x08)
    import gzip

    raw = gzip.open(tmp_path / "x-images-idx3-ubyte.gz").read()[:-3]
    with gzip.open(tmp_path / "x-images-idx3-ubyte.gz", "wb") as f:
        f.write(raw)
    with pytest.raises(DataError, match="header says"):
        load_data(str(tmp_path / "x-images-idx3-ubyte.gz"))


def test_parquet_glob_selects_one_split(tmp_path):
    import datasets

    for split, n in (("train", 4), ("test", 2)):
        datasets.Dataset.from_dict({"image": [Image.fromarray(a) for a in images(n)], "label": [0, 1] * (n // 2)},
                                   features=datasets.Features({"image": datasets.Image(), "label": datasets.Value("int64")})
                                   ).to_parquet(str(tmp_path / f"{split}-00000-of-00001.parquet"))
    assert load_data(str(tmp_path / "train-*.parquet")).num_rows == 4
    with pytest.raises(DataError, match="matches no file"):
        load_data(str(tmp_path / "valid-*.parquet"))
