"""One Transformer encoder for every modality: ``TokenEncoder(stem, dim, depth, heads, max_tokens)``.

A modality contributes only a **stem**: an ``nn.Module`` whose ``forward(inputs)`` returns
``(x, padding_mask)`` -- content embeddings ``x`` (B, N, dim) *without* positions, and a (B, N)
bool mask (True = padding) or None. The encoder layer-normalises them, adds learned positional
embeddings (initialised with sine-cosine codes, 2-D when the stem has a ``grid`` attribute), runs pre-norm
blocks (Vaswani et al. 2017; pre-norm as in ViT, Dosovitskiy et al. 2021) and pools.

Why the split: the masked methods need to get between tokenisation and the blocks (MAE drops the
masked tokens, data2vec swaps them for a mask embedding), while every other consumer -- Siamese
methods, ``SSLModel.embed``, kNN / linear / fine-tune evaluation -- only needs ``forward(inputs)
-> (B, dim)``. So the encoder offers both::

    enc = TokenEncoder(stem, dim=128, depth=4, heads=4, max_tokens=64)
    z = enc(images)                                  # (B, 128) pooled embedding
    x, pad = enc.tokenize(images)                    # (B, N, 128) content embeddings
    keep = torch.arange(16).expand(B, 16)            # e.g. MAE's visible tokens
    h = enc.encode(torch.gather(x, 1, keep[..., None].expand(-1, -1, 128)), keep=keep)   # (B, 16, 128)
    h, layers = enc.encode(x, pad, return_layers=True)   # + every block's output (data2vec)

Padding never influences anything real: padded keys are masked out of attention
(``F.scaled_dot_product_attention`` with a boolean mask) and out of the mean pooling.
"""
from __future__ import annotations

from typing import Any, List, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from multissl.errors import ConfigError

POOLS = ("mean", "cls")


class MultiHeadSelfAttention(nn.Module):
    """Self-attention with one fused QKV projection and PyTorch's fused attention kernel."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % heads:
            raise ConfigError(f"transformer dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.dropout = dropout
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, attend: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``attend``: (B, 1, 1, N) bool, True where a key may be attended to (None: all)."""
        q, k, v = rearrange(self.qkv(x), "b n (three h d) -> three b h n d", three=3, h=self.heads)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attend,
                                             dropout_p=self.dropout if self.training else 0.0)
        return self.proj(rearrange(out, "b h n d -> b n (h d)"))


class TransformerBlock(nn.Module):
    """Pre-norm block: ``x + attn(norm(x))``, then ``x + mlp(norm(x))``.

    ``forward(..., return_ffn=True)`` also returns the MLP output before its residual addition,
    the target data2vec found best (Baevski et al. 2022, sec. 5.4, "target feature type").
    """

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0, dropout: float = 0.0) -> None:
        super().__init__()
        hidden = max(1, int(round(dim * mlp_ratio)))
        self.norm1 = nn.LayerNorm(dim)
        self.attn = MultiHeadSelfAttention(dim, heads, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, attend: Optional[torch.Tensor] = None,
                return_ffn: bool = False) -> Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
        x = x + self.drop(self.attn(self.norm1(x), attend))
        ffn = self.drop(self.mlp(self.norm2(x)))
        x = x + ffn
        return (x, ffn) if return_ffn else x


