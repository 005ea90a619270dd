"""Tokenizers: exact GPT-2 / BERT ids from the pinned package files, trained BPE, character level."""

from __future__ import annotations

import pytest

from mdm.config import DataConfig
from mdm.data.meta import DataError
from mdm.data.tokenizer import CharTokenizer, bert_tokenizer, build_tokenizer, gpt2_tokenizer, train_bpe

from .conftest import make_texts

TEXT = "Hello world! Café — naïve “quotes”\n\tTabs and  double  spaces. 日本語 🙂"


def test_gpt2_exact_ids_and_roundtrip():
    tok = gpt2_tokenizer()
    assert tok.encode("Hello world") == [15496, 995]
    assert tok.n_real == 50257 and tok.eos_id == tok.bos_id == tok.pad_id == 50256
    assert tok.encode("<|endoftext|>") == [50256]  # the special is one token
    assert tok.decode(tok.encode(TEXT)) == TEXT
    assert tok.decode(tok.encode("a b") + [tok.n_real, tok.n_real + 5]) == "a b[MASK]"


def test_bert_exact_ids():
    tok = bert_tokenizer()
    assert tok.hf.encode("Hello, world!").ids == [101, 7592, 1010, 2088, 999, 102]
    assert tok.encode("Hello, world!") == [7592, 1010, 2088, 999]  # shards carry no [CLS]/[SEP] per document
    assert tok.n_real == 30522 and (tok.bos_id, tok.eos_id, tok.pad_id) == (101, 102, 0)
    assert tok.decode(tok.encode("Hello, world!")) == "hello, world!"


def test_trained_bpe_roundtrip_size_and_determinism():
    texts = make_texts(200)
    a = train_bpe(lambda: iter(texts), vocab_size=384, progress=False)
    b = train_bpe(lambda: iter(texts), vocab_size=384, progress=False)
    assert a.hf.to_str() == b.hf.to_str()
    assert a.n_real <= 383 and a.eos_id == 0  # mask = n_real <= vocab_size - 1
    for t in [TEXT, texts[3], ""]:
        assert a.decode(a.encode(t)) == t
    assert len(a.encode(texts[0])) < len(texts[0].encode()) / 2  # merges were learned
    with pytest.raises(DataError, match="too small"):
        train_bpe(lambda: iter(texts), vocab_size=100, progress=False)


def test_char_tokenizer():
    tok = CharTokenizer.train(["abcab", "ca d"])
    assert tok.chars == [" ", "a", "b", "c", "d"]
    assert tok.encode("dab") == [4, 1, 2]
    assert tok.encode("z") == [tok.unk_id]
    assert tok.n_real == 7 and tok.eos_id == 5
    assert tok.decode(tok.encode("a b c")) == "a b c"
    capped = CharTokenizer.train(["aaab"], max_chars=1)
    assert capped.chars == ["a"] and capped.encode("b") == [capped.unk_id]


def test_build_tokenizer_rejects_unknown_kind():
    cfg = DataConfig(tokenizer="sentencepiece")
    with pytest.raises(DataError, match="sentencepiece"):
        build_tokenizer(cfg, lambda: iter([]))
