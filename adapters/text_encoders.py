"""Text encoders: token ids -> embeddings (B, embed_dim).

The default is the generic :class:`multissl.transformer.TokenEncoder` (learned positions,
pre-norm blocks, padding masked out of attention and pooling) with a token-embedding stem, so
the masked methods (``mae`` = masked language modelling, ``data2vec``) and the Siamese ones
(``simclr`` with SimCSE-style dropout views) train the very same module.

Input is what :meth:`TextAdapter.eval_transform` / :meth:`TextAdapter.views` return: a dict
``{"ids": long (B, L)}`` right-padded with the tokenizer's ``pad_id`` (a bare (B, L) tensor is
accepted too).

Sizes are small on purpose (the recipes run on CPUs): ``transformer`` is dim 128, depth 2,
4 heads, dropout 0.1 (the dropout is what makes SimCSE's two views differ); ``transformer_4``
has 4 blocks. Any of ``dim``, ``depth``, ``heads``, ``mlp_ratio``, ``dropout``, ``pool``
(``"mean"`` or ``"cls"``) can be overridden.
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import torch
from torch import nn

from multissl.errors import ConfigError

#: name -> default settings
TEXT_ENCODERS: Dict[str, Dict[str, Any]] = {
    "transformer": {"dim": 128, "depth": 2, "heads": 4, "mlp_ratio": 4.0, "dropout": 0.1, "pool": "mean"},
    "transformer_4": {"dim": 128, "depth": 4, "heads": 4, "mlp_ratio": 4.0, "dropout": 0.1, "pool": "mean"},
}


class TokenEmbeddingStem(nn.Module):
    """Token ids (B, L) -> content embeddings (B, L, dim) and the padding mask (True = pad).

    ``vocab_size`` tells the masked methods how many classes a masked-token prediction has.
    Positions are added by the encoder, not here.
    """

    def __init__(self, vocab_size: int, dim: int, pad_id: int = 0) -> None:
        super().__init__()
        self.vocab_size = int(vocab_size)
        self.pad_id = int(pad_id)
        self.embed = nn.Embedding(self.vocab_size, dim, padding_idx=self.pad_id)
        nn.init.trunc_normal_(self.embed.weight, std=0.02)  # BERT's initialisation
        with torch.no_grad():
            self.embed.weight[self.pad_id].zero_()

    def forward(self, inputs: Any) -> Tuple[torch.Tensor, torch.Tensor]:
        ids = inputs["ids"] if isinstance(inputs, dict) else inputs
        if not isinstance(ids, torch.Tensor) or ids.ndim != 2 or ids.is_floating_point():
            raise ConfigError("text encoders take {'ids': long (B, L)} from the text adapter; call "
                              "adapter.eval_transform(batch) first")
        return self.embed(ids), ids == self.pad_id


def build_text_encoder(name: Optional[str], vocab_size: int, pad_id: int, max_tokens: int, **kwargs: Any) -> nn.Module:
    """A named text encoder (``TEXT_ENCODERS``) with overrides; ``embed_dim`` is its output width."""
    from multissl.transformer import TokenEncoder

    name = name or "transformer"
    if name not in TEXT_ENCODERS:
        raise ConfigError(f"unknown text encoder {name!r}; available: {', '.join(TEXT_ENCODERS)}")
    settings = dict(TEXT_ENCODERS[name])
    unknown = sorted(set(kwargs) - set(settings))
    if unknown:
        raise ConfigError(f"unknown option(s) {', '.join(unknown)} for text encoder {name!r}; "
                          f"valid: {', '.join(settings)}")
    settings.update(kwargs)
    stem = TokenEmbeddingStem(vocab_size, int(settings["dim"]), pad_id)
    enc = TokenEncoder(stem, dim=int(settings["dim"]), depth=int(settings["depth"]), heads=int(settings["heads"]),
                       max_tokens=int(max_tokens), mlp_ratio=float(settings["mlp_ratio"]),
                       dropout=float(settings["dropout"]), pool=str(settings["pool"]))
    enc.name = name
    return enc


__all__ = ["TEXT_ENCODERS", "TokenEmbeddingStem", "build_text_encoder"]
