"""Scale-out on CPU: activation checkpointing, compiled steps, gloo ranks with keyed noise, resume across
world sizes, FSDP.

The slow tests train with ``mdm train`` in subprocesses (2 gloo ranks on the 2 cores): the diffusion
objective itself, since a rank draws exactly its rows of the global batch's noise (mdm/diffusion/noise.py),
so 2 ranks train like 1 process step by step; a checkpoint of 2 ranks resumes on 1 (and 1 on 2) with the
per-step losses of an uninterrupted run, the data position re-sharded (mdm/data/reshard.py).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mdm.config import load
from mdm.models.backbone import Transformer, set_activation_checkpointing
from mdm.rundir import RunDir

REPO = Path(__file__).resolve().parents[1]
DEBUG_YAML = REPO / "configs" / "debug.yaml"
DATA = ["data.synthetic.num_tokens=20480", "data.synthetic.eval_tokens=4000"]


@pytest.fixture(autouse=True)
def _env(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("MDM_DATA_DIR", str(tmp_path_factory.getbasetemp() / "scale-out-data"))
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ---- activation checkpointing ------------------------------------------------------------------------
@pytest.mark.parametrize("cond,dropout", [(False, 0.0), (True, 0.0), (True, 0.1)])
def test_activation_checkpointing_gives_equal_gradients(cond, dropout):
    cfg = load([DEBUG_YAML], [f"model.dropout={dropout}"]).model
    torch.manual_seed(0)
    net = Transformer(cfg, 40, time_conditioning=cond)
    with torch.no_grad():  # off the zero-initialised adaLN, so every path carries gradient
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    x = torch.randint(0, 40, (3, 32))
    sigma = torch.rand(3) if cond else None
    key_mask = torch.ones(3, 32, dtype=torch.bool)
    key_mask[1, 20:] = False

    def grads():
        net.zero_grad()
        torch.manual_seed(5)  # the dropout masks
        out = net(x, sigma, key_mask=key_mask)
        (out.float().pow(2).mean()).backward()
        return out.detach(), [p.grad.clone() for p in net.parameters()]

    out0, g0 = grads()
    assert set_activation_checkpointing(net) == 1 and net.activation_checkpointing
    out1, g1 = grads()
    assert torch.equal(out0, out1)
    for a, b in zip(g0, g1):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-9)
    if dropout:  # the equality is not vacuous: another seed draws other dropout masks
        torch.manual_seed(6)
        assert not torch.equal(net(x, sigma, key_mask=key_mask).detach(), out0)


def test_activation_checkpointing_reaches_wrapped_backbones():
    from mdm.loading import build_objective
    from mdm.vocab import Vocab

    cfg = load([DEBUG_YAML], ["objective.name=ccdd", "objective.ccdd.continuous=false"])
    vocab = Vocab(size=64, mask_id=17, eos_id=16, bos_id=16, pad_id=16)
    model = build_objective(cfg, vocab).build_model(cfg, vocab)
    assert set_activation_checkpointing(model) >= 1


# ---- mdm train in subprocesses ---------------------------------------------------------------------
STEPS = 10
COMMON = [
    *DATA,
    f"train.max_steps={STEPS}",
    "train.ckpt_every=5",
    "train.val_every=1000",
    "train.val_batches=1",
    "train.accelerator=cpu",
    "train.threads=1",
]
LAYOUTS = {
    "1": [],
    "ddp2": ["train.devices=2", "train.strategy=ddp"],
    "fsdp2": ["train.devices=2", "train.strategy=fsdp"],
    "fsdp2_ac": ["train.devices=2", "train.strategy=fsdp", "train.activation_checkpointing=true"],
}


def _train(runs: Path, *extra: str, data: Path) -> RunDir:
    over = [*COMMON, f"train.runs_dir={runs}", *extra]
    run = RunDir.for_config(load([DEBUG_YAML], over))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "MDM_DATA_DIR": str(data)}
    proc = subprocess.run(
        [sys.executable, "-m", "mdm", "train", str(DEBUG_YAML), *over],
        capture_output=True, text=True, env=env, timeout=600, cwd=REPO,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return run


def _losses(run: RunDir) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in run.read_metrics() if "loss" in r}


def _resume_copy(src: RunDir, runs: Path, step: int) -> RunDir:
    """A copy of ``src`` as it was at its step-``step`` checkpoint (as if stopped there)."""
    dst = RunDir(runs / src.name)
    dst.checkpoints.mkdir(parents=True)
    shutil.copy(src.checkpoints / f"step-{step:07d}.ckpt", dst.last_ckpt)
    shutil.copy(src.config, dst.config)
    shutil.copy(src.metrics, dst.metrics)  # rows past the checkpoint are dropped on resume
    return dst


@pytest.fixture(scope="module")
def reference_runs(tmp_path_factory):
    """MDLM (EMA on) for 10 steps on 1 process, 2 DDP gloo ranks and 2 FSDP ranks (same global batch of
    8), checkpoints at 5: {layout: (root, run)}."""
    root = tmp_path_factory.mktemp("scale-out")
    return root, {k: _train(root / k, *v, data=root / "data") for k, v in LAYOUTS.items()}


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["ddp2", "fsdp2", "fsdp2_ac"])
def test_two_gloo_ranks_train_mdlm_like_one_process(reference_runs, layout):
    """Per-step diffusion losses equal (same masks, times and data): the noise is per global sequence.
    fsdp2: FSDP2 through Lightning's ModelParallelStrategy, on CPU gloo, parameters sharded per block;
    fsdp2_ac: with activation checkpointing inside the sharded blocks."""
    _, runs = reference_runs
    assert runs[layout].read_summary()["derived"]["world_size"] == 2
    l1, l2 = _losses(runs["1"]), _losses(runs[layout])
    assert sorted(l1) == sorted(l2) == list(range(1, STEPS + 1))
    assert [l2[k] for k in sorted(l2)] == pytest.approx([l1[k] for k in sorted(l1)], rel=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("src,dst", [("ddp2", "1"), ("1", "ddp2"), ("fsdp2", "1"), ("1", "fsdp2")])
def test_resume_across_world_sizes_and_strategies(reference_runs, src, dst):
    """A run checkpointed at step 5 on 2 ranks (DDP or FSDP) resumes on 1 process, and 1 on 2, with the
    same global batch: steps 6-10 have the losses of the uninterrupted run (model, optimizer, EMA and
    data position carried over and re-sharded; the noise is keyed, not saved)."""
    root, runs = reference_runs
    copy = _resume_copy(runs[src], root / f"resume-{src}-to-{dst}", 5)
    got = _losses(_train(copy.path.parent, *LAYOUTS[dst], data=root / "data"))
    want = _losses(runs[src])
    assert sorted(got) == list(range(1, STEPS + 1))
    late = range(6, STEPS + 1)
    assert [got[k] for k in late] == pytest.approx([want[k] for k in late], rel=1e-5)
    summary = copy.read_summary()
    assert summary["derived"]["world_size"] == (1 if dst == "1" else 2)
    # the final weights and EMA weights are the uninterrupted run's (full tensors in every checkpoint)
    a, b = (torch.load(r.last_ckpt, weights_only=True) for r in (copy, runs[src]))
    assert a["global_step"] == b["global_step"] == STEPS
    for k, v in b["state_dict"].items():
        torch.testing.assert_close(a["state_dict"][k], v, rtol=1e-4, atol=1e-6)
    assert set(a["mdm"]["ema"]) == set(b["mdm"]["ema"])
    for k, v in b["mdm"]["ema"].items():
        torch.testing.assert_close(a["mdm"]["ema"][k], v, rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_compiled_steps_equal_eager(tmp_path):
    """train.compile=true (inductor on CPU): 20 per-step losses equal eager's to 1e-4 relative."""
    from mdm.train import train

    common = [*DATA, "train.max_steps=20", "train.val_every=1000", "train.val_batches=1", "train.threads=1"]
    eager = load([DEBUG_YAML], [*common, f"train.runs_dir={tmp_path / 'eager'}"])
    comp = load([DEBUG_YAML], [*common, f"train.runs_dir={tmp_path / 'compiled'}", "train.compile=true"])
    train(eager), train(comp)
    le, lc = _losses(RunDir.for_config(eager)), _losses(RunDir.for_config(comp))
    assert sorted(le) == sorted(lc) == list(range(1, 21))
    assert [lc[k] for k in sorted(lc)] == pytest.approx([le[k] for k in sorted(le)], rel=1e-4)


