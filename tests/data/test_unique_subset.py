"""data.unique_tokens: the training split's first ceil(U / C) blocks, cycled in a fresh seeded order per
epoch, resumable mid-epoch; bad values refused naming the key; run names unchanged at the default."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from mdm.config import ConfigError, load
from mdm.data import BlockLoader, DataError, build_loader
from mdm.data.unique import subset_tokens

REPO = Path(__file__).resolve().parents[2]
DEBUG_YAML = REPO / "configs" / "debug.yaml"


def _loader(cfg, unique, seq_len=32, batch=5, seed=3, **kw):
    cfg.unique_tokens = unique
    return build_loader(cfg, "train", seq_len=seq_len, batch_size=batch, seed=seed, progress=False, **kw)


def _block_ids(loader: BlockLoader, batches: list[torch.Tensor]) -> list[int]:
    """Which block of the stream each row is (rows are compared against every block of the split)."""
    stream = np.fromfile(loader.data_dir / "train.bin", dtype=loader.meta.dtype).astype(np.int64)
    C = loader.content
    blocks = stream[: (len(stream) // C) * C].reshape(-1, C)
    out = []
    for b in batches:
        for row in b.numpy():
            hit = np.flatnonzero(np.all(blocks == row, axis=1))
            assert len(hit) >= 1
            out.append(int(hit[0]))
    return out


def _take(loader, n):
    it = iter(loader)
    return [next(it)["input_ids"] for _ in range(n)]


def test_subset_is_the_first_blocks_each_seen_once_per_epoch(syn_cfg):
    loader = _loader(syn_cfg, unique=1000, batch=4)  # ceil(1000 / 32) = 32 blocks, 8 batches an epoch
    assert loader.num_blocks == 32 and loader.blocks_per_epoch == 32
    ids = _block_ids(loader, _take(loader, 8 * 4))  # 4 epochs
    epochs = [ids[32 * e : 32 * (e + 1)] for e in range(4)]
    for e in epochs:
        assert sorted(e) == list(range(32))  # the first 32 blocks of the stream, each exactly once
    assert len({tuple(e) for e in epochs}) == 4  # a fresh order every epoch
    # the order is the documented one: default_rng([seed, epoch]).permutation(n_blocks)
    assert epochs[2] == list(np.random.default_rng([3, 2]).permutation(32))
    assert loader.epoch == 4


def test_resume_mid_third_epoch_is_bit_exact(syn_cfg):
    # 25 blocks an epoch, batches of 5 blocks... of 7: batches straddle epoch boundaries
    ref = _take(_loader(syn_cfg, unique=800, batch=7), 20)
    first = _loader(syn_cfg, unique=800, batch=7)
    head = _take(first, 9)  # 63 blocks: epoch 2 (the 3rd), 13 blocks in
    state = first.state_dict()
    assert state["position"] == 63 and first.epoch == 2
    again = _loader(syn_cfg, unique=800, batch=7)
    again.load_state_dict(json.loads(json.dumps(state)))  # a plain-JSON round trip, as in a checkpoint
    tail = _take(again, 11)
    assert all(torch.equal(a, b) for a, b in zip(head + tail, ref))
    # a state from the whole split (or another U) is refused: the block count differs
    whole = _loader(syn_cfg, unique=0, batch=7)
    with pytest.raises(DataError, match="num_blocks"):
        whole.load_state_dict(state)


def test_evaluation_and_default_are_unrestricted(syn_cfg):
    syn_cfg.unique_tokens = 1000
    val = build_loader(syn_cfg, "validation", 32, 8, seed=0, train=False, progress=False)
    assert val.num_blocks == 3000 // 32
    assert _loader(syn_cfg, unique=0).num_blocks == 12_000 // 32
    assert _loader(syn_cfg, unique=12_000 // 32 * 32).num_blocks == 12_000 // 32  # all of it is allowed


def test_nowrap_subset_is_the_first_rows(docs_dir):
    full = BlockLoader(docs_dir, "train", seq_len=8, batch_size=2, wrap=False)
    sub = BlockLoader(docs_dir, "train", seq_len=8, batch_size=2, wrap=False, unique_tokens=20)
    assert sub.num_blocks == 3  # ceil(20 / 8) rows
    got = sorted(map(tuple, torch.cat(_take(sub, 3))[:3].tolist()))
    want = sorted(map(tuple, full._rows(np.arange(3))["input_ids"].tolist()))
    assert got == want


@pytest.mark.parametrize(
    ("unique", "match"),
    [
        (
            12_001,
            r"data\.unique_tokens=12001 is larger than the training split .* 12,000 tokens = 375 whole blocks",
        ),
        (31, r"data\.unique_tokens=31 is less than one block of 32 tokens"),
        (-5, r"data\.unique_tokens=-5 must be >= 0"),
    ],
)
def test_bad_values_refused_in_one_line(syn_cfg, unique, match):
    with pytest.raises(DataError, match=match) as e:
        _loader(syn_cfg, unique=unique)
    assert "\n" not in str(e.value)


def test_config_refuses_negative_and_mixture():
    with pytest.raises(ConfigError, match=r"data\.unique_tokens must be >= 0"):
        load([DEBUG_YAML], ["data.unique_tokens=-1"])
    with pytest.raises(ConfigError, match=r"data\.unique_tokens is not supported with data\.mixture"):
        load([DEBUG_YAML], ["data.unique_tokens=64", "data.mixture=[{name: synthetic}]"])


def test_subset_tokens_counts_rows_times_seq_len():
    assert subset_tokens(0, 64) == 0
    assert subset_tokens(1000, 64) == 16 * 64
    assert subset_tokens(1024, 64) == 16 * 64
    assert subset_tokens(1000, 64, add_bos=True) == 17 * 64  # 62 content tokens a row


def test_run_name_hash_leaves_out_the_default(monkeypatch):
    """A default of 0 does not enter the hashed config (existing runs keep their names); U > 0 does."""
    import mdm.rundir as rundir

    hashed = []
    real = rundir.json.dumps
    monkeypatch.setattr(rundir.json, "dumps", lambda d, **kw: hashed.append(d) or real(d, **kw))
    base = rundir.run_name(load([DEBUG_YAML]))
    assert "unique_tokens" not in hashed[-1]["data"]
    assert rundir.run_name(load([DEBUG_YAML], ["data.unique_tokens=0"])) == base
    other = rundir.run_name(load([DEBUG_YAML], ["data.unique_tokens=4096"]))
    assert hashed[-1]["data"]["unique_tokens"] == 4096 and other != base


def test_training_resume_mid_third_epoch_reproduces_the_losses(tmp_path):
    """A run resumed from its step-8 checkpoint (64 blocks of a 25-block subset: the 3rd epoch, 14 blocks
    in) logs the same loss at every later step as the uninterrupted run."""
    from mdm.rundir import RunDir
    from mdm.train import train

    over = [
        f"train.runs_dir={tmp_path / 'runs'}",
        "train.max_steps=12",
        "train.ckpt_every=4",
        "train.val_every=100",
        "data.unique_tokens=800",  # ceil(800 / 32) = 25 blocks; 8 sequences a step
    ]
    cfg = load([DEBUG_YAML], over)
    train(cfg)
    run = RunDir.for_config(cfg)
    ref = {r["step"]: r["loss"] for r in run.read_metrics() if "loss" in r}
    # roll the run back to its step-8 checkpoint and re-run the same command
    shutil.copy(run.checkpoints / "step-0000008.ckpt", run.last_ckpt)
    run.summary.unlink()
    train(cfg)
    got = {r["step"]: r["loss"] for r in run.read_metrics() if "loss" in r}
    assert sorted(got) == list(range(1, 13)) and got == ref
