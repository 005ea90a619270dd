"""What a launcher does before starting anything: decide which runs to (re)start and write their configs.

Completed runs are skipped; interrupted ones are started again (``mdm train`` resumes from
``last.ckpt``); running or queued ones are left alone; failed ones are reported with their error and
retried only with ``--retry-failed``; a corrupt summary stops the launch with a message naming it.
Each run to start gets its fully resolved config in ``<sweep_dir>/configs/<run_name>.yaml``; the run
is ``python -m mdm train <that file>`` (which recomputes the same name, checked here).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mdm.config import load
from mdm.io import atomic_write_text
from mdm.rundir import run_name
from mdm.sweep.plan import Plan, PlannedRun
from mdm.sweep.spec import SweepError
from mdm.sweep.status import RunState, sweep_states


@dataclass
class Selection:
    todo: list[PlannedRun] = field(default_factory=list)
    completed: list[PlannedRun] = field(default_factory=list)
    active: list[tuple[PlannedRun, RunState]] = field(default_factory=list)
    failed: list[tuple[PlannedRun, RunState]] = field(default_factory=list)  # not retried
    states: dict[str, RunState] = field(default_factory=dict)

    def describe(self) -> list[str]:
        lines = []
        if self.completed:
            lines.append(f"skipping {len(self.completed)} completed run(s)")
        for r, s in self.active:
            lines.append(f"skipping {r.name}: {s.status} elsewhere")
        for r, s in self.failed:
            lines.append(
                f"not retrying failed run {r.name} (use --retry-failed): {(s.error or '').splitlines()[0][:300]}"
            )
        return lines


def select_runs(plan: Plan, retry_failed: bool = False) -> Selection:
    sel = Selection()
    states = sweep_states(plan)
    corrupt = [s for s in states if s.status == "corrupt"]
    if corrupt:
        raise SweepError("; ".join(s.error or s.name for s in corrupt))
    for run, st in zip(plan.runs, states):
        sel.states[run.name] = st
        if st.status == "completed":
            sel.completed.append(run)
        elif st.status in ("running", "queued"):
            sel.active.append((run, st))
        elif st.status == "failed" and not retry_failed:
            sel.failed.append((run, st))
        else:
            sel.todo.append(run)
    return sel


def config_path(plan: Plan, run: PlannedRun) -> Path:
    return (plan.sweep_dir / "configs" / f"{run.name}.yaml").resolve()


def write_config(plan: Plan, run: PlannedRun) -> Path:
    """Write the run's resolved config; check that ``mdm train`` will give it the same name."""
    path = config_path(plan, run)
    atomic_write_text(path, run.config_yaml())
    again = run_name(load([path]))
    if again != run.name:  # a config that does not survive a YAML round trip would train elsewhere
        raise SweepError(f"{path}: reloading the config gives run name {again!r}, not {run.name!r}")
    return path
