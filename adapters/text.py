"""The text adapter: strings, CSV/TSV files and ``datasets`` -> padded token ids, a subword
tokenizer trained on the user's corpus, on-device token-level views and a small Transformer.

    >>> from multissl.adapters import get_adapter
    >>> adapter = get_adapter("text")                      # or TextAdapter(column="message", ...)
    >>> adapter.fit(train_texts)                           # trains the tokenizer (optional: prepare does it)
    >>> data = adapter.prepare("spam.csv")                 # {"ids": (N, L) long, "lengths": (N,) long}
    >>> g = torch.Generator().manual_seed(0)
    >>> v1, v2 = adapter.views(take(data, idx), generator=g)   # {"ids": (B, L')} each
    >>> tb = adapter.tokens(take(data, idx), generator=g)      # TokenBatch for mae / data2vec
    >>> encoder = adapter.build_encoder()                  # TokenEncoder, (B, L) ids -> (B, 128)

The tokenizer is trained the first time data is prepared (or by :meth:`TextAdapter.fit` on raw
texts) and stored as JSON in the config, so a saved model (``config.json``) carries it and
never downloads anything. See ``docs/adapters/text.md`` for every option.
"""
from __future__ import annotations

import math
from typing import Any, ClassVar, Dict, List, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

from multissl.adapters.base import Adapter
from multissl.adapters.text_encoders import TEXT_ENCODERS, build_text_encoder
from multissl.adapters.text_io import TextRecords, read_texts
from multissl.adapters.text_tokenizer import (DEFAULT_MIN_FREQUENCY, DEFAULT_VOCAB_SIZE, KINDS, TextTokenizer)
from multissl.adapters.text_transforms import (random_crop, span_deletion, token_dropout, token_masking, trim)
from multissl.bad_records import BadRecordPolicy, prepare_scope
from multissl.errors import ConfigError, DataError

TextBatch = Dict[str, torch.Tensor]

#: augmentation settings of each preset (see :meth:`TextAdapter.views`)
PRESETS: Dict[str, Dict[str, float]] = {
    # Gao et al. 2021: identical inputs; the encoder's dropout alone makes the two views differ
    "simcse": {"crop_min": 1.0, "span_prob": 0.0, "span_max_frac": 0.0, "dropout_prob": 0.0, "mask_prob": 0.0},
    # token-level edits on top of dropout: crop, one deleted span, deleted and masked tokens
    "token": {"crop_min": 0.6, "span_prob": 0.5, "span_max_frac": 0.2, "dropout_prob": 0.1, "mask_prob": 0.1},
    # fine-tuning: a few deleted tokens only
    "light": {"crop_min": 1.0, "span_prob": 0.0, "span_max_frac": 0.0, "dropout_prob": 0.1, "mask_prob": 0.0},
    "none": {"crop_min": 1.0, "span_prob": 0.0, "span_max_frac": 0.0, "dropout_prob": 0.0, "mask_prob": 0.0},
}
AUG_KEYS = tuple(PRESETS["none"])
_DATA_KEYS = ("column", "column_names", "tokenizer", "tokenizer_kind", "vocab_size", "min_frequency", "lowercase",
              "max_length", "max_length_cap", "length_percentile", "whole_word_masking", "preset")
_LEARNT_KEYS = ("tokenizer_json", "special_tokens")
CONFIG_KEYS = _DATA_KEYS + AUG_KEYS + _LEARNT_KEYS

#: max_length = this percentile of the corpus' token lengths, within [MIN_LENGTH, max_length_cap]
DEFAULT_PERCENTILE = 95.0
DEFAULT_LENGTH_CAP = 128
MIN_LENGTH = 8


