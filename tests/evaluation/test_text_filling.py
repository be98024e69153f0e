"""Count baselines of the text context-filling recipe: nearest visible neighbours, bigram scores by hand."""
from __future__ import annotations

import math

import pytest
import torch

from multissl.evaluation.text_filling import BigramFill, nearest_visible


def test_nearest_visible_neighbours() -> None:
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    visible = torch.tensor([[True, False, False, True, False]])
    left, right = nearest_visible(ids, visible)
    assert left.tolist() == [[-1, 5, 5, 5, 8]]
    assert right.tolist() == [[8, 8, 8, -1, -1]]


def fill() -> BigramFill:
    # pad 0; adjacent pairs: (1,2) x2, (2,3) x2, (2,4) x1; out-totals: 1 -> 2, 2 -> 3
    train = torch.tensor([[1, 2, 3, 0], [1, 2, 4, 0], [2, 3, 0, 0]])
    return BigramFill(train, pad_id=0, vocab_size=5, alpha=0.1)


def test_bigram_scores_are_the_smoothed_counts_by_hand() -> None:
    f = fill()
    ids = torch.tensor([[1, 2, 3]])
    s = f.scores(ids, torch.tensor([[False, True, False]]))
    assert s.shape == (1, 5)
    # log P(v | 1) + log P(3 | v), add-0.1 over 5 pieces
    expected = {2: math.log(2.1 / 2.5) + math.log(2.1 / 3.5),
                4: math.log(0.1 / 2.5) + math.log(0.1 / 0.5),
                1: math.log(0.1 / 2.5) + math.log(0.1 / 2.5)}
    for v, e in expected.items():
        assert s[0, v].item() == pytest.approx(e, rel=1e-5)
    assert s[0].argmax().item() == 2


def test_without_neighbours_the_unigram_prior_and_one_sided_context() -> None:
    f = fill()
    # unigram counts: 1 x2, 2 x3, 3 x2, 4 x1 over 8 tokens
    ids = torch.tensor([[3, 2, 0]])
    pad = torch.tensor([[False, False, True]])
    # hidden first piece, right neighbour 2: log P(v) + log P(2 | v); padding is no context
    s = f.scores(ids, torch.tensor([[True, False, False]]), pad)
    assert s[0, 1].item() == pytest.approx(math.log(2.1 / 8.5) + math.log(2.1 / 2.5), rel=1e-5)
    # hidden last real piece, left neighbour 3 which never starts a pair: uniform P(v | 3)
    s = f.scores(ids, torch.tensor([[False, True, False]]), pad)
    assert torch.allclose(s[0], torch.full((5,), math.log(1 / 5)))
    with pytest.raises(ValueError, match="alpha"):
        BigramFill(torch.tensor([[1, 2]]), pad_id=0, vocab_size=3, alpha=0)