def test_bench_compile_flag_parses():
    import argparse

    from mdm.commands import bench as bench_cmd

    p = argparse.ArgumentParser()
    bench_cmd._train_args(p)  # train's flags (mdm bench train --compile re-parses them)
    assert p.parse_args(["--compile"]).compile and not p.parse_args([]).compile


@pytest.mark.slow
def test_bench_compile_rows(tmp_path):
    from mdm.bench import Shape, run_train_bench

    lines: list[str] = []
    r = run_train_bench(
        widths=(32,), steps=1, rounds=2, threads=(1,), shape=Shape(width=32, depth=1, head_dim=16, seq_len=16,
        batch=4, vocab=16), full=False, minimal=False, layout=False, precision_widths=(), compile=True,
        work_dir=str(tmp_path), log=lines.append,
    )  # fmt: skip
    (row,) = r["compile"]
    assert row["width"] == 32 and row["eager_tokens_per_s"] > 0 and row["compiled_tokens_per_s"] > 0
    assert row["compiled_over_eager"] > 0 and row["compile_s"] > 0
    assert any("compiled/eager" in line for line in lines)


def test_sbatch_for_n_nodes_by_m_gpus(tmp_path):
    """N = 2 nodes x M = 4 GPUs: train.num_nodes=2, train.devices=4 (ranks per node), gpus_per_node=4."""
    import yaml

    from mdm.sweep.plan import build_plan
    from mdm.sweep.slurm import render
    from mdm.sweep.spec import SweepError, load_spec

    def spec(devices, gpus):
        path = tmp_path / f"s{devices}{gpus}.yaml"
        over = [*DATA, f"train.devices={devices}", "train.num_nodes=2", "train.strategy=ddp"]
        path.write_text(
            yaml.safe_dump(
                {
                    "name": "nxm",
                    "out_dir": str(tmp_path / "sweep"),
                    "base": {"files": [str(DEBUG_YAML)], "overrides": over},
                    "axes": {"train.seed": [0, 1]},
                    "slurm": {
                        "partition": "gpu",
                        "time": "08:00:00",
                        "gpus_per_node": gpus,
                        "cpus_per_task": 8,
                    },
                }
            )
        )
        return build_plan(load_spec(path))

    plan = spec(4, 4)
    text = render(plan, plan.runs, tmp_path / "tasks.txt")
    for line in ["#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=4", "#SBATCH --gpus-per-node=4"]:
        assert line in text, line
    assert "srun --kill-on-bad-exit=1" in text  # Lightning reads its 8 ranks from srun's environment
    bad = spec(4, 2)
    with pytest.raises(SweepError, match="gpus_per_node=2 < train.devices=4"):
        render(bad, bad.runs, tmp_path / "tasks.txt")


