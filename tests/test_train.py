"""End-to-end training on the tiny debug config: run dir contract, bit-exact resume, bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mdm.config import load
from mdm.rundir import RunDir
from mdm.train import CheckpointError, train

REPO = Path(__file__).resolve().parents[1]
DEBUG_YAML = REPO / "configs" / "debug.yaml"


def _cfg(tmp_path, *extra):
    return load([DEBUG_YAML], [f"train.runs_dir={tmp_path / 'runs'}", *extra])


def _losses(run: RunDir) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in run.read_metrics() if "loss" in r}


def test_run_dir_contract(tmp_path):
    cfg = _cfg(tmp_path, "train.max_steps=6", "train.ckpt_every=3", "train.val_every=3")
    s = train(cfg)
    run = RunDir.for_config(cfg)
    assert run.config.exists() and run.last_ckpt.exists() and (run.checkpoints / "step-0000003.ckpt").exists()
    for key in (
        "status",
        "objective",
        "params_total",
        "params_non_embedding",
        "flops_per_token",
        "tokens",
        "flops",
        "val_loss",
        "val_ppl_bound",
        "wall_s",
        "git_sha",
    ):
        assert key in s, key
    assert s["status"] == "completed" and s["tokens"] == 6 * 8 * 32
    assert s["flops"] == pytest.approx(s["tokens"] * s["flops_per_token"])
    rows = run.read_metrics()
    assert [r["step"] for r in rows if "loss" in r] == [1, 2, 3, 4, 5, 6]
    assert [r["step"] for r in rows if "val_loss" in r] == [3, 6]
    assert {"step", "tokens", "loss", "lr", "tokens_per_s"} <= set(rows[0])
    assert json.loads(run.summary.read_text()) == s
    # a completed run is skipped, not retrained
    before = run.metrics.read_text()
    assert train(cfg)["status"] == "completed" and run.metrics.read_text() == before
    # checkpoints load without executing pickles
    ck = torch.load(run.last_ckpt, weights_only=True)
    assert ck["global_step"] == 6


def test_ar_trains_and_counts_causal_tokens(tmp_path):
    s = train(_cfg(tmp_path, "objective.name=ar", "train.max_steps=4"))
    assert s["status"] == "completed" and s["objective"] == "ar" and s["val_loss"] < 4.0


def _train_cmd(tmp_path, *extra):
    return [
        sys.executable,
        "-m",
        "mdm",
        "train",
        str(DEBUG_YAML),
        f"train.runs_dir={tmp_path / 'runs'}",
        *extra,
    ]


def test_sigkill_resume_is_bit_exact(tmp_path):
    """Kill a run with SIGKILL after a checkpoint, re-run the same command, compare every step's loss."""
    common = ["train.max_steps=14", "train.ckpt_every=4", "train.val_every=5", "optim.ema=0.99"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ref_dir = tmp_path / "ref"
    subprocess.run(_train_cmd(ref_dir, *common), check=True, env=env, cwd=REPO, capture_output=True)
    ref = RunDir.for_config(load([DEBUG_YAML], [f"train.runs_dir={ref_dir / 'runs'}", *common]))

    cfg = load([DEBUG_YAML], [f"train.runs_dir={tmp_path / 'runs'}", *common])
    run = RunDir.for_config(cfg)
    # The run kills itself with SIGKILL right after writing step 10's row (past the step-8 checkpoint,
    # before the end): a deterministic point, where polling the metrics file from here raced a fast
    # machine that ran steps 10-14 between two polls.
    killer = (
        "import os, signal, sys\n"
        "from mdm import train as T\n"
        "write = T.RunCallback._write\n"
        "def _write(self, trainer, row):\n"
        "    write(self, trainer, row)\n"
        "    if row.get('step') == 10 and 'loss' in row:\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "T.RunCallback._write = _write\n"
        "from mdm.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    cmd = _train_cmd(tmp_path, *common)
    proc = subprocess.run(
        [sys.executable, "-c", killer, *cmd[3:]], env=env, cwd=REPO, capture_output=True, timeout=300
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    assert not run.summary.exists(), "a killed run must not look complete"
    assert max(_losses(run)) == 10
    subprocess.run(_train_cmd(tmp_path, *common), check=True, env=env, cwd=REPO, capture_output=True)
    got, want = _losses(run), _losses(ref)
    assert sorted(got) == list(range(1, 15)), "rows lost or duplicated"
    assert got == want  # bit for bit
    steps = [r["step"] for r in run.read_metrics()]
    assert len(steps) == len(set((r["step"], "val_loss" in r) for r in run.read_metrics()))
    s, r = json.loads(run.summary.read_text()), json.loads(ref.summary.read_text())
    assert s["val_loss"] == r["val_loss"]


def test_missing_data_is_a_clear_error(tmp_path):
    cfg = _cfg(
        tmp_path, f"data.dir={tmp_path / 'nowhere'}", "data.name=files", f"data.path={tmp_path / 'none*.txt'}"
    )
    with pytest.raises(Exception, match="none"):
        train(cfg)
    assert not RunDir.for_config(cfg).is_complete()


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    cfg = _cfg(tmp_path, "train.max_steps=3", "train.ckpt_every=3")
    train(cfg)
    run = RunDir.for_config(cfg)
    run.summary.unlink()
    data = run.last_ckpt.read_bytes()
    run.last_ckpt.write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(CheckpointError, match="last.ckpt"):
        train(cfg)
    assert not run.summary.exists()


def test_nan_loss_stops_naming_the_step_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    from mdm.diffusion.mdlm import MDLM

    cfg = _cfg(tmp_path, "train.max_steps=8", "train.ckpt_every=2")
    orig = MDLM.sequence_loss
    calls = {"n": 0}

    def poisoned(self, model, batch, t, generator=None):
        out = orig(self, model, batch, t, generator)
        if model.training:
            calls["n"] += 1
            if calls["n"] == 5:
                return out * float("nan")
        return out

    monkeypatch.setattr(MDLM, "sequence_loss", poisoned)
    with pytest.raises(FloatingPointError, match="step 5"):
        train(cfg)
    run = RunDir.for_config(cfg)
    s = run.read_summary()
    assert s["status"] == "failed" and "step 5" in s["error"]
    assert torch.load(run.last_ckpt, weights_only=True)["global_step"] == 4


def test_token_ids_out_of_range_are_refused():
    from mdm.module import check_batch
    from mdm.vocab import Vocab

    v = Vocab(size=64, mask_id=17)
    check_batch(torch.tensor([[0, 16]]), v, 8)
    with pytest.raises(ValueError, match=r"token id out of range.*\[0, 17\)"):
        check_batch(torch.tensor([[0, 17]]), v, 8)
    with pytest.raises(ValueError, match="model.seq_len=8"):
        check_batch(torch.zeros(1, 9, dtype=torch.long), v, 8)


def test_gradient_accumulation_matches_the_big_batch(tmp_path):
    """Micro-batches of 2 accumulate to the same step as one batch of 8 (sums over a global count)."""
    a = train(_cfg(tmp_path / "a", "train.max_steps=4", "train.micro_batch=8"))
    b = train(_cfg(tmp_path / "b", "train.max_steps=4", "train.micro_batch=2"))
    la = _losses(RunDir(Path(tmp_path / "a" / "runs" / a["run_name"])))
    lb = _losses(RunDir(Path(tmp_path / "b" / "runs" / b["run_name"])))
    assert la[1] == pytest.approx(lb[1], rel=1e-6)  # same data, same times, same masks, same weights
    assert [la[k] for k in sorted(la)] == pytest.approx([lb[k] for k in sorted(lb)], rel=1e-4)


def test_bf16_on_cpu_and_offline_wandb(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_API_KEY", "")
    cfg = _cfg(tmp_path, "train.max_steps=3", "train.precision=bf16-mixed", "logging.wandb=true")
    s = train(cfg)
    assert s["status"] == "completed" and s["val_loss"] == s["val_loss"]  # finite, not NaN
    run = RunDir.for_config(cfg)
    assert any(p.name.startswith("offline-run") for p in (run.path / "wandb").iterdir())


def test_objective_metrics_reach_metrics_jsonl(tmp_path, monkeypatch):
    """Extra sums an objective returns (e.g. the terms of a combined loss) are logged per scored token."""
    from mdm.diffusion.base import LossOut
    from mdm.diffusion.mdlm import MDLM

    orig = MDLM.loss

    def with_metric(self, model, batch, t=None, generator=None):
        out = orig(self, model, batch, t, generator)
        return LossOut(out.sum, out.count, {"twice": 2 * out.sum.detach()})

    monkeypatch.setattr(MDLM, "loss", with_metric)
    cfg = _cfg(tmp_path, "train.max_steps=2")
    train(cfg)
    rows = [r for r in RunDir.for_config(cfg).read_metrics() if "loss" in r]
    assert all(r["twice"] == pytest.approx(2 * r["loss"]) for r in rows)
