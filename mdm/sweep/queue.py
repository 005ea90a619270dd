"""What Slurm says about a sweep's tasks: ``squeue`` asked about the job arrays recorded in
``<sweep_dir>/slurm/submissions.jsonl`` (written by :func:`mdm.sweep.slurm.submit`).

Its own file so that :mod:`mdm.sweep.status` can read the queue without importing the launcher
(``slurm`` -> ``launch`` -> ``status``: one direction of imports).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

from mdm.sweep.plan import Plan


def slurm_dir(plan: Plan) -> Path:
    return plan.sweep_dir / "slurm"


def job_name(plan: Plan) -> str:
    return f"mdm-{plan.spec.name}"


def queue_states(plan: Plan) -> dict[str, str]:
    """run name -> Slurm state (PENDING, RUNNING, ...) for this sweep's tasks still in the queue."""
    subs = slurm_dir(plan) / "submissions.jsonl"
    if not subs.exists() or shutil.which("squeue") is None:
        return {}
    tasks: dict[tuple[str, int], str] = {}
    for line in subs.read_text().splitlines():
        if line.strip():
            rec = json.loads(line)
            for i, name in enumerate(rec["tasks"]):
                tasks[(rec["job_id"], i)] = name
    try:
        proc = subprocess.run(
            ["squeue", "-h", "-r", f"--name={job_name(plan)}", "-o", "%i|%T"],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return {}
    if proc.returncode != 0:
        return {}
    states: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        m = re.fullmatch(r"(\d+)_(\d+)\|(\w+)", line.strip())
        if m and (m[1], int(m[2])) in tasks:
            states[tasks[(m[1], int(m[2]))]] = m[3]
    return states
