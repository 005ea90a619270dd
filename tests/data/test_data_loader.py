"""BlockLoader: layout, determinism, per-rank sharding, resume, and the prepare contract."""

from __future__ import annotations

import io
import json
import os

import numpy as np
import pytest
import torch

from mdm.data import BlockLoader, DataError, build_loader, ensure_prepared, load_meta, resolve_data_dir
from mdm.data.meta import dtype_for
from mdm.data.sources import SOURCES


def _cat(loader):
    return torch.cat([b["input_ids"] for b in loader])


def _take(loader, n):
    it = iter(loader)
    return [next(it)["input_ids"] for _ in range(n)]


def test_vocab_convention_and_wrap_blocks(syn_cfg):
    loader = build_loader(syn_cfg, "train", seq_len=32, batch_size=4, seed=0, progress=False)
    meta = loader.meta
    assert meta.vocab_size % 64 == 0 and meta.vocab_size > meta.mask_id
    assert meta.tokens_per_split == {"train": 12_000, "validation": 3_000, "test": 3_000}
    stream = np.fromfile(loader.data_dir / "train.bin", dtype=meta.dtype).astype(np.int64)
    assert loader.num_blocks == 12_000 // 32
    # one epoch visits every block exactly once, each equal to its slice of the stream
    seen = []
    for batch in _take(loader, -(-loader.num_blocks // 4)):
        assert batch.dtype == torch.long and batch.shape == (4, 32)
        assert int(batch.max()) < meta.mask_id
        for row in batch.numpy():
            starts = np.flatnonzero(
                np.all(np.lib.stride_tricks.sliding_window_view(stream, 32)[::32] == row, axis=1)
            )
            seen.append(int(starts[0]))
    assert sorted(seen[: loader.num_blocks]) == list(range(loader.num_blocks))


def test_train_order_deterministic_and_seeded(syn_cfg):
    a = _take(build_loader(syn_cfg, "train", 16, 8, seed=3, progress=False), 5)
    b = _take(build_loader(syn_cfg, "train", 16, 8, seed=3, progress=False), 5)
    c = _take(build_loader(syn_cfg, "train", 16, 8, seed=4, progress=False), 5)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))
    # epochs differ in order
    loader = build_loader(syn_cfg, "train", 16, 8, seed=3, progress=False)
    e0 = loader._epoch_blocks(0).copy()
    e1 = loader._epoch_blocks(1)
    assert sorted(e0) == sorted(e1) and not np.array_equal(e0, e1)


@pytest.mark.parametrize("world", [2, 3])
def test_ranks_disjoint_and_match_single_rank(syn_cfg, world):
    B, L = 4, 16
    one = build_loader(syn_cfg, "train", L, B * world, seed=5, progress=False)
    ranks = [
        build_loader(syn_cfg, "train", L, B, seed=5, rank=r, world_size=world, progress=False)
        for r in range(world)
    ]
    n_epoch = ranks[0].blocks_per_epoch
    all_idx = [np.concatenate([rk._indices(0, n_epoch)]) for rk in ranks]
    flat = np.concatenate(all_idx)
    assert len(set(flat.tolist())) == len(flat) == n_epoch * world  # disjoint, equal length
    # step i of W ranks with batch B covers exactly the rows of one rank with batch W*B
    single = _take(one, 3)
    per_rank = [_take(rk, 3) for rk in ranks]
    for i in range(3):
        got = sorted(map(tuple, torch.cat([p[i] for p in per_rank]).tolist()))
        want = sorted(map(tuple, single[i].tolist()))
        assert got == want  # (the epoch's tail may differ: each layout truncates it to its own multiple)


