"""The ``files`` source on local .txt/.jsonl/.parquet fixtures; bad-input handling."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mdm.config import DataConfig
from mdm.data import BlockLoader, DataError, ensure_prepared, load_meta
from mdm.data.tokenizer import load_tokenizer

from .conftest import make_texts


def _docs_of(data_dir, split):
    meta = load_meta(data_dir)
    tok = load_tokenizer(data_dir)
    ids = np.fromfile(data_dir / meta.splits[split].file, dtype=meta.dtype).astype(np.int64)
    off = np.fromfile(data_dir / meta.splits[split].index_file, dtype=np.int64)
    assert all(ids[b - 1] == meta.eos_id for b in off[1:])  # every document ends in EOS
    return [tok.decode(ids[a : b - 1]) for a, b in zip(off[:-1], off[1:])]


@pytest.fixture
def corpus_dir(tmp_path):
    d = tmp_path / "corpus"
    (d / "sub").mkdir(parents=True)
    texts = make_texts(60, seed=1)
    for i in range(20):
        (d / f"doc{i:02d}.txt").write_text(texts[i])
    with open(d / "sub" / "more.jsonl", "w") as f:
        for t in texts[20:40]:
            f.write(json.dumps({"text": t, "meta": 1}) + "\n")
    pq.write_table(pa.table({"text": texts[40:60]}), d / "sub" / "rows.parquet")
    return d, texts


def test_files_source_round_trip_all_formats(corpus_dir, tmp_path):
    d, texts = corpus_dir
    cfg = DataConfig(name="files", path=str(d), tokenizer="char", dir=str(tmp_path / "out"))
    out = ensure_prepared(cfg, progress=False)
    meta = load_meta(out)
    assert meta.tokenizer == "char" and meta.vocab_size % 64 == 0 and meta.dtype == "uint16"
    got = sorted(sum((_docs_of(out, s) for s in ("train", "validation", "test")), []))
    assert got == sorted(texts)  # every document in exactly one split, losslessly
    assert all(meta.n_documents[s] >= 1 for s in ("train", "validation", "test"))
    # a BlockLoader serves it
    batch = next(iter(BlockLoader(out, "train", 32, 2)))
    assert batch["input_ids"].shape == (2, 32) and int(batch["input_ids"].max()) < meta.mask_id
    # a glob selects a subset; the directory key differs from the directory's
    cfg2 = DataConfig(name="files", path=str(d / "*.txt"), tokenizer="char")
    out2 = ensure_prepared(cfg2, progress=False)
    assert out2 != out and sum(load_meta(out2).n_documents.values()) == 20


def test_bad_files_skipped_or_fatal(corpus_dir, tmp_path):
    d, _ = corpus_dir
    (d / "empty.txt").write_text("  \n")
    (d / "latin1.txt").write_bytes("caf\xe9 au lait".encode("latin-1"))
    cfg = DataConfig(name="files", path=str(d), tokenizer="char", dir=str(tmp_path / "skip"))
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        ensure_prepared(cfg, progress=False)
    msgs = " ".join(str(x.message) for x in w)
    assert "empty.txt is empty" in msgs and "latin1.txt is not valid UTF-8" in msgs
    cfg = DataConfig(
        name="files", path=str(d), tokenizer="char", on_bad_file="error", dir=str(tmp_path / "err")
    )
    with pytest.raises(DataError, match=r"empty\.txt is empty"):
        ensure_prepared(cfg, progress=False)
    assert not (tmp_path / "err").exists()


def test_bad_paths_and_lines(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        ensure_prepared(
            DataConfig(name="files", path=str(tmp_path / "nope"), tokenizer="char"), progress=False
        )
    with pytest.raises(DataError, match="needs data.path"):
        ensure_prepared(DataConfig(name="files", tokenizer="char"), progress=False)
    (tmp_path / "x.jsonl").write_text('{"text": "ok"}\n{"txt": "no text field"}\n')
    with pytest.raises(DataError, match=r"x\.jsonl:2"):
        ensure_prepared(
            DataConfig(name="files", path=str(tmp_path / "x.jsonl"), tokenizer="char"), progress=False
        )
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "a.csv").write_text("text\nhello\n")
    with pytest.raises(DataError, match="no .txt/.jsonl/.parquet"):
        ensure_prepared(DataConfig(name="files", path=str(tmp_path / "e"), tokenizer="char"), progress=False)
