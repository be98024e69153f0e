"""Token-level augmentations: hand-checked cases, padding never leaks, seeds reproduce."""
from __future__ import annotations

import torch

from multissl.adapters.text_transforms import (compact, random_crop, real_mask, span_deletion, token_dropout,
                                               token_masking, trim)

PAD, MASK = 0, 4


def _batch():
    # lengths 5, 2, 1, 8; content ids are >= 10 so padding (0) and [MASK] (4) are recognisable
    rows = [[10, 11, 12, 13, 14], [20, 21], [30], [40, 41, 42, 43, 44, 45, 46, 47]]
    ids = torch.zeros(4, 8, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r)
    return ids, torch.tensor([len(r) for r in rows])


def _check_well_formed(ids, lengths, original):
    real = real_mask(ids, lengths)
    assert (ids[~real] == PAD).all(), "padding after the end of a sequence"
    assert (ids[real] != PAD).all(), "padding inside a sequence"
    assert (lengths >= 1).all()
    for i in range(len(ids)):
        kept = [t for t in ids[i, :lengths[i]].tolist() if t != MASK]
        src = original[i].tolist()
        it = iter(src)
        assert all(t in it for t in kept), "kept tokens must come from the row, in order"


def test_compact_keeps_order_and_repads():
    ids = torch.tensor([[5, 6, 7, 8, 0]])
    keep = torch.tensor([[True, False, True, True, False]])
    out, n = compact(ids, keep, PAD)
    assert out.tolist() == [[5, 7, 8, 0, 0]] and n.tolist() == [3]


def test_every_transform_keeps_sequences_well_formed():
    ids, lengths = _batch()
    for seed in range(20):
        g = torch.Generator().manual_seed(seed)
        for out in (token_dropout(ids, lengths, 0.5, PAD, g), span_deletion(ids, lengths, 1.0, 0.5, PAD, g),
                    random_crop(ids, lengths, 0.3, PAD, g)):
            _check_well_formed(*out, ids)
            assert (out[1] <= lengths).all()
        masked, n = token_masking(ids, lengths, 0.5, MASK, g)
        assert (n == lengths).all()
        assert (masked[~real_mask(ids, lengths)] == PAD).all(), "masking must not touch padding"


def test_dropout_everything_keeps_one_token():
    ids, lengths = _batch()
    out, n = token_dropout(ids, lengths, 1.0, PAD, torch.Generator().manual_seed(0))
    assert n.tolist() == [1, 1, 1, 1]
    for i in range(4):
        assert int(out[i, 0]) in ids[i, :lengths[i]].tolist()


def test_span_deletion_removes_one_contiguous_span():
    ids, lengths = _batch()
    out, n = span_deletion(ids, lengths, 1.0, 0.5, PAD, torch.Generator().manual_seed(3))
    row = ids[3, :8].tolist()
    got = out[3, :n[3]].tolist()
    removed = len(row) - len(got)
    assert 1 <= removed <= 4
    # the result is the row with one contiguous slice taken out
    assert any(row[:s] + row[s + removed:] == got for s in range(len(row) - removed + 1))
    assert out[2, 0] == 30 and n[2] == 1  # a one-token sequence is never emptied


def test_crop_is_a_contiguous_window():
    ids, lengths = _batch()
    out, n = random_crop(ids, lengths, 0.5, PAD, torch.Generator().manual_seed(1))
    row = ids[3].tolist()
    got = out[3, :n[3]].tolist()
    assert 4 <= len(got) <= 8
    assert any(row[s:s + len(got)] == got for s in range(8 - len(got) + 1))


def test_zero_strength_is_identity_and_seed_reproduces():
    ids, lengths = _batch()
    g = torch.Generator().manual_seed(0)
    assert torch.equal(token_dropout(ids, lengths, 0.0, PAD, g)[0], ids)
    assert torch.equal(token_masking(ids, lengths, 0.0, MASK, g)[0], ids)
    assert torch.equal(random_crop(ids, lengths, 1.0, PAD, g)[0], ids)
    a = token_dropout(ids, lengths, 0.3, PAD, torch.Generator().manual_seed(7))[0]
    b = token_dropout(ids, lengths, 0.3, PAD, torch.Generator().manual_seed(7))[0]
    assert torch.equal(a, b)


def test_trim_drops_all_padding_columns():
    ids, lengths = _batch()
    assert trim(ids[:3], lengths[:3]).shape == (3, 5)
