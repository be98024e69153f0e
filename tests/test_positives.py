"""Mined positives: the mutual-neighbour table, its checks, and the trainer pairing records."""
from __future__ import annotations

from typing import List

import numpy as np
import pytest
import torch

from multissl.api import pretrain
from multissl.errors import ConfigError
from multissl.positives import check_positives, mutual_neighbours, records_with_partner
from multissl.trainer import TrainConfig, Trainer
from tests.toy import ToyMethod, VectorAdapter, toy_data

# points on a line; nearest neighbours: 0<->1 (mutual), 10->11.5, 11.5<->12 (mutual), 50->12
LINE = np.array([0.0, 1.0, 10.0, 11.5, 12.0, 50.0])


def line_distances() -> np.ndarray:
    return np.abs(LINE[:, None] - LINE[None, :])


def test_mutual_nearest_neighbour_by_hand():
    table = mutual_neighbours(line_distances(), 1)
    assert table.tolist() == [[1], [0], [2], [4], [3], [5]]  # 10 and 50 have no mutual partner: themselves
    assert records_with_partner(table) == 4


def test_mutual_two_nearest_by_hand():
    # 2-NN sets: 0:{1,10} 1:{0,10} 10:{11.5,12} 11.5:{12,10} 12:{11.5,10} 50:{12,11.5}
    table = mutual_neighbours(line_distances(), 2)
    assert table.tolist() == [[1, 0], [0, 1], [3, 4], [4, 2], [3, 2], [5, 5]]


def test_infinite_and_nan_distances_are_never_neighbours():
    d = line_distances()
    d[0, 1] = d[1, 0] = np.inf
    d[3, 4] = d[4, 3] = np.nan
    table = mutual_neighbours(d, 1)
    assert table[0].tolist() != [1] and table[3].tolist() != [4]
    only_inf = np.full((3, 3), np.inf)
    assert mutual_neighbours(only_inf, 1).tolist() == [[0], [1], [2]]


@pytest.mark.parametrize("bad, match", [
    (np.zeros((3, 4)), "square"),
    (np.zeros((3, 3)), "k must be"),
])
def test_mutual_neighbours_errors(bad, match):
    with pytest.raises(ConfigError, match=match):
        mutual_neighbours(bad, 3)


@pytest.mark.parametrize("bad, match", [
    (np.zeros((5, 2), dtype=np.int64), r"one row per record"),
    (np.array([[0], [1], [2], [7]]), r"positives\[3, 0\] = 7"),
    (np.array([[0], [1], [-1], [3]]), r"positives\[2, 0\] = -1"),
    (np.zeros((4, 1), dtype=np.float32), "integer"),
])
def test_check_positives_errors(bad, match):
    with pytest.raises(ConfigError, match=match):
        check_positives(bad, 4)


class SpyMethod(ToyMethod):
    """Records the (un-noised) record numbers behind each view it is given."""

    seen: List[List[torch.Tensor]] = []

    def forward(self, views):
        SpyMethod.seen.append([v.detach().clone() for v in views])
        return super().forward(views)


def spy_trainer(positives=None, seed=0, epochs=2):
    # record i is the vector (10 i, ..., 10 i): a view tells its record apart through the 0.1 noise
    data = np.repeat(np.arange(32, dtype=np.float32)[:, None] * 10, 8, axis=1)
    adapter = VectorAdapter()
    prepared = adapter.prepare(data)
    adapter.fit(prepared)
    torch.manual_seed(seed)
    SpyMethod.seen = []
    trainer = Trainer(SpyMethod(adapter.build_encoder(), 8), adapter,
                      TrainConfig(epochs=epochs, batch_size=8, seed=seed, progress=False))
    trainer.fit(prepared, positives=positives)
    mean = torch.tensor(adapter.config["mean"])
    return [[torch.round((v + mean).mean(1) / 10).long() for v in views] for views in SpyMethod.seen], trainer


def test_the_second_view_comes_from_the_partner():
    n = 32
    succ = (np.arange(n) + 1) % n
    records, trainer = spy_trainer(positives=succ[:, None])
    assert len(records) == 8  # 2 epochs x 4 steps
    for first, second in records:
        assert torch.equal(second, (first + 1) % n)
    assert trainer.resolved["positives"] == {"per_record": 1, "records_with_partner": n}
    # without positives both views are of the same record
    plain, _ = spy_trainer()
    assert all(torch.equal(a, b) for a, b in plain)


def test_partners_are_drawn_from_the_row_and_reproduce():
    n = 32
    table = np.stack([(np.arange(n) + 1) % n, (np.arange(n) + 2) % n, np.arange(n)], 1)
    a, _ = spy_trainer(positives=table, epochs=6)
    offsets = torch.cat([(second - first) % n for first, second in a])
    assert set(offsets.tolist()) == {0, 1, 2}  # each column is used, nothing else
    b, _ = spy_trainer(positives=table, epochs=6)
    assert all(torch.equal(x[1], y[1]) for x, y in zip(a, b))
    c, _ = spy_trainer(positives=table, epochs=6, seed=1)
    assert not all(torch.equal(x[1] - x[0], y[1] - y[0]) for x, y in zip(a, c))


def test_pretrain_takes_positives_and_refuses_misuse():
    data = toy_data(32)
    model = pretrain(data, adapter="toyvector", method="simclr", epochs=1, batch_size=8,
                     positives=np.arange(32)[:, None])
    assert model.config["training"]["positives"] == {"per_record": 1, "records_with_partner": 0}
    with pytest.raises(ConfigError, match="one row per record"):
        pretrain(data, adapter="toyvector", method="simclr", epochs=1, batch_size=8, positives=np.zeros((3, 1), int))
    with pytest.raises(ConfigError, match="two views"):
        pretrain(data, adapter="toyvector", method="rotation", epochs=1, batch_size=8,
                 positives=np.arange(32)[:, None])
    with pytest.raises(ConfigError, match="on_bad_record"):
        pretrain(data, adapter="toyvector", method="simclr", epochs=1, batch_size=8, on_bad_record="skip",
                 positives=np.arange(32)[:, None])
