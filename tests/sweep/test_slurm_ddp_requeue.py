"""Against a real Slurm cluster (`slurm/local-cluster.sh`): a sweep task with `train.devices=2` (2 tasks
on the one node, DDP over gloo) launched by the project's Slurm launcher, preempted with USR1, requeued,
completes with the per-step MDLM losses of an uninterrupted one-process run (keyed noise, re-sharded data)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from mdm.config import load
from mdm.rundir import RunDir
from mdm.sweep.plan import build_plan
from mdm.sweep.slurm import submit
from mdm.sweep.spec import load_spec
from mdm.sweep.status import sweep_states

from .conftest import DEBUG_YAML, SMALL_DATA, python_env, write_spec
from .test_slurm_cluster import _cluster_up, wait_for

pytestmark = [
    pytest.mark.slow,
    pytest.mark.slurm,
    pytest.mark.skipif(_cluster_up() is not None, reason=str(_cluster_up())),
]
STEPS = 60
OVER = [f"train.max_steps={STEPS}", "train.ckpt_every=1000", "train.val_every=1000", "train.accelerator=cpu"]


def _losses(run_dir: RunDir) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in run_dir.read_metrics() if "loss" in r}


def test_ddp_task_preempted_and_requeued_matches_one_process(tmp_path):
    spec = write_spec(
        tmp_path / "s.yaml",
        name="ddp-requeue",
        base={"overrides": [*OVER, "train.devices=2", "train.strategy=ddp"]},
        slurm={"cpus_per_task": 1, "time": "00:10:00", "signal_seconds": 60},
    )
    plan = build_plan(load_spec(spec))
    (run,) = plan.runs
    job = submit(plan, out=lambda s: None)
    assert job is not None
    try:
        wait_for(lambda: len(_losses(run.run_dir)) >= 10, 180, "the DDP run to reach step 10")
        subprocess.run(["scancel", "--signal=USR1", f"{job}_0"], check=True, capture_output=True)
        wait_for(lambda: run.run_dir.last_ckpt.exists(), 60, "the checkpoint written on USR1")
        wait_for(lambda: sweep_states(plan)[0].status in ("completed", "failed"), 300, "the run", poll=1)
    finally:
        subprocess.run(["scancel", str(job)], capture_output=True)
    log = next((plan.sweep_dir / "slurm" / "logs").glob(f"{job}_0.out")).read_text()
    summary = run.run_dir.read_summary()
    assert summary["status"] == "completed", log[-3000:]
    assert summary["derived"]["world_size"] == 2
    m = re.search(r"preempted at step (\d+)", log)
    assert m and 10 <= int(m[1]) < STEPS, log[-3000:]
    assert f"(step {m[1]})" in log  # resumed from the USR1 checkpoint
    # the uninterrupted reference: one process, same global batch
    over = [*SMALL_DATA, *OVER, f"train.runs_dir={tmp_path / 'ref'}", "train.threads=1"]
    ref = RunDir.for_config(load([DEBUG_YAML], over))
    proc = subprocess.run(
        [sys.executable, "-m", "mdm", "train", str(DEBUG_YAML), *over],
        capture_output=True, text=True, env=python_env(), timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    got, want = _losses(run.run_dir), _losses(ref)
    assert sorted(got) == list(range(1, STEPS + 1))  # nothing lost, nothing logged twice
    assert [got[k] for k in sorted(got)] == pytest.approx([want[k] for k in sorted(want)], rel=1e-5)
