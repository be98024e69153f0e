"""Shared pieces of the token-encoder tests (transformer, mae, data2vec): a linear stem over
3-value tokens."""
from __future__ import annotations

from torch import nn

DIM = 16


class ValueStem(nn.Module):
    """Inputs: values (B, N, 3), or ``(values, padding (B, N) or None)`` -> a linear embedding of
    each value; float targets of width 3."""

    target_dim = 3

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, DIM)

    def forward(self, inputs):
        values, padding = inputs if isinstance(inputs, tuple) else (inputs, None)
        return self.lin(values), padding
