"""Where each run of a sweep stands, read from its run directory (and the launchers' locks/queue).

States: ``pending`` (nothing yet), ``queued`` (waiting in the Slurm queue), ``running`` (a local
launcher holds its lock, an ``mdm train`` holds the run directory's ``train.lock``, or Slurm says
RUNNING), ``interrupted`` (has a checkpoint or metrics but
nothing is running it: re-running the sweep resumes it), ``completed`` and ``failed`` (summary.json),
``corrupt`` (summary.json unreadable: the message names the file).
"""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mdm.lock import lock_held as run_dir_locked
from mdm.sweep.plan import Plan, PlannedRun
from mdm.sweep.queue import queue_states

ACTIVE = ("queued", "running")


@dataclass
class RunState:
    name: str
    status: str
    step: int | None = None
    max_steps: int | None = None
    loss: float | None = None
    val_loss: float | None = None
    error: str | None = None
    summary: dict[str, Any] | None = None


def lock_path(plan: Plan, name: str) -> Path:
    return plan.sweep_dir / "locks" / f"{name}.lock"


def lock_held(path: Path) -> bool:
    """True when another process holds an exclusive flock on ``path`` (a local launcher running the run)."""
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing releases a lock we took
    return False


def last_metrics(path: Path) -> tuple[int | None, float | None]:
    """(last logged step, last training loss) from the tail of metrics.jsonl, without reading it all."""
    if not path.exists():
        return None, None
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - 8192))
        tail = f.read().decode("utf-8", errors="replace").splitlines()
    step = loss = None
    for line in reversed(tail):
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if step is None and "step" in row:
            step = row["step"]
        if loss is None and row.get("loss") is not None:
            loss = row["loss"]
        if step is not None and loss is not None:
            break
    return step, loss


def run_state(plan: Plan, run: PlannedRun, queue: dict[str, str] | None = None) -> RunState:
    rd = run.run_dir
    st = RunState(name=run.name, status="pending", max_steps=run.steps)
    st.step, st.loss = last_metrics(rd.metrics)
    try:
        summary = rd.read_summary()
    except ValueError as e:  # corrupt summary.json
        st.status, st.error = "corrupt", f"{e}; delete it to re-run {run.name}"
        return st
    slurm_state = (queue or {}).get(run.name)
    if summary is not None and summary.get("status") == "completed":
        st.status, st.summary, st.val_loss = "completed", summary, summary.get("val_loss")
        st.step = summary.get("steps", st.step)
        return st
    if lock_held(lock_path(plan, run.name)) or run_dir_locked(rd.path) or slurm_state == "RUNNING":
        st.status = "running"
    elif slurm_state is not None:
        st.status = "queued"
    elif summary is not None and summary.get("status") == "failed":
        st.status, st.summary = "failed", summary
        st.error = summary.get("error") or "failed (no error recorded)"
    elif summary is not None:
        st.status, st.error = "corrupt", f"{rd.summary}: unknown status {summary.get('status')!r}"
    elif rd.last_ckpt.exists() or rd.metrics.exists():
        st.status = "interrupted"
    return st


def sweep_states(plan: Plan) -> list[RunState]:
    queue = queue_states(plan)
    return [run_state(plan, r, queue) for r in plan.runs]


def format_status(plan: Plan, states: list[RunState]) -> str:
    head = f"{'name':<40} {'family':<7} {'depth':>5} {'C':>9} {'status':<11} {'step':>11} {'loss':>8} {'val_loss':>8}"
    lines = [head, "-" * len(head)]
    counts: dict[str, int] = {}
    for r, s in zip(plan.runs, states):
        counts[s.status] = counts.get(s.status, 0) + 1
        step = f"{s.step if s.step is not None else '-'}/{s.max_steps}"
        c = f"{r.budget:.3g}" if r.budget is not None else "-"
        loss = f"{s.loss:.4f}" if s.loss is not None else "-"
        vl = f"{s.val_loss:.4f}" if s.val_loss is not None else "-"
        lines.append(
            f"{r.name:<40} {r.family:<7} {r.depth:>5} {c:>9} {s.status:<11} {step:>11} {loss:>8} {vl:>8}"
        )
        if s.error:
            lines.append(f"    error: {s.error.splitlines()[0][:200]}")
    order = ["completed", "running", "queued", "interrupted", "pending", "failed", "corrupt"]
    lines.append(", ".join(f"{counts[k]} {k}" for k in order if k in counts) + f" (of {len(states)})")
    return "\n".join(lines)