def test_state_dict_resume_is_exact_across_epochs(syn_cfg):
    B, L = 7, 16
    ref_loader = build_loader(syn_cfg, "train", L, B, seed=0, progress=False)
    per_epoch = ref_loader.blocks_per_epoch
    n_steps = 2 * per_epoch // B + 3  # crosses two epoch boundaries
    ref = _take(ref_loader, n_steps)
    for k in [0, 1, per_epoch // B, per_epoch // B + 1, n_steps - 1]:
        loader = build_loader(syn_cfg, "train", L, B, seed=0, progress=False)
        _take(loader, k)
        buf = io.BytesIO()
        torch.save({"data": loader.state_dict()}, buf)
        buf.seek(0)
        state = torch.load(buf, weights_only=True)["data"]
        assert json.loads(json.dumps(state)) == state  # plain ints/strs
        fresh = build_loader(syn_cfg, "train", L, B, seed=0, progress=False)
        fresh.load_state_dict(state)
        rest = _take(fresh, n_steps - k)
        assert all(torch.equal(x, y) for x, y in zip(rest, ref[k:]))
    # rewinding a prefetched batch
    loader = build_loader(syn_cfg, "train", L, B, seed=0, progress=False)
    _take(loader, 4)
    fresh = build_loader(syn_cfg, "train", L, B, seed=0, progress=False)
    fresh.load_state_dict(loader.state_dict(rewind_batches=1))
    assert torch.equal(next(iter(fresh))["input_ids"], ref[3])


def test_state_mismatch_is_refused(syn_cfg):
    a = build_loader(syn_cfg, "train", 16, 4, seed=0, progress=False)
    b = build_loader(syn_cfg, "train", 16, 4, seed=1, progress=False)
    with pytest.raises(DataError, match="seed"):
        b.load_state_dict(a.state_dict())
    c = build_loader(syn_cfg, "train", 32, 4, seed=0, progress=False)
    with pytest.raises(DataError, match="seq_len"):
        c.load_state_dict(a.state_dict())


def test_eval_loader_finite_in_order_and_sharded(syn_cfg):
    v = build_loader(syn_cfg, "val", 16, 10, seed=0, train=False, progress=False)
    rows = _cat(v)
    assert len(v) == -(-(3000 // 16) // 10) and rows.shape == (3000 // 16, 16)
    stream = torch.from_numpy(np.fromfile(v.data_dir / "validation.bin", dtype=v.meta.dtype).astype(np.int64))
    assert torch.equal(rows.reshape(-1), stream[: rows.numel()])
    assert torch.equal(_cat(v), rows)  # a second pass repeats the first
    parts = [
        _cat(
            build_loader(syn_cfg, "validation", 16, 10, 0, rank=r, world_size=2, train=False, progress=False)
        )
        for r in range(2)
    ]
    assert torch.equal(parts[0], rows[0::2]) and torch.equal(parts[1], rows[1::2])
    # a pass stopped early does not shift the next pass (Lightning's limit_val_batches)
    it = iter(v)
    next(it), next(it)
    assert torch.equal(next(iter(v))["input_ids"], rows[:10])
    # resume mid-pass
    it = iter(v)
    next(it), next(it)
    w = build_loader(syn_cfg, "validation", 16, 10, seed=0, train=False, progress=False)
    w.load_state_dict(v.state_dict())
    assert torch.equal(_cat(w), rows[20:])


def test_add_bos_wraps_each_block(syn_cfg):
    loader = build_loader(syn_cfg, "test", 10, 5, seed=0, train=False, progress=False)
    syn_cfg.add_bos = True
    bos = build_loader(syn_cfg, "test", 10, 5, seed=0, train=False, progress=False)
    m = bos.meta
    x = next(iter(bos))["input_ids"]
    assert (x[:, 0] == m.bos_id).all() and (x[:, -1] == m.eos_id).all()
    stream = np.fromfile(loader.data_dir / "test.bin", dtype=m.dtype).astype(np.int64)
    assert x[:, 1:-1].reshape(-1).tolist() == stream[: 5 * 8].tolist()


def test_nowrap_rows_pad_and_mask(docs_dir):
    meta = load_meta(docs_dir)
    tokens = np.fromfile(docs_dir / "train.bin", dtype=meta.dtype).astype(np.int64)
    offsets = np.fromfile(docs_dir / "train.idx", dtype=np.int64)
    docs = [tokens[a:b].tolist() for a, b in zip(offsets[:-1], offsets[1:])]  # each ends in EOS
    assert all(d[-1] == meta.eos_id for d in docs) and len(docs) == 9
    L = 16
    for add_bos in (False, True):
        C = L - 2 if add_bos else L
        bodies = [d[:-1] if add_bos else d for d in docs]
        want = [b[i : i + C] for b in bodies if b for i in range(0, len(b), C)]
        ld = BlockLoader(docs_dir, "train", L, 3, train=False, wrap=False, add_bos=add_bos)
        batches = list(ld)
        ids = torch.cat([b["input_ids"] for b in batches]).numpy()
        mask = torch.cat([b["attention_mask"] for b in batches]).numpy()
        assert mask.dtype == bool and ids.shape == (len(want), L) == mask.shape
        assert (ids[~mask] == meta.pad_id).all()
        assert all(m[: m.sum()].all() for m in mask)  # valid positions are a prefix
        got = [row[m].tolist() for row, m in zip(ids, mask)]
        if add_bos:
            assert all(g[0] == meta.bos_id and g[-1] == meta.eos_id for g in got)
            got = [g[1:-1] for g in got]
        assert got == want


def test_prepare_is_idempotent_and_atomic(syn_cfg, tmp_path, monkeypatch):
    d = ensure_prepared(syn_cfg, progress=False)
    mtime = os.stat(d / "meta.json").st_mtime_ns
    assert ensure_prepared(syn_cfg, progress=False) == d
    assert os.stat(d / "meta.json").st_mtime_ns == mtime
    # an interrupted prepare leaves nothing that looks complete, nor temp dirs
    import mdm.data.synthetic_source as ss

    def boom(*a, **k):
        raise KeyboardInterrupt

    cfg2 = type(syn_cfg)(name="synthetic")
    cfg2.synthetic = type(syn_cfg.synthetic)(num_tokens=5000, eval_tokens=1000, seed=9)
    target = resolve_data_dir(cfg2)
    assert str(target).startswith(str(tmp_path / "cache"))
    monkeypatch.setattr(ss, "ShardWriter", boom)
    with pytest.raises(KeyboardInterrupt):
        ensure_prepared(cfg2, progress=False)
    assert not target.exists()
    assert not list(target.parent.glob(f".{target.name}.tmp-*"))
    # what it leaves is the resumable partial directory, never taken for a complete one
    assert (target.parent / f".{target.name}.partial").is_dir()
    monkeypatch.undo()
    monkeypatch.setenv("MDM_DATA_DIR", str(tmp_path / "cache"))
    assert (ensure_prepared(cfg2, progress=False) / "meta.json").is_file()
    # a dir prepared from another config is refused
    syn_cfg.synthetic.seed = 2
    with pytest.raises(DataError, match="different data config"):
        ensure_prepared(syn_cfg, progress=False)


def test_corrupt_shards_and_bad_splits(syn_cfg):
    d = ensure_prepared(syn_cfg, progress=False)
    with pytest.raises(DataError, match="split 'dev' does not exist"):
        BlockLoader(d, "dev", 16, 4)
    p = d / "test.bin"
    raw = p.read_bytes()
    p.write_bytes(raw[:-1])
    with pytest.raises(DataError, match="not a multiple of uint16"):
        BlockLoader(d, "test", 16, 4)
    p.write_bytes(raw[:-2])
    with pytest.raises(DataError, match="meta.json says"):
        BlockLoader(d, "test", 16, 4)
    p.write_bytes(bytes([raw[0] ^ 1]) + raw[1:])
    with pytest.raises(DataError, match="sha256"):
        BlockLoader(d, "test", 16, 4)
    with pytest.raises(DataError, match="does not fit"):
        dtype_for(70_000, "uint16")
    assert dtype_for(65_536) == "uint16" and dtype_for(65_537) == "uint32"
    with pytest.raises(DataError, match="not prepared"):
        load_meta(d.parent / "nothing")


def test_registry_names():
    assert {
        "books",
        "synthetic",
        "openwebtext",
        "wikitext103",
        "lm1b",
        "text8",
        "fineweb_edu",
        "files",
    } <= set(SOURCES)
