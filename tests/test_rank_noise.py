"""Training noise keyed by (seed, step, global sequence index) (mdm/diffusion/noise.py), and the data
position re-sharded across world sizes (mdm/data/reshard.py).

Fast tests check the maths in one process: a rank's rows of a step draw exactly the noise (times, masks,
orders, jumps, negatives, Gaussian noise) one process draws for those rows, for every objective; ranks
and steps draw different noise; no process RNG state enters; the loader's re-sharded position continues
the global stream. The multi-process ones (slow; tests/test_scale_out.py) train with gloo ranks.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from mdm.config import load
from mdm.data.meta import DataError
from mdm.data.reshard import reshard_state
from mdm.diffusion import build_objective
from mdm.diffusion.noise import KeyedNoise, global_indices, key_seed, rand, randint, randn
from mdm.module import training_noise
from mdm.rundir import RunDir, run_name
from mdm.vocab import Vocab

REPO = Path(__file__).resolve().parents[1]
DEBUG_YAML = REPO / "configs" / "debug.yaml"
NCE_YAML = REPO / "configs" / "edlm_nce.yaml"
DATA = ["data.synthetic.num_tokens=20000", "data.synthetic.eval_tokens=4000"]
VOCAB = Vocab(size=64, mask_id=17, eos_id=16, bos_id=16, pad_id=16)  # the synthetic source's layout
B, L = 4, 32

OBJECTIVES = {
    "mdlm": [],
    "mdlm_iid_times": ["objective.antithetic=false"],
    "radd_t_dce": ["objective.name=radd", "objective.loss=t_dce"],
    "radd_lambda_dce": ["objective.name=radd", "objective.loss=lambda_dce"],
    "radd_any_order": ["objective.name=radd", "objective.loss=any_order"],
    "sedd_absorb": ["objective.name=sedd", "objective.graph=absorb"],
    "sedd_uniform": ["objective.name=sedd", "objective.graph=uniform"],
    "ccdd": ["objective.name=ccdd", "objective.ccdd.d_cont=8", "objective.ccdd.time_link=independent"],
    "edlm_nce": ["objective.edlm.nce_negatives_per_positive=2"],
}


@pytest.fixture(autouse=True)
def _env(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("MDM_DATA_DIR", str(tmp_path_factory.getbasetemp() / "rank-noise-data"))
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _fake_run(path: Path) -> Path:
    """A randomly initialised MDLM checkpoint in `mdm train`'s format (a base / encoder run)."""
    import dataclasses

    from mdm.config import to_dict

    if (path / "checkpoints" / "last.ckpt").exists():
        return path
    cfg = load([DEBUG_YAML], DATA)
    torch.manual_seed(0)
    model = build_objective(cfg, VOCAB).build_model(cfg, VOCAB)
    ck = {
        "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
        "global_step": 0,
        "mdm": {"config": to_dict(cfg), "vocab": dataclasses.asdict(VOCAB), "ema": None},
    }
    (path / "checkpoints").mkdir(parents=True, exist_ok=True)
    torch.save(ck, path / "checkpoints" / "last.ckpt")
    return path


def _objective(case: str, tmp_path: Path):
    files, over = [DEBUG_YAML], [*DATA, *OBJECTIVES[case]]
    if case == "ccdd":
        over.append(f"objective.ccdd.encoder_run={_fake_run(tmp_path / 'base')}")
        over.append("objective.ccdd.stats_batches=2")  # computed beside the (fake) encoder run
    if case == "edlm_nce":
        files.append(NCE_YAML)
        over.append(f"objective.edlm.base_run={_fake_run(tmp_path / 'base')}")
    cfg = load(files, over)
    import mdm.loading

    # the build step that hands objectives built on runs their run loader (plain build where none)
    obj = getattr(mdm.loading, "build_objective", build_objective)(cfg, VOCAB)
    torch.manual_seed(1)
    model = obj.build_model(cfg, VOCAB)
    with torch.no_grad():  # off the zero-initialised heads (EDLM's energy is constant there)
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return cfg, obj, model


def _batch(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"input_ids": torch.randint(0, VOCAB.mask_id - 1, (B, L), generator=g)}


def _rows(batch, rows) -> dict[str, torch.Tensor]:
    return {k: v[rows] for k, v in batch.items()}


