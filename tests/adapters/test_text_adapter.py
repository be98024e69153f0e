"""TextAdapter: tokenizer trained on the corpus and saved with the model, views, tokens, padding,
pretrain with simclr and mae on a tiny corpus."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from multissl.adapters import TextAdapter, get_adapter, list_adapters, take
from multissl.errors import ConfigError, DataError

WORDS = ("free prize call now win cash claim txt reply stop urgent mobile ok see you later home dinner "
         "tonight love going work meeting tomorrow sorry late thanks lol").split()


def corpus(n: int = 64, seed: int = 0):
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(2, 14)))) for _ in range(n)]


@pytest.fixture(scope="module")
def fitted():
    ad = TextAdapter(vocab_size=200)
    data = ad.prepare(corpus())
    return ad, data


def test_registered_and_exported():
    assert "text" in list_adapters()
    assert isinstance(get_adapter("text"), TextAdapter)


def test_prepare_trains_the_tokenizer_and_pads(fitted):
    ad, data = fitted
    ids, lengths = data["ids"], data["lengths"]
    assert ids.dtype == torch.long and ids.shape == (64, ad.config["max_length"])
    pad = ad.tokenizer.pad_id
    real = torch.arange(ids.shape[1]) < lengths[:, None]
    assert (ids[~real] == pad).all() and (ids[real] != pad).all()
    assert ad.tokenizer.vocab_size <= 200
    # every corpus word is one known piece (min_frequency 2 reached); nothing is [UNK]
    assert not (ids == ad.tokenizer.unk_id).any()
    assert ad.tokenizer.decode(ids[0, :lengths[0]].tolist()) == corpus()[0]


def test_max_length_is_the_95th_percentile_capped():
    ad = TextAdapter(max_length_cap=10)
    ad.fit(corpus())
    assert ad.config["max_length"] == 10
    ad2 = TextAdapter(max_length=5)
    assert ad2.prepare(corpus())["ids"].shape[1] == 5


def test_fit_on_raw_texts_then_prepare_other_texts():
    ad = TextAdapter()
    ad.fit(corpus(32, seed=1))
    tok_json = ad.config["tokenizer_json"]
    ad.prepare(corpus(8, seed=2))
    assert ad.config["tokenizer_json"] == tok_json  # prepare does not retrain a fitted tokenizer


def test_config_errors():
    with pytest.raises(ConfigError, match="unknown text adapter option"):
        TextAdapter(colum="x")
    with pytest.raises(ConfigError, match="preset"):
        TextAdapter(preset="strong")
    with pytest.raises(ConfigError, match="no tokenizer yet"):
        TextAdapter().build_encoder()
    with pytest.raises(DataError, match="record 2: empty text"):
        TextAdapter().prepare(["a b", "c", " "])


def test_views_reproducible_with_a_seed_and_different_across_seeds(fitted):
    ad, data = fitted
    ad = TextAdapter.from_config({**ad.get_config(), "preset": "token"})
    batch = take(data, torch.arange(16))
    a = ad.views(batch, generator=torch.Generator().manual_seed(0))
    b = ad.views(batch, generator=torch.Generator().manual_seed(0))
    c = ad.views(batch, generator=torch.Generator().manual_seed(1))
    assert all(torch.equal(x["ids"], y["ids"]) for x, y in zip(a, b))
    assert not torch.equal(a[0]["ids"], a[1]["ids"])  # two views of one step differ
    assert not all(torch.equal(x["ids"], y["ids"]) for x, y in zip(a, c))
    pad = ad.tokenizer.pad_id
    for v in a + c:
        ids = v["ids"]
        n = (ids != pad).sum(1)
        assert (n >= 1).all()
        # right-padded: no real token after a padding position
        assert torch.equal(ids != pad, torch.arange(ids.shape[1]) < n[:, None])


def test_simcse_views_are_identical_ids_and_light_finetune_augment(fitted):
    ad, data = fitted
    batch = take(data, torch.arange(8))
    v1, v2 = ad.views(batch, generator=torch.Generator().manual_seed(0))
    assert torch.equal(v1["ids"], v2["ids"]) and torch.equal(v1["ids"], ad.eval_transform(batch)["ids"])
    f = ad.finetune_augment(batch, generator=torch.Generator().manual_seed(0))
    assert (f["ids"] != ad.tokenizer.pad_id).sum() < (batch["lengths"]).sum()  # some tokens dropped


def test_padding_never_changes_an_embedding(fitted):
    ad, data = fitted
    torch.manual_seed(0)
    enc = ad.build_encoder().eval()
    short = int(data["lengths"].argmin())
    alone = enc(ad.eval_transform(take(data, torch.tensor([short]))))
    in_batch = enc(ad.eval_transform(data))[short]
    torch.testing.assert_close(alone[0], in_batch, rtol=1e-5, atol=1e-5)
    # extra padding columns (the untrimmed prepared row) do not matter either
    wide = {"ids": data["ids"][[short]]}
    assert wide["ids"].shape[1] > int(data["lengths"][short])
    torch.testing.assert_close(enc(wide)[0], alone[0], rtol=1e-5, atol=1e-5)


def test_tokens_for_masked_methods(fitted):
    from multissl.tokens import TokenBatch

    ad, data = fitted
    batch = take(data, torch.arange(4))
    tb = ad.tokens(batch, generator=torch.Generator().manual_seed(0))
    assert isinstance(tb, TokenBatch)
    tb.validate(num_tokens=ad.config["max_length"])
    assert torch.equal(tb.targets, batch["ids"]) and tb.targets.dtype == torch.long
    assert torch.equal(tb.padding_mask, batch["ids"] == ad.tokenizer.pad_id)


def test_whole_word_groups_tie_word_pieces():
    ad = TextAdapter(vocab_size=40, min_frequency=1)
    data = ad.prepare(["unbelievable things happen", "unbelievable"] * 3)
    tok = ad.tokenizer
    ids = data["ids"][:1]
    pieces = tok.tokens(ids[0])
    groups = ad.word_groups(ids)[0, :len(pieces)].tolist()
    for i, p in enumerate(pieces):
        if p.startswith("##"):
            assert groups[i] == groups[i - 1]
        else:
            assert groups[i] == i
    assert any(p.startswith("##") for p in pieces)


def test_wordpiece_ids_do_not_depend_on_the_trainers_hash_order():
    """Pieces of equal frequency used to get ids in hash order (different in every process):
    the ids are now the special tokens, then the pieces in sorted order, and the splits are
    the vocabulary's longest matches, so decoding still gives the text back."""
    from multissl.adapters.text_tokenizer import SPECIAL_TOKENS, TextTokenizer

    tok = TextTokenizer.train(corpus(), vocab_size=300)
    vocab = tok.backend.get_vocab()
    by_id = sorted(vocab, key=vocab.get)
    k = len(SPECIAL_TOKENS)
    assert by_id[:k] == list(SPECIAL_TOKENS)
    assert by_id[k:] == sorted(by_id[k:]) and sorted(vocab.values()) == list(range(len(vocab)))
    text = corpus()[3]
    ids = tok.token_ids([text])[0]
    assert tok.decode(ids) == text.lower() and tok.unk_id not in ids


