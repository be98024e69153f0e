"""A subword tokenizer trained on the user's own corpus (Hugging Face ``tokenizers``).

Why train one instead of downloading BERT's: the encoder is trained from scratch on the user's
data anyway, a vocabulary learnt from that data covers its spelling (SMS abbreviations,
product codes) with fewer pieces, and nothing has to be downloaded. The whole tokenizer is
kept as its JSON string (``Tokenizer.to_str()``), so it travels inside the adapter config and
``config.json`` of a saved model.

- ``wordpiece`` (default; Schuster & Nakajima 2012, as in BERT): BERT's normaliser (optional
  lowercasing) and pre-tokenizer (whitespace + punctuation), ``##`` continuation pieces;
- ``bpe`` (Sennrich et al. 2016, byte-level as in GPT-2): no unknown tokens ever.

Ids carry **no** [CLS]/[SEP]: the encoders pool over content tokens. The special tokens are
``[PAD]`` (id 0), ``[UNK]``, ``[CLS]``, ``[SEP]``, ``[MASK]``. A local Hugging Face tokenizer
folder can be the starting point instead (:meth:`TextTokenizer.from_pretrained`); its
``[PAD]``/``[MASK]`` equivalents are used, and added when it has none.
"""
from __future__ import annotations

import json
import os
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from multissl.errors import ConfigError

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
KINDS = ("wordpiece", "bpe")
#: an upper bound; the trainers stop earlier on small corpora (no merge reaches min_frequency)
DEFAULT_VOCAB_SIZE = 8000
DEFAULT_MIN_FREQUENCY = 2


def continuation_pieces(tokenizer: Any, texts: Sequence[str], prefix: str = "##") -> List[str]:
    """Sorted ``prefix + c`` for every character ``c`` that follows another one inside a word of
    ``texts`` (after ``tokenizer``'s normaliser and pre-tokenizer): the continuation pieces a
    WordPiece trainer adds to its alphabet (about 50 µs per short text)."""
    chars = set()
    for text in texts:
        if tokenizer.normalizer is not None:
            text = tokenizer.normalizer.normalize_str(text)
        for word, _ in tokenizer.pre_tokenizer.pre_tokenize_str(text):
            chars.update(word[1:])
    return [prefix + c for c in sorted(chars)]


