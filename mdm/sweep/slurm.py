"""The Slurm launcher: one job array per submission, one task per run to (re)start, via ``sbatch``.

Files under ``<sweep_dir>/slurm/``: ``tasks-<stamp>.txt`` (line i+1 = the resolved config of array task
i), ``array-<stamp>.sbatch`` (the template ``slurm/array.sbatch`` filled in), ``logs/<job>_<task>.out``
and ``submissions.jsonl`` (job id and run names of every submission; ``status`` asks ``squeue`` about
them, so a re-submission leaves queued and running tasks alone).
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from mdm.errors import PREEMPTED_EXIT
from mdm.sweep.launch import select_runs, write_config
from mdm.sweep.plan import Plan, PlannedRun
from mdm.sweep.queue import job_name, queue_states, slurm_dir  # noqa: F401  (queue_states re-exported)
from mdm.sweep.spec import SlurmSpec, SweepError

TEMPLATE = Path(__file__).resolve().parents[2] / "slurm" / "array.sbatch"


def render(
    plan: Plan,
    runs: list[PlannedRun],
    tasks_file: Path,
    max_parallel: int | None = None,
    python: str | None = None,
    workdir: Path | None = None,
) -> str:
    """The sbatch script for ``runs`` (array task i = ``runs[i]``)."""
    s: SlurmSpec = plan.spec.slurm
    devices = {(r.cfg.train.devices, r.cfg.train.num_nodes) for r in runs}
    if len(devices) != 1:
        raise SweepError(
            f"{plan.spec.path}: runs of one job array must share train.devices and train.num_nodes; got {sorted(devices)}"
        )
    ((ntasks, nodes),) = devices
    if s.gpus_per_node and s.gpus_per_node < ntasks:
        raise SweepError(
            f"slurm.gpus_per_node={s.gpus_per_node} < train.devices={ntasks} (one rank per device)"
        )
    template = Path(s.template) if s.template else TEMPLATE
    if not template.is_file():
        raise SweepError(f"sbatch template not found: {template} (set slurm.template in the spec)")
    directives = []
    for opt, val in (("partition", s.partition), ("account", s.account), ("qos", s.qos), ("mem", s.mem)):
        if val:
            directives.append(f"#SBATCH --{opt}={val}")
    if s.gpus_per_node:
        directives.append(f"#SBATCH --gpus-per-node={s.gpus_per_node}")
    for e in s.extra:
        directives.append(f"#SBATCH {e}")
    k = max_parallel or s.max_parallel
    array = f"0-{len(runs) - 1}" + (f"%{k}" if k else "")
    values = {
        "job_name": job_name(plan),
        "array": array,
        "log_dir": str((slurm_dir(plan) / "logs").resolve()),
        "signal_seconds": str(s.signal_seconds),
        "nodes": str(nodes),
        "ntasks_per_node": str(ntasks),
        "cpus_per_task": str(s.cpus_per_task),
        "time": s.time,
        "directives": "\n".join(directives),
        "workdir": shlex.quote(str((workdir or Path.cwd()).resolve())),
        "setup": "\n".join(s.setup),
        "tasks_file": shlex.quote(str(tasks_file.resolve())),
        "python": shlex.quote(python or s.python or sys.executable),
        "preempted_exit": str(PREEMPTED_EXIT),
    }
    text = template.read_text()
    for key, val in values.items():
        text = text.replace("{{" + key + "}}", val)
    left = re.findall(r"\{\{(\w+)\}\}", text)
    if left:
        raise SweepError(f"{template}: unknown placeholders {sorted(set(left))}; known: {sorted(values)}")
    return text


def submit(
    plan: Plan,
    max_parallel: int | None = None,
    retry_failed: bool = False,
    dry_run: bool = False,
    out: Callable[[str], None] = print,
) -> str | None:
    """Write and submit one job array for the runs to (re)start; return the job id (None if nothing to do)."""
    sel = select_runs(plan, retry_failed)
    for line in sel.describe():
        out(f"[sweep] {line}")
    if not sel.todo:
        out(f"[sweep] nothing to submit ({len(sel.completed)} of {len(plan.runs)} completed)")
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S") + f"-{time.time_ns() % 1_000_000:06d}"
    sdir = slurm_dir(plan)
    (sdir / "logs").mkdir(parents=True, exist_ok=True)
    tasks_file = sdir / f"tasks-{stamp}.txt"
    paths = [write_config(plan, r) for r in sel.todo]
    tasks_file.write_text("".join(f"{p}\n" for p in paths))
    script = sdir / f"array-{stamp}.sbatch"
    script.write_text(render(plan, sel.todo, tasks_file, max_parallel))
    for i, r in enumerate(sel.todo):
        out(f"[sweep] task {i}: {r.name} ({r.steps} steps)")
    if dry_run:
        out(f"[sweep] dry run: wrote {script} ({len(sel.todo)} tasks); submit with: sbatch {script}")
        return None
    if shutil.which("sbatch") is None:
        raise SweepError(f"sbatch not found on PATH: is this a Slurm login node? (script written: {script})")
    proc = subprocess.run(["sbatch", "--parsable", str(script)], capture_output=True, text=True)
    if proc.returncode != 0:
        msg = proc.stderr.strip() or proc.stdout.strip() or "(no message)"
        raise SweepError(f"sbatch failed (exit {proc.returncode}) for {script}:\n{msg}")
    job_id = proc.stdout.strip().split(";")[0]
    if not re.fullmatch(r"\d+", job_id):
        raise SweepError(f"sbatch printed {proc.stdout.strip()!r}, not a job id (script {script})")
    record = {
        "job_id": job_id,
        "job_name": job_name(plan),
        "script": str(script),
        "tasks": [r.name for r in sel.todo],
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    with open(sdir / "submissions.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")
    out(f"[sweep] submitted job array {job_id} ({len(sel.todo)} tasks); logs in {sdir / 'logs'}")
    return job_id
