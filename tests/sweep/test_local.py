"""The local launcher end to end (real `mdm train` subprocesses): completion, skipping, failure
reporting, and SIGTERM -> checkpoint -> resume without lost or duplicated steps."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import torch

from mdm.preempt import PREEMPTED_EXIT
from mdm.sweep.collect import collect
from mdm.sweep.local import run_local
from mdm.sweep.plan import build_plan
from mdm.sweep.spec import load_spec
from mdm.sweep.status import sweep_states

from .conftest import write_spec


def metric_steps(run) -> list[int]:
    return [r["step"] for r in run.run_dir.read_metrics() if "loss" in r]


def test_local_sweep_runs_skips_and_reports_failures(tmp_path):
    spec = write_spec(
        tmp_path / "s.yaml",
        base={"overrides": ["train.max_steps=6", "train.val_every=1000", "optim.warmup_steps=0"]},
        axes={"optim.lr": [3e-3, 1e30]},  # lr 1e30: the loss is NaN at step 2 -> a failed run
    )
    plan = build_plan(load_spec(spec))
    lines: list[str] = []
    res = run_local(plan, max_parallel=2, threads=1, out=lines.append)
    good, bad = plan.runs
    assert res.completed == [good.name] and list(res.failed) == [bad.name]
    assert "NonFiniteLossError" in res.failed[bad.name] and res.exit_code == 1
    assert any("FAILED" in line and "NonFiniteLossError" in line for line in lines)
    s = good.run_dir.read_summary()
    assert s["status"] == "completed" and s["steps"] == 6 and metric_steps(good) == list(range(1, 7))
    states = {st.name: st for st in sweep_states(plan)}
    assert states[bad.name].status == "failed" and "non-finite" in states[bad.name].error
    rows, missing = collect(plan, tmp_path / "results.csv")
    assert [r["name"] for r in rows] == [good.name] and [m.name for m in missing] == [bad.name]

    # re-running starts nothing: the completed run is skipped, the failed one is reported, not retried
    lines.clear()
    res = run_local(plan, max_parallel=2, out=lines.append)
    assert not res.completed and res.skipped == 2 and bad.name in res.failed
    assert any("not retrying failed run" in line and bad.name in line for line in lines)


def test_sigterm_checkpoints_then_rerun_resumes(tmp_path):
    steps = 40
    spec = write_spec(
        tmp_path / "s.yaml",
        base={"overrides": [f"train.max_steps={steps}", "train.ckpt_every=1000", "train.val_every=1000"]},
    )
    plan = build_plan(load_spec(spec))
    (run,) = plan.runs

    def stop_when_under_way():  # plays the scheduler: SIGTERM to the launcher (this process) mid-run
        deadline = time.monotonic() + 120
        while len(metric_steps(run)) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)

    killer = threading.Thread(target=stop_when_under_way, daemon=True)
    killer.start()
    lines: list[str] = []
    res = run_local(plan, threads=1, out=lines.append)  # forwards SIGTERM to its child
    killer.join()
    out = "\n".join(lines)
    assert res.interrupted == [run.name] and res.exit_code == 130, out
    assert f"stopped {run.name} (exit {PREEMPTED_EXIT})" in out
    assert not run.run_dir.summary.exists()  # interrupted is not failed
    ckpt_step = torch.load(run.run_dir.last_ckpt, weights_only=True)["global_step"]
    done = metric_steps(run)
    assert 3 <= ckpt_step < steps and done == list(range(1, ckpt_step + 1))  # saved at the step it stopped
    assert [s.status for s in sweep_states(plan)] == ["interrupted"]

    res = run_local(plan, threads=1, out=lambda s: None)
    assert res.completed == [run.name]
    assert metric_steps(run) == list(range(1, steps + 1))  # nothing lost, nothing duplicated
    assert run.run_dir.read_summary()["steps"] == steps
    log = (plan.sweep_dir / "logs" / f"{run.name}.log").read_text()
    assert f"resuming from {run.run_dir.last_ckpt} (step {ckpt_step})" in log
    assert json.loads(run.run_dir.summary.read_text())["status"] == "completed"
