"""Masked autoencoder (MAE): reconstruct hidden tokens from the visible ones.

Reference: K. He, X. Chen, S. Xie, Y. Li, P. Dollar, R. Girshick, "Masked Autoencoders Are
Scalable Vision Learners", CVPR 2022, https://arxiv.org/abs/2111.06377.

The encoder sees only the visible tokens (with their positional embeddings), which makes a
high mask ratio cheap and keeps the encoder free of mask tokens it would never meet after
pretraining. A light Transformer decoder (its own width and depth) gets the encoded visible
tokens back in their places, a shared learned mask token at every hidden place, its own
positional embeddings, and predicts each hidden token's target:

- float targets (B, N, T) -- pixels of a patch, values of a series patch -- by mean squared
  error, optionally against per-token normalised targets (``norm_targets``, the paper's
  "normalized pixels", which gave better representations);
- id targets (B, N) -- text -- by cross-entropy over the vocabulary (masked language
  modelling), reporting the masked-token ``accuracy`` too.

The loss covers the hidden tokens only (sec. 3, "loss function"); padding is never hidden.

``style="simmim"`` trains the other way round, as SimMIM (Z. Xie et al., "SimMIM: a Simple
Framework for Masked Image Modeling", CVPR 2022, https://arxiv.org/abs/2111.09886) and, on token
ids, BERT's masked language modelling (J. Devlin et al., NAACL 2019,
https://arxiv.org/abs/1810.04805): the encoder sees every position, each hidden token's content
replaced by one learned mask embedding, and a linear head on the encoder's output predicts the
same targets with the same losses; no decoder. It costs a full-length encoder pass, and on a few
thousand short texts it learns to fill words from their context far faster than the MAE path
(docs/recipes/context_filling.md has the measurements).
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from multissl.distributed import global_mean
from multissl.errors import ConfigError
from multissl.methods.masked import MaskedMethod, gather_tokens, masked_mean, visible_index
from multissl.tokens import TokenBatch
from multissl.transformer import TransformerBlock, attention_mask, init_transformer_weights, sincos_positions

#: ``mae``: visible tokens -> encoder -> light decoder; ``simmim``: mask embeddings in the encoder's
#: input, linear head (BERT-style on token ids)
STYLES = ("mae", "simmim")


def normalize_targets(targets: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Each token's target minus its mean, over its (unbiased) std: MAE's ``norm_pix_loss``."""
    mean = targets.mean(dim=-1, keepdim=True)
    var = targets.var(dim=-1, keepdim=True)
    return (targets - mean) / (var + eps).sqrt()


def mae_loss(pred: torch.Tensor, targets: torch.Tensor, mask: Optional[torch.Tensor] = None,
             norm_targets: bool = False) -> torch.Tensor:
    """MSE per hidden token (mean over the T values), averaged over hidden tokens.

    ``pred``, ``targets``: (..., T), e.g. (B, N, T) with ``mask`` (B, N) bool (True = hidden, the
    loss is taken there), or (M, T) already gathered at the M hidden tokens with ``mask=None``.
    """
    if norm_targets:
        targets = normalize_targets(targets)
    per_token = (pred.float() - targets.float()).pow(2).mean(dim=-1)
    if mask is None:
        # under data parallelism: this process's share of the mean over every process's hidden
        # tokens (their number differs between processes; see multissl.distributed.global_mean)
        return global_mean(per_token.sum() if per_token.numel() else pred.sum() * 0.0, per_token.numel())
    return masked_mean(per_token, mask)


