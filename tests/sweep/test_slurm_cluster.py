"""Against a real Slurm cluster (`slurm/local-cluster.sh`; `.ci/run` starts one): a 3-run sweep as one
job array, one task preempted midway with `scancel --signal=USR1`, requeued and resumed loss-free."""

from __future__ import annotations

import re
import shutil
import subprocess
import time

import pytest

from mdm.sweep.collect import collect
from mdm.sweep.plan import build_plan
from mdm.sweep.slurm import submit
from mdm.sweep.spec import load_spec
from mdm.sweep.status import sweep_states

from .conftest import write_spec


def _cluster_up() -> str | None:
    if shutil.which("sbatch") is None:
        return "sbatch not on PATH (start a test cluster with slurm/local-cluster.sh, as .ci/run does)"
    try:
        ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError) as e:
        return f"scontrol ping failed: {e}"
    if ping.returncode != 0 or "UP" not in ping.stdout:
        return f"no Slurm controller answers `scontrol ping`: {ping.stdout.strip()} {ping.stderr.strip()}"
    return None


pytestmark = [pytest.mark.slurm, pytest.mark.skipif(_cluster_up() is not None, reason=str(_cluster_up()))]


def metric_steps(run) -> list[int]:
    return [r["step"] for r in run.run_dir.read_metrics() if "loss" in r]


def wait_for(cond, timeout: float, what: str, poll: float = 0.2):
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(poll)


def test_job_array_survives_requeue(tmp_path):
    steps = 150
    spec = write_spec(
        tmp_path / "s.yaml",
        name=f"ci-{int(time.time())}",
        base={"overrides": [f"train.max_steps={steps}", "train.ckpt_every=1000", "train.val_every=1000"]},
        axes={"train.seed": [0, 1, 2]},
        slurm={"cpus_per_task": 1, "time": "00:10:00", "signal_seconds": 60},
    )
    plan = build_plan(load_spec(spec))
    job = submit(plan, out=lambda s: None)
    assert job is not None
    target = plan.runs[0]  # array task 0
    try:
        wait_for(lambda: len(metric_steps(target)) >= 10, 120, f"{target.name} to reach step 10")
        subprocess.run(["scancel", "--signal=USR1", f"{job}_0"], check=True, capture_output=True)
        wait_for(lambda: target.run_dir.last_ckpt.exists(), 60, "the checkpoint written on USR1")
        # requeued tasks may restart only after AuthInfo cred_expire (30 s on the test cluster)
        wait_for(
            lambda: all(s.status == "completed" for s in sweep_states(plan)),
            200,
            "all three runs to complete",
            poll=1,
        )
    finally:
        subprocess.run(["scancel", job], capture_output=True)
    log = next((plan.sweep_dir / "slurm" / "logs").glob(f"{job}_0.out")).read_text()
    assert "restart 0" in log and "restart 1" in log, log  # --open-mode=append kept both attempts
    m = re.search(r"preempted at step (\d+)", log)
    assert m, log
    stopped = int(m[1])
    assert 10 <= stopped < steps
    assert f"resuming from {target.run_dir.last_ckpt} (step {stopped})" in log
    for run in plan.runs:  # nothing lost, nothing duplicated
        assert metric_steps(run) == list(range(1, steps + 1)), run.name
        s = run.run_dir.read_summary()
        assert s["status"] == "completed" and s["steps"] == steps and s["tokens"] == run.tokens
    rows, missing = collect(plan, tmp_path / "results.csv")
    assert len(rows) == 3 and not missing
    # re-submitting skips the completed runs and submits nothing
    assert submit(plan, out=lambda s: None) is None
