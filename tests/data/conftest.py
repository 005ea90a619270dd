"""Small prepared data directories for the data tests (no network)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mdm.config import DataConfig, SyntheticConfig
from mdm.data.meta import DataMeta, padded_vocab_size
from mdm.data.shards import ShardWriter


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Never touch the real data cache from the data tests."""
    monkeypatch.setenv("MDM_DATA_DIR", str(tmp_path / "cache"))


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