class MAEDecoder(nn.Module):
    """Encoded visible tokens -> a prediction for every position (B, N, out_dim)."""

    def __init__(self, embed_dim: int, dim: int, depth: int, heads: int, max_tokens: int, out_dim: int,
                 mlp_ratio: float = 4.0, grid: Optional[Tuple[int, int]] = None) -> None:
        super().__init__()
        self.embed = nn.Linear(embed_dim, dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, max_tokens, dim))
        self.blocks = nn.ModuleList(TransformerBlock(dim, heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, out_dim)
        init_transformer_weights(self)
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        with torch.no_grad():  # learned, from sine-cosine codes like the encoder's
            self.pos_embed.copy_(sincos_positions(max_tokens, dim, grid).unsqueeze(0))

    def forward(self, encoded: torch.Tensor, keep: torch.Tensor, keep_hidden: torch.Tensor, num_tokens: int,
                padding_mask: Optional[torch.Tensor]) -> torch.Tensor:
        return self.head(self.features(encoded, keep, keep_hidden, num_tokens, padding_mask))

    def features(self, encoded: torch.Tensor, keep: torch.Tensor, keep_hidden: torch.Tensor, num_tokens: int,
                 padding_mask: Optional[torch.Tensor]) -> torch.Tensor:
        """The decoder's final-norm tokens (B, N, dim), before the output head."""
        b = encoded.shape[0]
        d = self.embed(encoded)
        # places in `keep` that were not visible real tokens get the mask token, so nothing of a
        # hidden token's content reaches the decoder
        d = torch.where(keep_hidden.unsqueeze(-1), self.mask_token.to(d.dtype), d)
        full = self.mask_token.to(d.dtype).expand(b, num_tokens, -1).clone()
        full = full.scatter(1, keep.unsqueeze(-1).expand(-1, -1, d.shape[-1]), d)
        h = full + self.pos_embed[:, :num_tokens].to(d.dtype)
        attend = attention_mask(padding_mask)
        for block in self.blocks:
            h = block(h, attend)
        return self.norm(h)


class MAE(MaskedMethod):
    """Masked autoencoder on any adapter's tokens.

    Hyperparameters: ``mask_ratio`` (0.75, the paper's best for images; text wants ~0.15),
    ``decoder_dim`` (128), ``decoder_depth`` (2), ``decoder_heads`` (4), ``norm_targets`` (True;
    float targets only), ``target_dim`` / ``vocab_size`` (None: from the encoder's stem),
    ``style`` ("mae" | "simmim": mask embeddings in the encoder's input and a linear head instead
    of the decoder, whose three hyperparameters are then unused; see the module docstring).

    Example::

        >>> mae = MAE(vit, embed_dim=vit.embed_dim, mask_ratio=0.75)
        >>> out = mae(adapter.tokens(batch, generator=g), generator=g)
        >>> out["loss"].backward()
        >>> pred, mask = mae.reconstruct(token_batch, mask)   # predictions for a chosen mask
        >>> bert = MAE(text_encoder, embed_dim=text_encoder.embed_dim, mask_ratio=0.15, style="simmim")
    """

    name = "mae"
    defaults = {"optimizer": "adamw", "lr": 1.5e-3, "weight_decay": 0.05}
    hparam_defaults = {"mask_ratio": 0.75, "decoder_dim": 128, "decoder_depth": 2, "decoder_heads": 4,
                       "norm_targets": True, "target_dim": None, "vocab_size": None, "style": "mae"}
    hparam_rules = {**MaskedMethod.hparam_rules,
                    "style": (" or ".join(map(repr, STYLES)), lambda v: v in STYLES)}

    def __init__(self, encoder: nn.Module, embed_dim: int, **hparams: Any) -> None:
        super().__init__(encoder, embed_dim, **hparams)
        hp = self._hparams
        vocab = hp["vocab_size"] or (None if hp["target_dim"] else getattr(encoder, "vocab_size", None))
        target_dim = hp["target_dim"] or (None if vocab else getattr(encoder, "target_dim", None))
        if not vocab and not target_dim:
            raise ConfigError("method 'mae': the size of the targets is unknown; the encoder's stem should have a "
                              "`target_dim` (float targets) or `vocab_size` (id targets) attribute, or pass "
                              "method_kwargs={'target_dim': T} / {'vocab_size': V}")
        if hp["decoder_dim"] % hp["decoder_heads"]:
            raise ConfigError(f"method 'mae': decoder_dim {hp['decoder_dim']} is not divisible by "
                              f"decoder_heads {hp['decoder_heads']}")
        self.discrete = bool(vocab)
        self.out_dim = int(vocab or target_dim)
        self.simmim = hp["style"] == "simmim"
        if self.simmim:
            self.mask_embedding = nn.Parameter(torch.zeros(self.embed_dim))
            nn.init.trunc_normal_(self.mask_embedding, std=0.02)
            self.head = nn.Linear(self.embed_dim, self.out_dim)
            init_transformer_weights(self.head)
            return
        max_tokens = int(getattr(encoder, "max_tokens", 0) or getattr(encoder, "num_tokens"))
        self.decoder = MAEDecoder(self.embed_dim, hp["decoder_dim"], hp["decoder_depth"], hp["decoder_heads"],
                                  max_tokens, self.out_dim, grid=getattr(encoder, "grid", None))

    def reconstruct(self, token_batch: TokenBatch, mask: torch.Tensor) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Predictions (B, N, T or vocab) for every position given the hidden tokens ``mask``
        (B, N bool); only those at hidden positions are meaningful. Also returns the padding mask."""
        x, pad = self.tokenize(token_batch)
        if tuple(mask.shape) != tuple(x.shape[:2]):
            raise ConfigError(f"mask must be (B, N) = {tuple(x.shape[:2])}, got {tuple(mask.shape)}")
        if pad is not None:
            mask = mask & ~pad
        return self._predict(x, pad, mask), pad

    def _decode(self, x: torch.Tensor, pad: Optional[torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
        """Features (B, N, F) at every position, before the output head."""
        if self.simmim:
            return self.encoder.encode(torch.where(mask.unsqueeze(-1), self.mask_embedding.to(x.dtype), x), pad)
        keep, keep_hidden = visible_index(mask, pad)
        encoded = self.encoder.encode(gather_tokens(x, keep), keep_hidden, keep=keep)
        return self.decoder.features(encoded, keep, keep_hidden, x.shape[1], pad)

    def _head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features) if self.simmim else self.decoder.head(features)

    def _predict(self, x: torch.Tensor, pad: Optional[torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
        return self._head(self._decode(x, pad, mask))

    def forward(self, token_batch: TokenBatch, generator: Optional[torch.Generator] = None) -> Dict[str, torch.Tensor]:
        x, pad = self.tokenize(token_batch)
        mask = self.sample_mask(token_batch, pad, generator)
        # the output head runs at the hidden positions only (a vocabulary-sized head on every
        # position would cost more than the rest of the model at a 15 % mask ratio)
        hidden_features = self._decode(x, pad, mask)[mask]
        targets = token_batch.targets
        if self.discrete:
            if targets.is_floating_point():
                raise ConfigError("method 'mae' was built for id targets (vocab_size) but got float targets")
            logits = self._head(hidden_features).float()
            labels = targets[mask]
            total = F.cross_entropy(logits, labels, reduction="sum") if labels.numel() else logits.sum() * 0.0
            loss = global_mean(total, labels.numel())  # the global-batch mean under DDP, as mae_loss
            accuracy = (logits.detach().argmax(-1) == labels).float().mean() if labels.numel() else loss.detach()
            return {"loss": loss, "accuracy": accuracy, "mask_ratio": mask.float().mean().detach()}
        if not targets.is_floating_point():
            raise ConfigError("method 'mae' was built for float targets (target_dim) but got ids; "
                              "pass vocab_size or use a stem with a vocab_size attribute")
        if targets.shape[-1] != self.out_dim:
            raise ConfigError(f"method 'mae': targets have {targets.shape[-1]} values per token, the decoder "
                              f"predicts {self.out_dim} (target_dim)")
        pred = self._head(hidden_features)  # (M, T) at the M hidden tokens
        loss = mae_loss(pred, targets[mask], norm_targets=self._hparams["norm_targets"])
        return {"loss": loss, "mask_ratio": mask.float().mean().detach()}


__all__ = ["MAE", "MAEDecoder", "STYLES", "mae_loss", "normalize_targets"]