def test_plain_optimizer_state_is_rekeyed_by_parameter_name_group_by_group():
    """A ddp / one-process checkpoint numbers parameters in the order of the optimizer's (decay, no-decay)
    groups; fsdp reads it by name (mdm/fsdp.py), which must follow the groups, not module.parameters()."""
    from mdm.config import OptimConfig
    from mdm.fsdp import optimizer_state_by_name
    from mdm.optim import build_optimizer

    cfg = load([DEBUG_YAML], []).model
    net = Transformer(cfg, 40, time_conditioning=True)
    opt = build_optimizer(net, OptimConfig(), fused=False)
    net(torch.randint(0, 40, (2, 8)), torch.rand(2)).float().pow(2).mean().backward()
    opt.step()
    order = [p for g in opt.param_groups for p in g["params"]]
    assert [id(p) for p in order] != [id(p) for p in net.parameters()]  # the case that needs the groups
    by_name = optimizer_state_by_name(opt.state_dict(), opt, net)
    names = {id(p): n for n, p in net.named_parameters()}
    for p in order:
        assert torch.equal(by_name["state"][names[id(p)]]["exp_avg"], opt.state[p]["exp_avg"])
    assert [g["params"] for g in by_name["param_groups"]] == [
        [names[id(p)] for p in g["params"]] for g in opt.param_groups
    ]
