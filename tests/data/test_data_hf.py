"""Hugging Face sources through the real ``datasets`` code path, on local files (no network)."""

from __future__ import annotations

import dataclasses
import json

import datasets
import numpy as np
import pytest

from mdm.config import DataConfig
from mdm.data import DataError, ensure_prepared, load_meta
from mdm.data import hf as hf_mod
from mdm.data.tokenizer import load_tokenizer

from .conftest import make_texts


def _split_texts(out, split):
    meta = load_meta(out)
    tok = load_tokenizer(out)
    info = meta.splits[split]
    ids = np.fromfile(out / info.file, dtype=meta.dtype).astype(np.int64)
    off = np.fromfile(out / info.index_file, dtype=np.int64)
    end = 1 if meta.layout == "flat-eos" else 0
    return [tok.decode(ids[a : b - end]) for a, b in zip(off[:-1], off[1:])]


def test_wikitext_local_files_grouped_into_articles(tmp_path):
    d = tmp_path / "wikitext"
    d.mkdir()
    for split, n_articles in [("train", 6), ("validation", 2), ("test", 2)]:
        rows = []
        for a in range(n_articles):
            rows += [{"text": ""}, {"text": f" = {split} article {a} = \n"}, {"text": ""}]
            rows += [{"text": " = = Section = = \n"}, {"text": f" Body of {split} {a} , with words . \n"}]
        if split == "train":  # the character vocabulary comes from train
            rows.append({"text": " validation test 0123456789 \n"})
        (d / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = DataConfig(name="wikitext103", path=str(d), tokenizer="char")
    out = ensure_prepared(cfg, progress=False)
    meta = load_meta(out)
    assert meta.n_documents == {"train": 6, "validation": 2, "test": 2}
    docs = _split_texts(out, "validation")
    assert docs[0].startswith(" = validation article 0 = ") and "Body of validation 0" in docs[0]
    assert meta.sources[0]["dataset"] == str(d)


def test_openwebtext_holds_out_the_last_documents(tmp_path, monkeypatch):
    texts = make_texts(12, seed=2)
    f = tmp_path / "owt.parquet"
    datasets.Dataset.from_dict({"text": texts}).to_parquet(str(f))
    monkeypatch.setitem(
        hf_mod.SPECS, "openwebtext", dataclasses.replace(hf_mod.SPECS["openwebtext"], holdout_last=4)
    )
    out = ensure_prepared(
        DataConfig(name="openwebtext", path=str(f), tokenizer="bpe", vocab_size=320), progress=False
    )
    meta = load_meta(out)
    assert set(meta.splits) == {"train", "validation"}
    assert _split_texts(out, "validation") == texts[-4:]
    assert _split_texts(out, "train") == texts[:-4]
    assert meta.tokenizer == "bpe" and meta.mask_id <= 319 and meta.vocab_size == 320


def test_lm1b_save_to_disk_and_validation_is_test(tmp_path):
    texts = make_texts(10, seed=3, words_per_doc=10)
    dd = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict({"text": texts[:7]}),
            "test": datasets.Dataset.from_dict({"text": texts[7:]}),
        }
    )
    dd.save_to_disk(str(tmp_path / "lm1b"))
    out = ensure_prepared(
        DataConfig(name="lm1b", path=str(tmp_path / "lm1b"), tokenizer="bpe", vocab_size=320), progress=False
    )
    meta = load_meta(out)
    assert meta.splits["validation"] == meta.splits["test"]  # one shard, two names (as MDLM)
    assert _split_texts(out, "validation") == texts[7:]


def test_text8_stream_layout(tmp_path):
    d = tmp_path / "text8"
    d.mkdir()
    rng = np.random.default_rng(0)
    alphabet = np.array(list("abcdefghijklmnopqrstuvwxyz "))
    parts = {
        s: "".join(rng.choice(alphabet, size=n))
        for s, n in [("train", 5000), ("validation", 500), ("test", 500)]
    }
    for s, t in parts.items():
        datasets.Dataset.from_dict({"text": [t]}).to_parquet(str(d / f"{s}.parquet"))
    out = ensure_prepared(DataConfig(name="text8", path=str(d), tokenizer="char"), progress=False)
    meta = load_meta(out)
    assert meta.layout == "stream" and meta.mask_id == 29  # 27 characters + <eos> + <unk>
    assert meta.tokens_per_split == {"train": 5000, "validation": 500, "test": 500}  # no EOS added
    assert _split_texts(out, "test") == [parts["test"]]


def test_fineweb_hash_split(tmp_path, monkeypatch):
    texts = make_texts(40, seed=4, words_per_doc=8)
    datasets.Dataset.from_dict({"text": texts, "id": [f"<urn:{i}>" for i in range(40)]}).to_parquet(
        str(tmp_path / "fw.parquet")
    )
    monkeypatch.setitem(
        hf_mod.SPECS, "fineweb_edu", dataclasses.replace(hf_mod.SPECS["fineweb_edu"], hash_split=0.2)
    )
    out = ensure_prepared(
        DataConfig(name="fineweb_edu", path=str(tmp_path / "fw.parquet"), tokenizer="bpe", vocab_size=320),
        progress=False,
    )
    got = {s: _split_texts(out, s) for s in ("train", "validation", "test")}
    assert sorted(sum(got.values(), [])) == sorted(texts)
    assert all(got[s] for s in got)


def test_offline_hub_fails_fast_and_clearly(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(hf_mod, "_hub_reachable", lambda timeout=5.0: False)
    with pytest.raises(DataError, match="cannot reach the Hugging Face Hub"):
        ensure_prepared(DataConfig(name="openwebtext", tokenizer="char"), progress=False)
    # HF offline mode (as HF_HUB_OFFLINE=1 sets it): datasets itself refuses; the message stays clear
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(
        DataError, match=r"could not load Hugging Face dataset 'Salesforce/wikitext'.*data\.path"
    ):
        ensure_prepared(DataConfig(name="wikitext103", tokenizer="char"), progress=False)
