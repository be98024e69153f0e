"""EMA teacher helpers (MoCo, BYOL)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from multissl.ema import copy_as_teacher, cosine_momentum, ema_update


def _net() -> nn.Module:
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))


def test_copy_as_teacher_is_frozen_deep_copy() -> None:
    student = _net()
    teacher = copy_as_teacher(student)
    assert teacher is not student
    assert all(not p.requires_grad for p in teacher.parameters())
    assert all(p.requires_grad for p in student.parameters())
    for t, s in zip(teacher.parameters(), student.parameters()):
        assert torch.equal(t, s) and t.data_ptr() != s.data_ptr()


def test_ema_update_params_and_buffers() -> None:
    torch.manual_seed(0)
    student, teacher = _net(), copy_as_teacher(_net())
    student(torch.randn(8, 3))  # moves the student's running stats and num_batches_tracked
    before_t = [t.clone() for t in list(teacher.parameters()) + list(teacher.buffers())]
    s_all = list(student.parameters()) + list(student.buffers())
    ema_update(teacher, student, 0.9)
    for old, new, s in zip(before_t, list(teacher.parameters()) + list(teacher.buffers()), s_all):
        if old.is_floating_point():
            assert torch.allclose(new, 0.9 * old + 0.1 * s, atol=1e-6)
        else:
            assert torch.equal(new, s)  # num_batches_tracked is copied


def test_ema_update_extremes() -> None:
    student, teacher = _net(), copy_as_teacher(_net())
    frozen = [t.clone() for t in teacher.parameters()]
    ema_update(teacher, student, 1.0)
    assert all(torch.equal(a, b) for a, b in zip(frozen, teacher.parameters()))
    ema_update(teacher, student, 0.0)
    assert all(torch.equal(a, b) for a, b in zip(student.parameters(), teacher.parameters()))


def test_ema_update_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="momentum"):
        ema_update(_net(), _net(), 1.5)
    with pytest.raises(ValueError, match="different structures"):
        ema_update(nn.Linear(3, 4), _net(), 0.9)


def test_cosine_momentum_schedule() -> None:
    assert cosine_momentum(0.0, base=0.99) == pytest.approx(0.99)
    assert cosine_momentum(0.5, base=0.99) == pytest.approx(0.995)
    assert cosine_momentum(1.0, base=0.99) == pytest.approx(1.0)
    assert cosine_momentum(2.0, base=0.9, final=0.95) == pytest.approx(0.95)  # clamped
    values = [cosine_momentum(p / 10) for p in range(11)]
    assert values == sorted(values)
