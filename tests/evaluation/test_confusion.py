"""Confusion counts against a hand-made case, and the PNG."""
import numpy as np
import pytest

from multissl.evaluation.confusion import confusion_counts, plot_confusion_matrices


def test_counts_by_hand():
    m = confusion_counts([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 0, 2], 3)
    assert m.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]
    assert m.sum() == 6 and np.trace(m) == 4


def test_bad_inputs():
    with pytest.raises(ValueError, match="3 labels but 2"):
        confusion_counts([0, 1, 1], [0, 1], 2)
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        confusion_counts([0, 2], [0, 1], 2)


def test_png(tmp_path):
    m = confusion_counts([0, 1, 1], [0, 1, 0], 2)
    path = plot_confusion_matrices({"a": m, "b": m}, ["ham", "spam"], tmp_path / "cm.png", "t")
    assert path.stat().st_size > 3000 and not list(tmp_path.glob(".*tmp*"))