_TIED_CORPUS_SCRIPT = """
import random, sys
from multissl.adapters.text_tokenizer import TextTokenizer
rng = random.Random(0)
words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 7))) for _ in range(3000)]
texts = [" ".join(rng.choice(words) for _ in range(8)) for _ in range(2000)]
sys.stdout.write(TextTokenizer.train(texts, kind=sys.argv[1], vocab_size=800).to_json())
"""


@pytest.mark.parametrize("kind", ["wordpiece", "bpe"])
def test_the_same_corpus_gives_the_same_tokenizer_in_every_process(kind):
    """Random words make many merges of equal frequency at the vocabulary cutoff; the WordPiece
    trainer used to choose among them in its per-process hash order (4 processes gave 4
    different vocabularies). Three fresh interpreters must now agree byte for byte."""
    import subprocess
    import sys

    outs = {subprocess.run([sys.executable, "-c", _TIED_CORPUS_SCRIPT, kind], capture_output=True, text=True,
                           check=True).stdout for _ in range(3)}
    assert len(outs) == 1
    vocab = json.loads(outs.pop())["model"]["vocab"]
    assert len(vocab) == 800
    from multissl.adapters.text_tokenizer import SPECIAL_TOKENS, TextTokenizer

    added = [t["content"] for t in json.loads(TextTokenizer.train(corpus(), kind=kind, vocab_size=300).to_json())
             ["added_tokens"]]
    assert added == list(SPECIAL_TOKENS)  # the continuation pieces stay ordinary pieces