class TextTokenizer:
    """A ``tokenizers.Tokenizer`` plus the ids of its padding, unknown and mask tokens."""

    def __init__(self, backend: Any, special: Optional[Dict[str, str]] = None) -> None:
        backend.no_padding()
        backend.no_truncation()
        self.backend = backend
        self.special = dict(special or {"pad": "[PAD]", "unk": "[UNK]", "mask": "[MASK]"})
        ids = {role: backend.token_to_id(tok) if tok is not None else None for role, tok in self.special.items()}
        for role in ("pad", "mask"):
            if ids.get(role) is None:
                raise ConfigError(f"the tokenizer has no {role} token {self.special.get(role)!r}")
        self.pad_id: int = int(ids["pad"])
        self.mask_id: int = int(ids["mask"])
        self.unk_id: Optional[int] = None if ids.get("unk") is None else int(ids["unk"])

    # ---- construction --------------------------------------------------------------------
    @classmethod
    def train(cls, texts: Iterable[str], kind: str = "wordpiece", vocab_size: int = DEFAULT_VOCAB_SIZE,
              min_frequency: int = DEFAULT_MIN_FREQUENCY, lowercase: bool = True) -> "TextTokenizer":
        """Learn a vocabulary of at most ``vocab_size`` pieces from ``texts``."""
        from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

        if kind not in KINDS:
            raise ConfigError(f"unknown tokenizer kind {kind!r}; available: {', '.join(KINDS)}")
        if vocab_size < len(SPECIAL_TOKENS) + 1:
            raise ConfigError(f"vocab_size must be > {len(SPECIAL_TOKENS)}, got {vocab_size}")
        texts = list(texts)
        if kind == "wordpiece":
            tok = Tokenizer(models.WordPiece(unk_token="[UNK]", continuing_subword_prefix="##"))
            tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                                        strip_accents=None, lowercase=lowercase)
            tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
            tok.decoder = decoders.WordPiece(prefix="##")
            # The trainer numbers the continuation pieces ("##e") as it meets them in its word
            # table, whose order is hashed afresh in every process; merges of equal frequency are
            # then chosen in that order, so two processes could learn different vocabularies from
            # the same corpus. Numbering them first, in sorted order, makes the choice the same.
            continuation = continuation_pieces(tok, texts)
            trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                                special_tokens=list(SPECIAL_TOKENS) + continuation,
                                                continuing_subword_prefix="##", show_progress=False)
        else:
            tok = Tokenizer(models.BPE())
            steps = [normalizers.NFKC()] + ([normalizers.Lowercase()] if lowercase else [])
            tok.normalizer = normalizers.Sequence(steps)
            tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
            tok.decoder = decoders.ByteLevel()
            trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                          special_tokens=list(SPECIAL_TOKENS), show_progress=False,
                                          initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        tok.train_from_iterator(texts, trainer=trainer)
        if kind == "wordpiece":
            # Renumber the pieces (special tokens first, then in sorted order) and keep only the
            # real special tokens as added tokens (the continuation pieces above are ordinary
            # pieces). WordPiece matches the longest piece in the vocabulary, so ids do not change
            # the splits.
            vocab = tok.get_vocab()
            pieces = list(SPECIAL_TOKENS) + sorted(p for p in vocab if p not in SPECIAL_TOKENS)
            clean = Tokenizer(models.WordPiece({p: i for i, p in enumerate(pieces)}, unk_token="[UNK]",
                                               continuing_subword_prefix="##"))
            clean.normalizer, clean.pre_tokenizer, clean.decoder = tok.normalizer, tok.pre_tokenizer, tok.decoder
            clean.add_special_tokens(list(SPECIAL_TOKENS))
            tok = clean
        return cls(tok)

    @classmethod
    def from_json(cls, text: str, special: Optional[Dict[str, str]] = None) -> "TextTokenizer":
        from tokenizers import Tokenizer

        try:
            backend = Tokenizer.from_str(text)
        except Exception as e:  # noqa: BLE001 - tokenizers raises plain Exceptions
            raise ConfigError(f"cannot read the stored tokenizer ({e})") from None
        return cls(backend, special)

    @classmethod
    def from_pretrained(cls, path: Union[str, os.PathLike]) -> "TextTokenizer":
        """A local Hugging Face tokenizer (or model) folder, loaded without network access.

        Its fast tokenizer's backend is used; [PAD]/[MASK] are added when it lacks them.
        """
        from transformers import AutoTokenizer

        if not os.path.isdir(path):
            raise ConfigError(f"{path}: no such tokenizer folder")
        try:
            hf = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        except Exception as e:  # noqa: BLE001 - transformers raises OSError/ValueError/...
            raise ConfigError(f"{path}: cannot load a Hugging Face tokenizer ({type(e).__name__}: {e})") from None
        if not getattr(hf, "is_fast", False):
            raise ConfigError(f"{path}: only fast (Rust) tokenizers are supported (tokenizer.json)")
        backend = hf.backend_tokenizer
        special = {"pad": hf.pad_token, "unk": hf.unk_token, "mask": hf.mask_token}
        for role, default in (("pad", "[PAD]"), ("mask", "[MASK]")):
            if special[role] is None:
                backend.add_special_tokens([default])
                special[role] = default
        return cls(backend, special)

    # ---- serialisation -------------------------------------------------------------------
    def to_json(self) -> str:
        return self.backend.to_str()

    # ---- use -------------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return int(self.backend.get_vocab_size(with_added_tokens=True))

    def token_ids(self, texts: Sequence[str]) -> List[List[int]]:
        """Content-token ids of each text (no special tokens); an unrepresentable text -> [UNK]."""
        encodings = self.backend.encode_batch(list(texts), add_special_tokens=False)
        fallback = [self.unk_id if self.unk_id is not None else self.mask_id]
        return [e.ids if e.ids else fallback for e in encodings]

    def encode(self, texts: Sequence[str], max_length: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """``ids`` long (N, max_length) padded with ``pad_id`` (texts cut after ``max_length``
        tokens) and ``lengths`` long (N,)."""
        seqs = self.token_ids(texts)
        ids = torch.full((len(seqs), max_length), self.pad_id, dtype=torch.long)
        lengths = torch.empty(len(seqs), dtype=torch.long)
        for i, s in enumerate(seqs):
            s = s[:max_length]
            ids[i, :len(s)] = torch.as_tensor(s, dtype=torch.long)
            lengths[i] = len(s)
        return ids, lengths

    def lengths(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray([len(s) for s in self.token_ids(texts)], dtype=np.int64)

    def decode(self, ids: Sequence[int]) -> str:
        return self.backend.decode([int(i) for i in ids if int(i) != self.pad_id], skip_special_tokens=False)

    def tokens(self, ids: Sequence[int]) -> List[str]:
        return [self.backend.id_to_token(int(i)) for i in ids if int(i) != self.pad_id]

    def unigram_counts(self, ids: torch.Tensor) -> torch.Tensor:
        """Count of every vocabulary id over the real tokens of ``ids`` (N, L)."""
        real = ids[ids != self.pad_id]
        return torch.bincount(real.flatten().cpu(), minlength=self.vocab_size)

    def __repr__(self) -> str:
        model = json.loads(self.backend.to_str())["model"]["type"]
        return f"TextTokenizer({model}, vocab_size={self.vocab_size})"


__all__ = ["TextTokenizer", "SPECIAL_TOKENS", "KINDS", "DEFAULT_VOCAB_SIZE", "DEFAULT_MIN_FREQUENCY"]