def attention_mask(padding_mask: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    """(B, N) padding (True = pad) -> (B, 1, 1, N) "may attend" mask for SDPA, or None.

    A row that is all padding would give every query an empty softmax (NaN); such rows attend to
    everything instead -- their outputs are padding and ignored by pooling and losses anyway.
    """
    if padding_mask is None:
        return None
    ok = ~padding_mask
    ok = ok | ~ok.any(dim=1, keepdim=True)
    return ok[:, None, None, :]


def sincos_positions(num_tokens: int, dim: int, grid: Optional[Tuple[int, int]] = None) -> torch.Tensor:
    """(num_tokens, dim) sine-cosine position codes (Vaswani et al. 2017): 1-D over the token
    index, or 2-D for a row-major ``grid`` (h, w) with h*w == num_tokens (half of the features
    code the row, half the column, as MAE's fixed embeddings do).

    Used to *initialise* the learned positional embeddings: small random ones (std 0.02) are
    nearly invisible next to the content embeddings, so a short run never learns where a token
    is -- and a masked model that does not know where its hidden tokens are can only predict
    their average.
    """
    def one_axis(positions: torch.Tensor, width: int) -> torch.Tensor:
        half = width // 2
        freq = 1.0 / (10000.0 ** (torch.arange(half, dtype=torch.float64) / max(1, half)))
        angles = positions.double()[:, None] * freq[None, :]
        out = torch.zeros(len(positions), width, dtype=torch.float64)
        out[:, 0:2 * half:2] = torch.sin(angles)
        out[:, 1:2 * half:2] = torch.cos(angles)
        return out

    if grid is not None and grid[0] * grid[1] == num_tokens:
        h, w = grid
        rows = torch.arange(h).repeat_interleave(w)
        cols = torch.arange(w).repeat(h)
        half = dim // 2
        table = torch.cat([one_axis(rows, half), one_axis(cols, dim - half)], dim=1)
    else:
        table = one_axis(torch.arange(num_tokens), dim)
    return table.float()


def init_transformer_weights(module: nn.Module) -> None:
    """ViT/MAE initialisation: truncated-normal(0.02) linear weights, zero biases, unit LayerNorms."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class TokenEncoder(nn.Module):
    """A stem plus a pre-norm Transformer; ``forward(inputs) -> (B, dim)``.

    Args:
        stem: ``forward(inputs) -> (x (B, N, dim), padding_mask (B, N) bool or None)``. Optional
            attributes ``target_dim`` / ``vocab_size`` describe the adapter's token targets
            (see :mod:`multissl.tokens`) and are exposed here for the masked methods.
        dim, depth, heads: width, number of blocks, attention heads.
        max_tokens: the most tokens an input may have (size of the positional table).
        mlp_ratio, dropout: MLP hidden width / dim, dropout in attention, MLP and residuals.
        pool: ``"mean"`` over non-padding tokens, or ``"cls"`` (a learned token prepended).
    """

    def __init__(self, stem: nn.Module, dim: int, depth: int, heads: int, max_tokens: int,
                 mlp_ratio: float = 4.0, dropout: float = 0.0, pool: str = "mean") -> None:
        super().__init__()
        for key, value in (("dim", dim), ("depth", depth), ("heads", heads), ("max_tokens", max_tokens)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"TokenEncoder: {key} must be a positive integer, got {value!r}")
        if pool not in POOLS:
            raise ConfigError(f"TokenEncoder: pool must be one of {', '.join(POOLS)}, got {pool!r}")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"TokenEncoder: dropout must be in [0, 1), got {dropout!r}")
        self.stem = stem
        self.embed_dim = int(dim)
        self.depth = int(depth)
        self.heads = int(heads)
        self.max_tokens = int(max_tokens)
        self.pool = pool
        # The stem's output is layer-normalised before the positions are added: stems start at very
        # different scales (BERT-style token embeddings std 0.02, a patch projection ~0.5), and the
        # position codes must neither drown the content nor vanish next to it.
        self.embed_norm = nn.LayerNorm(dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, self.max_tokens, dim))
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim)) if pool == "cls" else None
        self.blocks = nn.ModuleList(TransformerBlock(dim, heads, mlp_ratio, dropout) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        init_transformer_weights(self.blocks)
        init_transformer_weights(self.norm)
        init_transformer_weights(self.embed_norm)
        with torch.no_grad():  # learned, but starting from sine-cosine codes (see sincos_positions)
            self.pos_embed.copy_(sincos_positions(self.max_tokens, dim, self.grid).unsqueeze(0))
        if self.cls_token is not None:
            nn.init.trunc_normal_(self.cls_token, std=0.02)

    # ---- what the token targets look like (from the stem) ------------------------------------
    @property
    def num_tokens(self) -> int:
        """Tokens per input: the stem's ``num_tokens`` if it has a fixed count, else ``max_tokens``."""
        n = getattr(self.stem, "num_tokens", None)
        return int(n) if isinstance(n, int) else self.max_tokens

    @property
    def grid(self) -> Optional[Tuple[int, int]]:
        """The stem's token grid (h, w) when its tokens are a row-major 2-D grid (image patches)."""
        g = getattr(self.stem, "grid", None)
        return (int(g[0]), int(g[1])) if isinstance(g, (tuple, list)) and len(g) == 2 else None

    @property
    def target_dim(self) -> Optional[int]:
        return getattr(self.stem, "target_dim", None)

    @property
    def vocab_size(self) -> Optional[int]:
        return getattr(self.stem, "vocab_size", None)

    # ---- the three steps ----------------------------------------------------------------------
    def tokenize(self, inputs: Any) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """The stem's content embeddings (B, N, dim) and padding mask (B, N) or None."""
        out = self.stem(inputs)
        if not (isinstance(out, tuple) and len(out) == 2):
            raise ConfigError(f"{type(self.stem).__name__}.forward must return (x, padding_mask), got {type(out).__name__}")
        x, padding_mask = out
        if x.ndim != 3 or x.shape[-1] != self.embed_dim:
            raise ConfigError(f"{type(self.stem).__name__} returned tokens of shape {tuple(x.shape)}; "
                              f"expected (B, N, {self.embed_dim})")
        if x.shape[1] > self.max_tokens:
            raise ConfigError(f"input has {x.shape[1]} tokens but the encoder was built for at most "
                              f"max_tokens={self.max_tokens}")
        return x, padding_mask

    def encode(self, x: torch.Tensor, padding_mask: Optional[torch.Tensor] = None,
               keep: Optional[torch.Tensor] = None,
               return_layers: Union[bool, str] = False) -> Union[torch.Tensor, Tuple[torch.Tensor, List[torch.Tensor]]]:
        """Positions + blocks + final norm on content embeddings ``x`` (B, N|K, dim).

        Args:
            padding_mask: (B, N|K) bool, True = padding (excluded as attention keys).
            keep: (B, K) long positions of the tokens in ``x`` (e.g. MAE's visible tokens), so
                each gets its own positional embedding; None = ``x`` holds positions 0..N-1.
            return_layers: also return the list of every block's output (B, N|K, dim), before
                the final norm; ``"ffn"`` returns each block's MLP output before its residual.
        Returns:
            final-norm tokens (B, N|K, dim) (without the CLS token), plus the layer list if asked.
        """
        h, layers = self._run(x, padding_mask, keep, return_layers)
        if self.cls_token is not None:
            h = h[:, 1:]
            layers = [layer[:, 1:] for layer in layers]
        return (h, layers) if return_layers else h

    def forward(self, inputs: Any) -> torch.Tensor:
        """Pooled embedding (B, dim): mean over non-padding tokens, or the CLS token."""
        x, padding_mask = self.tokenize(inputs)
        h, _ = self._run(x, padding_mask, None, False)
        if self.cls_token is not None:
            return h[:, 0]
        if padding_mask is None:
            return h.mean(dim=1)
        real = (~padding_mask).unsqueeze(-1).to(h.dtype)
        return (h * real).sum(dim=1) / real.sum(dim=1).clamp(min=1.0)

    # ---- internals ------------------------------------------------------------------------------
    def _positions(self, x: torch.Tensor, keep: Optional[torch.Tensor]) -> torch.Tensor:
        n = x.shape[1]
        if keep is None:
            if n > self.max_tokens:
                raise ConfigError(f"{n} tokens exceed max_tokens={self.max_tokens}")
            return self.pos_embed[:, :n]
        if keep.shape != x.shape[:2]:
            raise ConfigError(f"keep must be (B, K) = {tuple(x.shape[:2])}, got {tuple(keep.shape)}")
        table = self.pos_embed.expand(x.shape[0], -1, -1)
        return torch.gather(table, 1, keep.unsqueeze(-1).expand(-1, -1, self.embed_dim))

    def _run(self, x: torch.Tensor, padding_mask: Optional[torch.Tensor], keep: Optional[torch.Tensor],
             return_layers: Union[bool, str]) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        if return_layers not in (False, True, "ffn"):
            raise ConfigError(f"return_layers must be False, True or 'ffn', got {return_layers!r}")
        h = self.embed_norm(x) + self._positions(x, keep).to(x.dtype)
        if self.cls_token is not None:
            h = torch.cat([self.cls_token.expand(h.shape[0], -1, -1).to(h.dtype), h], dim=1)
            if padding_mask is not None:
                padding_mask = F.pad(padding_mask, (1, 0), value=False)
        attend = attention_mask(padding_mask)
        layers: List[torch.Tensor] = []
        for block in self.blocks:
            if return_layers == "ffn":
                h, ffn = block(h, attend, return_ffn=True)
                layers.append(ffn)
            else:
                h = block(h, attend)
                if return_layers:
                    layers.append(h)
        return self.norm(h), layers

    def extra_repr(self) -> str:
        return f"dim={self.embed_dim}, depth={self.depth}, heads={self.heads}, max_tokens={self.max_tokens}, pool={self.pool!r}"


def is_token_encoder(module: Any) -> bool:
    """Whether ``module`` offers the token interface (``tokenize`` and ``encode``) the masked
    methods need; any module with those methods and ``embed_dim`` qualifies, not only ours."""
    return all(callable(getattr(module, name, None)) for name in ("tokenize", "encode")) and \
        isinstance(getattr(module, "embed_dim", None), int)


__all__ = ["TokenEncoder", "TransformerBlock", "MultiHeadSelfAttention", "attention_mask",
           "init_transformer_weights", "is_token_encoder", "sincos_positions", "POOLS"]
