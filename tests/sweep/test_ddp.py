"""Two gloo ranks train exactly like one process (CONTRIBUTING.md, "Tests against exact answers"), locally and under `srun`.

The comparison uses the autoregressive objective, whose training loss is a deterministic function of
the batch and the weights: with the global batch split over 2 ranks (the loader gives rank r the
blocks r::2 of what one process would see at the same step), losses normalised by the global token
count and gradients all-reduced, every step's loss must equal the single-process one to float
round-off. (The diffusion objectives compare step by step too, since their noise is keyed by global
sequence index: tests/test_scale_out.py.)
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from mdm.config import load
from mdm.rundir import RunDir
from mdm.sweep.plan import build_plan
from mdm.sweep.spec import load_spec

from .conftest import DEBUG_YAML, SMALL_DATA, python_env, write_spec

STEPS = 8
COMMON = [
    "objective.name=ar",
    f"train.max_steps={STEPS}",
    "train.val_every=1000",
    "train.accelerator=cpu",
    *SMALL_DATA,
]


def losses(run_dir) -> list[float]:
    return [r["loss"] for r in RunDir(run_dir).read_metrics() if "loss" in r]


def train_subprocess(tmp_path, extra: list[str]) -> RunDir:
    over = [*COMMON, f"train.runs_dir={tmp_path / 'runs'}", "train.threads=1", *extra]
    run = RunDir.for_config(load([DEBUG_YAML], over))
    proc = subprocess.run(
        [sys.executable, "-m", "mdm", "train", str(DEBUG_YAML), *over],
        capture_output=True, text=True, env=python_env(), timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return run


@pytest.fixture
def single(tmp_path):
    return losses(train_subprocess(tmp_path, []).path)


@pytest.mark.slow
def test_two_gloo_ranks_match_one_process(tmp_path, single):
    run = train_subprocess(tmp_path / "ddp", ["train.devices=2", "train.strategy=ddp"])  # same run name
    summary = run.read_summary()
    assert summary["derived"]["world_size"] == 2 and summary["derived"]["per_device_batch"] == 4
    two = losses(run.path)
    assert len(two) == len(single) == STEPS
    assert two == pytest.approx(single, rel=1e-5, abs=1e-6)


@pytest.mark.slow
@pytest.mark.slurm
def test_ddp_under_srun_matches_one_process(tmp_path, single):
    from .test_slurm_cluster import _cluster_up, wait_for

    reason = _cluster_up()
    if reason:
        pytest.skip(reason)
    from mdm.sweep.slurm import submit
    from mdm.sweep.status import sweep_states

    spec = write_spec(
        tmp_path / "s.yaml",
        name="ddp-srun",
        base={"overrides": [*COMMON, "train.devices=2", "train.strategy=ddp"]},
        slurm={"cpus_per_task": 1, "time": "00:10:00"},
    )
    plan = build_plan(load_spec(spec))
    job = submit(plan, out=lambda s: None)
    try:
        wait_for(lambda: sweep_states(plan)[0].status in ("completed", "failed"), 300, "the DDP run", poll=1)
    finally:
        subprocess.run(["scancel", str(job)], capture_output=True)
    (run,) = plan.runs
    log = next((plan.sweep_dir / "slurm" / "logs").glob(f"{job}_0.out")).read_text()
    summary = run.run_dir.read_summary()
    assert summary["status"] == "completed", log
    assert summary["derived"]["world_size"] == 2
    assert losses(run.run_dir.path) == pytest.approx(single, rel=1e-5, abs=1e-6)