def test_bpe_tokenizer():
    ad = TextAdapter(tokenizer_kind="bpe", vocab_size=300)
    data = ad.prepare(corpus())
    assert ad.tokenizer.decode(data["ids"][0, :data["lengths"][0]].tolist()).strip() == corpus()[0]


def test_local_hugging_face_tokenizer_folder(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["<unk>"] + WORDS)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>").save_pretrained(tmp_path / "tok")
    ad = TextAdapter(tokenizer=str(tmp_path / "tok"))
    data = ad.prepare(["free prize now", "see you later tonight"])
    tok = ad.tokenizer
    assert tok.tokens(data["ids"][0]) == ["free", "prize", "now"]
    # it had no padding or mask token: both were added after its vocabulary
    assert tok.pad_id >= len(vocab) and tok.mask_id >= len(vocab) and tok.pad_id != tok.mask_id
    # the saved config carries the tokenizer: the folder is not needed any more
    re = TextAdapter.from_config(json.loads(json.dumps({**ad.get_config(), "tokenizer": str(tmp_path / "gone")})))
    assert torch.equal(re.prepare(["free prize now"])["ids"], data["ids"][:1])
    with pytest.raises(ConfigError, match="no such tokenizer folder"):
        TextAdapter(tokenizer=str(tmp_path / "missing")).prepare(["a"])


def test_pretrain_simclr_save_and_reload_give_identical_embeddings(tmp_path):
    from multissl import SSLModel, pretrain

    texts = corpus(48)
    model = pretrain(texts, adapter="text", method="simclr", epochs=1, batch_size=16, progress=False,
                     encoder_kwargs={"depth": 1, "dim": 32, "heads": 2})
    assert all(np.isfinite(h["loss"]) for h in model.config["history"])
    z = model.embed(texts[:10])
    assert z.shape == (10, 32) and np.isfinite(z).all()
    model.save_pretrained(tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert "tokenizer_json" in cfg["adapter_config"]
    re = SSLModel.from_pretrained(tmp_path / "m")
    np.testing.assert_array_equal(re.embed(texts[:10]), z)
    # a text embeds the same alone as in a batch
    np.testing.assert_allclose(re.embed(texts[3:4])[0], z[3], rtol=1e-5, atol=1e-5)


def test_pretrain_mae_is_masked_language_modelling():
    from multissl import pretrain

    texts = corpus(48)
    model = pretrain(texts, adapter="text", method="mae", epochs=1, batch_size=16, progress=False,
                     encoder_kwargs={"depth": 1, "dim": 32, "heads": 2})
    assert np.isfinite(model.config["history"][-1]["loss"])
    assert model.embed(texts[:4]).shape == (4, 32)
    # BERT-style on text unless asked otherwise (the MAE path collapses the mean embedding there)
    assert model.config["method_hparams"]["style"] == "simmim" and model.config["method_hparams"]["mask_ratio"] == 0.15
    mae_path = pretrain(texts, adapter="text", method="mae", epochs=1, batch_size=16, progress=False,
                        encoder_kwargs={"depth": 1, "dim": 32, "heads": 2}, method_kwargs={"style": "mae"})
    assert mae_path.config["method_hparams"]["style"] == "mae"


def test_demo_corpus_is_real_labelled_text_shipped_with_python():
    from multissl.demo import DEMOS
    from multissl.demo_text import STDLIB_AREAS, stdlib_docstrings

    assert DEMOS["text"] == "multissl.demo_text:text_demo"
    texts, labels, areas = stdlib_docstrings()
    assert areas == list(STDLIB_AREAS)
    assert len(texts) == len(labels) > 400 and len(set(texts)) == len(texts)
    assert np.bincount(labels).min() >= 50  # enough for 16 labels per class and a 30% test split
    assert all(len(t.split()) >= 4 for t in texts)