class TextAdapter(Adapter):
    """Texts as right-padded token ids ``{"ids": (N, L), "lengths": (N,)}``.

    Config options (JSON-serialisable; ``None`` means "infer" or "preset default"):

    - ``column``: the text column of a CSV/TSV file or dataset (default ``"text"``, or a
      dataset's only string column); a list (or ``"title,description"``) joins several;
    - ``column_names``: names of the columns of a header-less CSV/TSV file;
    - ``tokenizer``: a local Hugging Face tokenizer folder to start from (default: train one);
    - ``tokenizer_kind`` (``"wordpiece"`` or ``"bpe"``), ``vocab_size`` (upper bound, 8000),
      ``min_frequency`` (2), ``lowercase`` (True): training a tokenizer on the corpus;
    - ``max_length``: tokens kept per text (default: the ``length_percentile`` (95) percentile
      of the first corpus, at most ``max_length_cap`` (128));
    - ``whole_word_masking``: the masked methods hide all pieces of a word together (True);
    - ``preset``: view augmentation, ``"simcse"`` (default), ``"token"``, ``"light"``, ``"none"``;
      overrides ``crop_min``, ``span_prob``, ``span_max_frac``, ``dropout_prob``, ``mask_prob``.

    Learnt state (``tokenizer_json``, ``special_tokens``, ``max_length``) is written into the
    config by :meth:`fit` / the first :meth:`prepare`.
    """

    name: ClassVar[str] = "text"
    #: mae (masked language modelling) is the default: on the SMS Spam Collection its frozen
    #: embeddings beat SimCSE-style simclr and token-edit simclr views by a wide margin
    #: (spam F1 with 8 labels/class 0.70 vs 0.42 / 0.53; docs/recipes/spam_detection.md)
    defaults: ClassVar[Dict[str, Any]] = {
        "method": "mae",
        "epochs": 30,
        "batch_size": 64,
        "encoder": "transformer",
    }
    supported_methods: ClassVar[Optional[List[str]]] = None
    #: SimCSE's temperature (Gao et al. 2021 use 0.05 with cosine similarity); BERT masks 15%,
    #: and mae trains BERT-style on text (simmim: mask embeddings in the encoder's input). The MAE
    #: path (the encoder sees only the visible pieces) collapses the mean embedding on text: on AG
    #: News a probe on it scores 0.536 (effective rank 3 of 128) against 0.774 BERT-style at the
    #: same budget (docs/recipes/text_categorization.md)
    method_defaults: ClassVar[Dict[str, Dict[str, Any]]] = {
        "simclr": {"temperature": 0.05},
        "mae": {"mask_ratio": 0.15, "style": "simmim"},
        "data2vec": {"mask_ratio": 0.15},
    }

    def __init__(self, **config: Any) -> None:
        unknown = sorted(set(config) - set(CONFIG_KEYS))
        if unknown:
            raise ConfigError(f"unknown text adapter option(s) {', '.join(unknown)}; valid: {', '.join(CONFIG_KEYS)}")
        config.setdefault("preset", "simcse")
        super().__init__(**config)
        c = self.config
        if c["preset"] not in PRESETS:
            raise ConfigError(f"unknown text augmentation preset {c['preset']!r}; available: {', '.join(PRESETS)}")
        if c.get("tokenizer_kind") is not None and c["tokenizer_kind"] not in KINDS:
            raise ConfigError(f"tokenizer_kind must be one of {', '.join(KINDS)}, got {c['tokenizer_kind']!r}")
        for key in ("max_length", "max_length_cap", "vocab_size", "min_frequency"):
            v = c.get(key)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ConfigError(f"{key} must be a positive integer, got {v!r}")
        for key in ("crop_min", "span_prob", "span_max_frac", "dropout_prob", "mask_prob"):
            v = c.get(key)
            if v is not None and not (isinstance(v, (int, float)) and 0.0 <= float(v) <= 1.0):
                raise ConfigError(f"{key} must be in [0, 1], got {v!r}")
        p = c.get("length_percentile")
        if p is not None and not (isinstance(p, (int, float)) and 0 < float(p) <= 100):
            raise ConfigError(f"length_percentile must be in (0, 100], got {p!r}")
        if isinstance(c.get("column"), tuple):
            c["column"] = list(c["column"])
        self._tokenizer: Optional[TextTokenizer] = None
        self._continuation: Dict[torch.device, torch.Tensor] = {}

    # ---- tokenizer ---------------------------------------------------------------------------
    @property
    def tokenizer(self) -> TextTokenizer:
        """The fitted tokenizer (ConfigError before :meth:`fit` / :meth:`prepare`)."""
        if self._tokenizer is None:
            js = self.config.get("tokenizer_json")
            if js is None:
                raise ConfigError("the text adapter has no tokenizer yet: call adapter.fit(texts) or "
                                  "adapter.prepare(texts) first")
            self._tokenizer = TextTokenizer.from_json(js, self.config.get("special_tokens"))
        return self._tokenizer

    @property
    def is_fitted(self) -> bool:
        return self.config.get("tokenizer_json") is not None

    def fit(self, data: Any) -> "TextAdapter":
        """Learn the tokenizer and ``max_length`` from raw texts (any source :meth:`prepare`
        accepts). Given already-prepared ids (as ``pretrain`` does after ``prepare``), the
        tokenizer learnt by that first ``prepare`` is kept."""
        if isinstance(data, dict) and "ids" in data:
            if not self.is_fitted:
                raise ConfigError("prepared ids but no tokenizer in the config; fit on raw texts first")
            return self
        self._fit_texts(self._read(data).texts)
        return self

    def _fit_texts(self, texts: Sequence[str]) -> None:
        c = self.config
        if c.get("tokenizer"):
            tok = TextTokenizer.from_pretrained(c["tokenizer"])
        else:
            tok = TextTokenizer.train(texts, kind=c.get("tokenizer_kind") or "wordpiece",
                                      vocab_size=c.get("vocab_size") or DEFAULT_VOCAB_SIZE,
                                      min_frequency=c.get("min_frequency") or DEFAULT_MIN_FREQUENCY,
                                      lowercase=c.get("lowercase", True) is not False)
        c["tokenizer_json"] = tok.to_json()
        c["special_tokens"] = dict(tok.special)
        self._tokenizer = tok
        self._continuation = {}
        if c.get("max_length") is None:
            lengths = tok.lengths(texts)
            pct = float(c.get("length_percentile") or DEFAULT_PERCENTILE)
            cap = int(c.get("max_length_cap") or DEFAULT_LENGTH_CAP)
            c["max_length"] = int(min(cap, max(MIN_LENGTH, math.ceil(float(np.percentile(lengths, pct))))))

    # ---- data ----------------------------------------------------------------------------------
    def _read(self, data: Any, policy: Optional[BadRecordPolicy] = None) -> TextRecords:
        return read_texts(data, column=self.config.get("column"), column_names=self.config.get("column_names"),
                          policy=policy)

    def prepare(self, data: Any, on_bad_record: Union[str, BadRecordPolicy] = "raise") -> TextBatch:
        """Read and validate ``data`` once, to ``{"ids": long (N, max_length), "lengths": long (N,)}``.

        Accepts a list of strings, a CSV/TSV/text file (see :mod:`multissl.adapters.text_io`),
        a saved ``datasets`` folder, Parquet/Arrow, a ``datasets.Dataset`` or a pandas
        DataFrame. The first call on an unfitted adapter trains the tokenizer on these texts.

        ``on_bad_record="skip"`` (or a :class:`~multissl.bad_records.BadRecordPolicy`) leaves out
        empty or whitespace-only texts, lines that are not UTF-8 and lines with the wrong number
        of fields, and counts them; ``"raise"`` stops at the first (see ``docs/training.md``).
        """
        if isinstance(data, dict) and "ids" in data and "lengths" in data:
            return self._check_prepared(data)  # already prepared (e.g. a subset handed to pretrain)
        with prepare_scope(on_bad_record, "texts") as policy:
            records = self._read(data, policy)
        if not self.is_fitted:
            self._fit_texts(records.texts)
        return self.encode(records.texts)

    def _check_prepared(self, data: TextBatch) -> TextBatch:
        ids, lengths = data["ids"], data["lengths"]
        if not (isinstance(ids, torch.Tensor) and ids.ndim == 2 and not ids.is_floating_point()
                and isinstance(lengths, torch.Tensor) and lengths.shape == ids.shape[:1]):
            raise DataError("prepared text data must hold 'ids' long (N, L) and 'lengths' long (N,)")
        if not self.is_fitted:
            raise ConfigError("prepared ids but no tokenizer in the config; fit on raw texts first")
        if ids.shape[1] > self.max_length or (len(ids) and int(ids.max()) >= self.tokenizer.vocab_size):
            raise DataError("prepared ids do not match this adapter's tokenizer / max_length")
        return {"ids": ids.long(), "lengths": lengths.long()}

    def encode(self, texts: Sequence[str]) -> TextBatch:
        """Already-validated strings -> prepared ids (no reading, no checks)."""
        ids, lengths = self.tokenizer.encode(texts, int(self.config["max_length"]))
        return {"ids": ids, "lengths": lengths}

    @property
    def max_length(self) -> int:
        if self.config.get("max_length") is None:
            raise ConfigError("max_length is unknown: fit or prepare texts first, or pass max_length=")
        return int(self.config["max_length"])

    # ---- transforms ----------------------------------------------------------------------------
    @staticmethod
    def _check_batch(batch: Any) -> TextBatch:
        if not isinstance(batch, dict) or "ids" not in batch or "lengths" not in batch:
            raise ConfigError("the text adapter transforms prepared batches: a dict with 'ids' (B, L) and 'lengths' (B,)")
        return batch

    def eval_transform(self, batch: TextBatch) -> TextBatch:
        """``{"ids": (B, L')}``: the prepared ids, trailing all-padding columns dropped."""
        b = self._check_batch(batch)
        return {"ids": trim(b["ids"], b["lengths"])}

    def augmentation_settings(self, preset: Optional[str] = None, **overrides: Any) -> Dict[str, float]:
        """The resolved augmentation settings of ``preset`` (default: the config's, with its overrides)."""
        base = self.config["preset"]
        use_config = preset is None or preset == base
        preset = preset or base
        if preset not in PRESETS:
            raise ConfigError(f"unknown text augmentation preset {preset!r}; available: {', '.join(PRESETS)}")
        settings = dict(PRESETS[preset])
        if use_config:
            settings.update({k: float(self.config[k]) for k in AUG_KEYS if self.config.get(k) is not None})
        bad = sorted(set(overrides) - set(AUG_KEYS))
        if bad:
            raise ConfigError(f"unknown text augmentation option(s) {', '.join(bad)}; valid: {', '.join(AUG_KEYS)}")
        settings.update({k: float(v) for k, v in overrides.items() if v is not None})
        return settings

    def augment(self, batch: TextBatch, generator: Optional[torch.Generator] = None, preset: Optional[str] = None,
                **overrides: Any) -> TextBatch:
        """One augmented view ``{"ids": (B, L')}``: random crop, span deletion, token dropout,
        token masking, in that order, each with the settings of ``preset`` (+ ``overrides``).
        Every random number comes from ``generator``; the same seed gives the same view."""
        b = self._check_batch(batch)
        s = self.augmentation_settings(preset, **overrides)
        tok = self.tokenizer
        ids, lengths = b["ids"], b["lengths"]
        ids, lengths = random_crop(ids, lengths, s["crop_min"], tok.pad_id, generator)
        ids, lengths = span_deletion(ids, lengths, s["span_prob"], s["span_max_frac"], tok.pad_id, generator)
        ids, lengths = token_dropout(ids, lengths, s["dropout_prob"], tok.pad_id, generator)
        ids, lengths = token_masking(ids, lengths, s["mask_prob"], tok.mask_id, generator)
        return {"ids": trim(ids, lengths)}

    def views(self, batch: TextBatch, n_views: int = 2, generator: Optional[torch.Generator] = None) -> List[TextBatch]:
        """``n_views`` independently augmented views with the config's preset (default
        ``"simcse"``: identical ids, so the encoder's dropout is the only noise)."""
        if n_views < 1:
            raise ConfigError(f"n_views must be at least 1, got {n_views}")
        return [self.augment(batch, generator) for _ in range(n_views)]

    def finetune_augment(self, batch: TextBatch, generator: Optional[torch.Generator] = None) -> TextBatch:
        """The light policy for supervised fine-tuning (token dropout 0.1), shared by the
        SSL-pretrained and the from-scratch encoder."""
        return self.augment(batch, generator, preset="light")

    def tokens(self, batch: TextBatch, generator: Optional[torch.Generator] = None) -> Any:
        """A :class:`~multissl.tokens.TokenBatch` for ``mae`` (masked language modelling) and
        ``data2vec``: inputs ``{"ids": (B, max_length)}``, targets the ids themselves, the
        padding mask, and (with ``whole_word_masking``) mask groups that tie the pieces of a
        word together (group id = position of the word's first piece)."""
        from multissl.tokens import TokenBatch

        b = self._check_batch(batch)
        ids = b["ids"]
        pad = ids == self.tokenizer.pad_id
        groups = self.word_groups(ids) if self.config.get("whole_word_masking", True) else None
        return TokenBatch(inputs={"ids": ids}, targets=ids, padding_mask=pad, mask_groups=groups)

    def word_groups(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, L) long: for each position, the position of the first piece of its word."""
        table = self._continuation_table(ids.device)
        cont = table[ids] & (ids != self.tokenizer.pad_id)
        pos = torch.arange(ids.shape[1], device=ids.device).expand_as(ids)
        starts = torch.where(cont, torch.zeros_like(pos), pos)
        return torch.cummax(starts, dim=1).values

    def _continuation_table(self, device: torch.device) -> torch.Tensor:
        """(vocab,) bool: True for pieces that continue a word (WordPiece ``##x``; byte-level
        BPE pieces without the leading-space marker)."""
        if device not in self._continuation:
            tok = self.tokenizer
            vocab = tok.backend.get_vocab(with_added_tokens=True)
            table = torch.zeros(tok.vocab_size, dtype=torch.bool)
            import json

            pre = json.loads(tok.to_json()).get("pre_tokenizer") or {}
            kinds = {pre.get("type")} | {p.get("type") for p in pre.get("pretokenizers", []) or []}
            byte_level = "ByteLevel" in kinds
            specials = set(tok.special.values()) | {"[CLS]", "[SEP]"}
            for piece, i in vocab.items():
                if piece in specials or i >= len(table):
                    continue
                table[i] = piece.startswith("##") if not byte_level else not piece.startswith("Ġ")
            self._continuation[device] = table.to(device)
        return self._continuation[device]

    # ---- model -----------------------------------------------------------------------------------
    def build_encoder(self, name: Optional[str] = None, **kwargs: Any) -> nn.Module:
        """``transformer`` (default: dim 128, depth 2, 4 heads, dropout 0.1, mean pooling) or
        ``transformer_4``; overrides ``dim``, ``depth``, ``heads``, ``mlp_ratio``, ``dropout``,
        ``pool``. Vocabulary and positional-table sizes come from the fitted tokenizer."""
        tok = self.tokenizer
        return build_text_encoder(name or self.defaults["encoder"], tok.vocab_size, tok.pad_id, self.max_length,
                                  **kwargs)

    def encoder_names(self) -> List[str]:
        return list(TEXT_ENCODERS)

    def get_config(self) -> Dict[str, Any]:
        return dict(self.config)


__all__ = ["TextAdapter", "PRESETS", "AUG_KEYS", "CONFIG_KEYS"]
