"""The sbatch script and submission errors, without a cluster (a fake `sbatch` on PATH)."""

from __future__ import annotations

import json
import os
import stat

import pytest

from mdm.preempt import PREEMPTED_EXIT
from mdm.sweep.plan import build_plan
from mdm.sweep.slurm import render, submit
from mdm.sweep.spec import SweepError, load_spec

from .conftest import write_spec

SLURM = {
    "partition": "gpu",
    "account": "proj42",
    "time": "02:00:00",
    "gpus_per_node": 2,
    "cpus_per_task": 8,
    "mem": "64G",
    "signal_seconds": 90,
    "setup": ["module load cuda/12", "source .venv/bin/activate"],
    "extra": ["--constraint=a100"],
    "python": "/opt/venv/bin/python",
}


@pytest.fixture
def plan(tmp_path):
    spec = write_spec(
        tmp_path / "s.yaml",
        base={"overrides": ["train.devices=2", "train.strategy=ddp"]},
        axes={"train.seed": [0, 1, 2]},
        slurm=SLURM,
    )
    return build_plan(load_spec(spec))


def fake_sbatch(tmp_path, monkeypatch, body: str) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    exe = bindir / "sbatch"
    exe.write_text("#!/bin/sh\n" + body + "\n")
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")


def test_rendered_script(plan, tmp_path):
    text = render(plan, plan.runs, tmp_path / "tasks.txt", max_parallel=2)
    for line in [
        "#SBATCH --array=0-2%2",
        "#SBATCH --job-name=mdm-test",
        "#SBATCH --requeue",
        "#SBATCH --signal=USR1@90",
        "#SBATCH --open-mode=append",
        "#SBATCH --partition=gpu",
        "#SBATCH --account=proj42",
        "#SBATCH --time=02:00:00",
        "#SBATCH --gpus-per-node=2",
        "#SBATCH --ntasks-per-node=2",  # one rank per device (train.devices)
        "#SBATCH --nodes=1",
        "#SBATCH --cpus-per-task=8",
        "#SBATCH --mem=64G",
        "#SBATCH --constraint=a100",
        "module load cuda/12",
        "srun --kill-on-bad-exit=1 /opt/venv/bin/python -m mdm train",
        f'if [ "$rc" -eq {PREEMPTED_EXIT} ]; then',
        'scontrol requeue "${SLURM_JOB_ID}"',
    ]:
        assert line in text, line
    assert "{{" not in text


def test_sbatch_failure_shows_its_message(plan, tmp_path, monkeypatch):
    fake_sbatch(
        tmp_path,
        monkeypatch,
        "echo 'sbatch: error: Batch job submission failed: Invalid account or account/partition combination specified' >&2; exit 1",
    )
    with pytest.raises(
        SweepError, match=r"sbatch failed \(exit 1\).*\n.*Invalid account or account/partition"
    ):
        submit(plan, out=lambda s: None)
    assert not (plan.sweep_dir / "slurm" / "submissions.jsonl").exists()


def test_submission_is_recorded_and_dry_run_submits_nothing(plan, tmp_path, monkeypatch):
    fake_sbatch(tmp_path, monkeypatch, 'echo "$@" > "$(dirname "$0")/args"; echo "4242;cluster"')
    assert submit(plan, dry_run=True, out=lambda s: None) is None
    assert not (tmp_path / "bin" / "args").exists()
    assert submit(plan, out=lambda s: None) == "4242"
    args = (tmp_path / "bin" / "args").read_text().split()
    assert args[0] == "--parsable" and args[1].endswith(".sbatch")
    (rec,) = [
        json.loads(x) for x in (plan.sweep_dir / "slurm" / "submissions.jsonl").read_text().splitlines()
    ]
    assert rec["job_id"] == "4242" and rec["tasks"] == [r.name for r in plan.runs]
    tasks = (plan.sweep_dir / "slurm").glob("tasks-*.txt")
    lines = next(tasks).read_text().splitlines()
    assert [os.path.basename(x) for x in lines] == [f"{r.name}.yaml" for r in plan.runs]


def test_runs_of_one_array_share_devices(tmp_path):
    # train.devices does not enter run names (a run resumes on any number of devices): an axis over it
    # names one run twice, refused by the planner; mixed devices in one array are refused by render
    spec = write_spec(tmp_path / "s.yaml", axes={"train.devices": [1, 2]})
    with pytest.raises(SweepError, match="have the same name"):
        build_plan(load_spec(spec))
    plan = build_plan(load_spec(write_spec(tmp_path / "s.yaml", axes={"model.depth": [2, 3]})))
    plan.runs[1].cfg.train.devices = 2
    with pytest.raises(SweepError, match="must share train.devices and train.num_nodes"):
        render(plan, plan.runs, tmp_path / "t.txt")