@pytest.mark.parametrize("case", list(OBJECTIVES))
def test_a_ranks_rows_draw_one_process_noise(case, tmp_path):
    """2 ranks (rows r::2) and 2 micro-batches draw exactly the noise of one process: equal per-sequence
    losses and training-loss sums, whatever the process RNG holds."""
    cfg, obj, model = _objective(case, tmp_path)
    batch, seed, step = _batch(), 3, 7
    # the noise must be identical (torch.equal); the losses only to float32 tolerance: the same rows in a
    # batch of B or B/2 go through differently blocked kernels (SEDD-uniform differed by 1.75e-5 relative
    # on an AMD EPYC, 2026-12)
    tol = dict(rtol=1e-4, atol=1e-6)
    with torch.no_grad():
        t, noise = training_noise(obj, seed, step, B, 0, 1, "cpu")
        full = obj.sequence_loss(model, batch, t, noise)  # (B,)
        full_sum = obj.loss(model, batch, *training_noise(obj, seed, step, B, 0, 1, "cpu")).sum
        ranks_sum = 0.0
        for rank in (0, 1):
            torch.manual_seed(100 + rank)  # the process RNG differs per rank: it must not matter
            t_r, noise_r = training_noise(obj, seed, step, B // 2, rank, 2, "cpu")
            assert torch.equal(t_r, t[rank::2])
            sub = _rows(batch, slice(rank, None, 2))
            got = obj.sequence_loss(model, sub, t_r, noise_r)
            torch.testing.assert_close(got, full[rank::2], **tol)
            ranks_sum += obj.loss(model, sub, *training_noise(obj, seed, step, B // 2, rank, 2, "cpu")).sum
        torch.testing.assert_close(ranks_sum, full_sum, **tol)
        t, noise = training_noise(obj, seed, step, B, 0, 1, "cpu")
        micro = [
            obj.sequence_loss(model, _rows(batch, s), t[s], noise[s]) for s in (slice(0, 1), slice(1, B))
        ]
        torch.testing.assert_close(torch.cat(micro), full, **tol)
        # and the noise is not trivial: another step gives other losses
        other = obj.sequence_loss(model, batch, *training_noise(obj, seed, step + 1, B, 0, 1, "cpu"))
        assert not torch.allclose(other, full)


def test_a_masks_of_two_ranks_are_one_process_masks(tmp_path):
    _, obj, _ = _objective("mdlm", tmp_path)
    x = _batch()["input_ids"]
    t, noise = training_noise(obj, 0, 5, B, 0, 1, "cpu")
    _, masked = obj.mask_tokens(x, t, generator=noise)
    for rank in (0, 1):
        t_r, noise_r = training_noise(obj, 0, 5, B // 2, rank, 2, "cpu")
        _, m_r = obj.mask_tokens(x[rank::2], t_r, generator=noise_r)
        assert torch.equal(m_r, masked[rank::2])


def test_global_indices_follow_the_loaders_sharding():
    assert global_indices(3, 0, 1) == [0, 1, 2]
    assert global_indices(3, 1, 2) == [1, 3, 5]
    assert global_indices(2, 2, 4) == [2, 6]


def test_b_ranks_and_steps_draw_different_noise():
    """Same data on two ranks (or two steps): different masks. (The old code seeded every rank alike.)"""
    a = rand((1, 4096), KeyedNoise(0, 0, global_indices(1, 0, 2)))
    b = rand((1, 4096), KeyedNoise(0, 0, global_indices(1, 1, 2)))
    c = rand((1, 4096), KeyedNoise(0, 1, global_indices(1, 0, 2)))
    d = rand((1, 4096), KeyedNoise(1, 0, global_indices(1, 0, 2)))
    for other in (b, c, d):
        assert (a - other).abs().max() > 0.5
    assert len({key_seed("mdm-seq", 0, s, i) for s in range(50) for i in range(50)}) == 2500


def test_keyed_draws_are_each_rows_own_stream():
    noise = KeyedNoise(4, 2, [10, 11, 12])
    x = rand((3, 5), noise)
    y = randn((3, 2, 2), noise)  # the next draw of each row continues its stream
    z = randint(0, 7, (3, 6), noise)
    for i, idx in enumerate([10, 11, 12]):
        g = torch.Generator().manual_seed(key_seed("mdm-seq", 4, 2, idx))
        assert torch.equal(x[i], torch.rand(5, generator=g))
        assert torch.equal(y[i], torch.randn(2, 2, generator=g))
        assert torch.equal(z[i], torch.randint(0, 7, (6,), generator=g))
    with pytest.raises(ValueError, match="needs 3 rows"):
        rand((2, 5), noise)
    g = torch.Generator().manual_seed(0)  # a plain generator (samplers, validation): torch's own draw
    assert torch.equal(rand((2, 3), g), torch.rand((2, 3), generator=torch.Generator().manual_seed(0)))


def test_c_resume_needs_no_saved_rng_state(tmp_path):
    """Resume from a checkpoint whose saved RNG state is replaced by unrelated states: every later step's
    loss equals the uninterrupted run's, bit for bit."""
    from mdm.module import _rng_state
    from mdm.train import train

    common = [*DATA, "train.max_steps=8", "train.ckpt_every=4", "train.val_every=1000", "train.val_batches=1"]
    ref_cfg = load([DEBUG_YAML], [f"train.runs_dir={tmp_path / 'ref'}", *common])
    train(ref_cfg)
    ref = RunDir.for_config(ref_cfg)
    cfg = load([DEBUG_YAML], [f"train.runs_dir={tmp_path / 'res'}", *common])
    run = RunDir.for_config(cfg)
    run.checkpoints.mkdir(parents=True)
    ck = torch.load(ref.checkpoints / "step-0000004.ckpt", weights_only=True)
    assert ck["global_step"] == 4
    torch.manual_seed(987), random.seed(987), np.random.seed(987)
    ck["mdm"]["rng"] = _rng_state()
    torch.save(ck, run.last_ckpt)
    shutil.copy(ref.metrics, run.metrics)
    train(cfg)
    want = {r["step"]: r["loss"] for r in ref.read_metrics() if "loss" in r}
    got = {r["step"]: r["loss"] for r in run.read_metrics() if "loss" in r}
    assert sorted(got) == list(range(1, 9)) and got == want


# ---- the data position across world sizes -----------------------------------------------------------
def _loader(tmp_path, rank, world, batch):
    from mdm.data.datamodule import build_loader

    cfg = load([DEBUG_YAML], ["data.synthetic.num_tokens=20480", "data.synthetic.eval_tokens=4000"])
    return build_loader(cfg.data, "train", 32, batch, 0, rank, world, train=True, progress=False)


def _global_ids(loaders, steps: int) -> list[int]:
    """Block ids of the next ``steps`` global batches (rank r's row j is global row j * W + r)."""
    W = len(loaders)
    out = []
    for _ in range(steps):
        per = [ld._indices(ld._position, ld.batch_size) for ld in loaders]
        for ld in loaders:
            ld._position += ld.batch_size
        out += [int(per[r][j]) for j in range(loaders[0].batch_size) for r in range(W)]
    return out


@pytest.mark.parametrize("old,new", [(2, 1), (1, 2), (2, 4), (4, 2)])
def test_d_data_position_reshards_exactly(tmp_path, old, new):
    """Checkpoint on `old` ranks, resume on `new` at the same global batch: the global stream continues
    with no block repeated or skipped, across an epoch boundary, as an uninterrupted run on `new` ranks."""
    G = 8
    probe = _loader(tmp_path, 0, 1, G)
    n = probe.num_blocks
    assert n % 4 == 0, n  # 20480 tokens / 32: divisible by every world size here
    steps_per_epoch = n // G
    before = steps_per_epoch + 3  # past the first epoch boundary
    a = [_loader(tmp_path, r, old, G // old) for r in range(old)]
    seen = _global_ids(a, before)
    state = a[0].state_dict()
    b = [_loader(tmp_path, r, new, G // new) for r in range(new)]
    for r, ld in enumerate(b):
        ld.load_state_dict(reshard_state(state, r, new))
    after = _global_ids(b, 5)
    uninterrupted = _global_ids([_loader(tmp_path, r, new, G // new) for r in range(new)], before + 5)
    assert seen + after == uninterrupted
    epoch1 = (seen + after)[n:]
    assert len(set(epoch1)) == len(epoch1)  # within an epoch no block twice
    assert set((seen + after)[:n]) == set(range(n))  # the first epoch: every block once


def test_reshard_same_world_sets_the_rank_and_refuses_partial_batches(tmp_path):
    ld = _loader(tmp_path, 0, 2, 3)
    ld._position = 3
    state = ld.state_dict()
    assert reshard_state(state, 1, 2) == {**state, "rank": 1}
    assert reshard_state(None, 0, 1) is None
    with pytest.raises(DataError, match="not a whole number of batches on 4 ranks"):
        reshard_state(state, 0, 4)  # 6 blocks of the epoch consumed: not a multiple of 4


def test_run_name_does_not_depend_on_how_the_run_is_spread():
    base = load([DEBUG_YAML], [])
    spread = load([DEBUG_YAML], ["train.devices=2", "train.num_nodes=2", "train.strategy=ddp"])
    assert run_name(spread) == run_name(base)
    assert run_name(load([DEBUG_YAML], ["train.activation_checkpointing=true"])) == run_name(base)
    assert run_name(load([DEBUG_YAML], ["train.global_batch=16"])) != run_name(base)
