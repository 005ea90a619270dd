"""Mixtures: exact weighted proportions, deterministic order, resume from a saved state, one tokenizer."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mdm.config import DataConfig, MixtureSource, load
from mdm.data import BlockLoader, DataError, build_loader, load_meta
from mdm.data.mixture import MixtureLoader, record

from .conftest import make_texts, write_docs


def _two_sources(tmp_path):
    """Source 0 holds ids 0..8, source 1 ids 9..17 (EOS = 19 in both), so every row names its source."""
    rng = np.random.default_rng(0)
    a = write_docs(
        tmp_path / "a", {"train": [list(rng.integers(0, 9, size=n)) for n in rng.integers(5, 60, 80)]}
    )
    b = write_docs(
        tmp_path / "b", {"train": [list(rng.integers(9, 18, size=n)) for n in rng.integers(5, 60, 50)]}
    )
    assert a.splits["train"].tokens > 0 and b.splits["train"].tokens > 0
    return tmp_path / "a", tmp_path / "b"


def _source(row: np.ndarray) -> int:
    body = row[row != 19]
    assert body.size and (body.max() < 9 or body.min() >= 9)  # a row never mixes sources
    return int(body.min() >= 9)


def _mixture(dirs, weights, batch=10, seed=3):
    loaders = [BlockLoader(d, "train", 16, batch, seed=seed) for d in dirs]
    return MixtureLoader(loaders, weights, batch)


@pytest.mark.parametrize("weights", [(0.7, 0.3), (1.0, 3.0), (0.05, 0.95)])
def test_proportions_are_exact_and_rows_follow_each_sources_order(tmp_path, weights):
    dirs = _two_sources(tmp_path)
    mix = _mixture(dirs, weights)
    w = np.asarray(weights) / sum(weights)
    it = iter(mix)
    rows = np.concatenate([next(it)["input_ids"].numpy() for _ in range(60)])  # 600 rows
    src = np.array([_source(r) for r in rows])
    counts = np.cumsum(np.eye(2, dtype=int)[src], axis=0)  # (600, 2): rows per source after n rows
    n = np.arange(1, len(src) + 1)[:, None]
    assert np.abs(counts - w[None, :] * n).max() < 1.0  # within one row of the weight at every prefix
    assert mix.counts == counts[-1].tolist()
    # the rows of each source are that source's own training blocks, in its own (shuffled) order
    for s, d in enumerate(dirs):
        own = iter(BlockLoader(d, "train", 16, int(counts[-1, s]), seed=3))
        assert np.array_equal(rows[src == s], next(own)["input_ids"].numpy())


def test_mixture_resumes_exactly_from_its_state(tmp_path):
    dirs = _two_sources(tmp_path)
    mix = _mixture(dirs, (0.6, 0.4), batch=7)
    it = iter(mix)
    for _ in range(9):
        next(it)
    state = json.loads(json.dumps(mix.state_dict()))  # plain JSON: as checkpointed
    expect = [next(it)["input_ids"].numpy() for _ in range(6)]
    again = _mixture(dirs, (0.6, 0.4), batch=7)
    again.load_state_dict(state)
    got = [b["input_ids"].numpy() for _, b in zip(range(6), again)]
    assert all(np.array_equal(x, y) for x, y in zip(expect, got))
    assert again.counts == mix.counts
    with pytest.raises(DataError, match="weights"):
        _mixture(dirs, (0.5, 0.5), batch=7).load_state_dict(state)


def test_mixture_config_prepares_sources_with_one_tokenizer(tmp_path):
    for name, seed in (("web", 1), ("books", 2)):
        d = tmp_path / name
        d.mkdir()
        with open(d / "docs.jsonl", "w") as f:
            for t in make_texts(40, seed=seed):
                f.write(json.dumps({"text": t + name}) + "\n")
    cfg = load(
        [],
        [
            "data.tokenizer=bpe",
            "data.vocab_size=320",
            f"data.mixture=[{{name: files, path: {tmp_path / 'web'}, weight: 0.7}}, "
            f"{{name: files, path: {tmp_path / 'books'}, weight: 0.3}}]",
        ],
    )
    loader = build_loader(cfg.data, "train", 32, 10, seed=0)
    assert isinstance(loader, MixtureLoader) and np.allclose(loader.weights, [0.7, 0.3])
    metas = [load_meta(ld.data_dir) for ld in loader.loaders]
    assert metas[0].tokenizer_sha256 == metas[1].tokenizer_sha256  # the BPE trained on the first source
    assert metas[0].splits["train"].sha256 != metas[1].splits["train"].sha256
    batch = next(iter(loader))
    assert batch["input_ids"].shape == (10, 32) and int(batch["input_ids"].max()) < metas[0].mask_id
    val = build_loader(cfg.data, "validation", 32, 4, seed=0, train=False)
    assert isinstance(val, BlockLoader) and val.data_dir == loader.loaders[0].data_dir
    assert record(cfg.data) == [
        {"name": "files", "path": str(tmp_path / "web"), "weight": 0.7, "configured_weight": 0.7},
        {"name": "files", "path": str(tmp_path / "books"), "weight": 0.3, "configured_weight": 0.3},
    ]
    # sources whose vocabularies differ are refused, naming the field
    bad = DataConfig(
        tokenizer="char",
        mixture=[MixtureSource(name="files", path=str(tmp_path / "web")), MixtureSource(name="synthetic")],
    )
    with pytest.raises(DataError, match=r"data\.mixture\[1\].*share one tokenizer"):
        build_loader(bad, "train", 32, 4, seed=0)
    with pytest.raises(DataError, match=r"data\.mixture\[0\]\.weight=0"):
        build_loader(DataConfig(mixture=[MixtureSource(weight=0)]), "train", 32, 4, seed=0)
