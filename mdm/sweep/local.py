"""The local launcher: ``python -m mdm train <config>`` subprocesses, ``max_parallel`` at a time.

Each child runs in its own session with ``train.threads = cpus // max_parallel`` and its output appended
to ``<sweep_dir>/logs/<run_name>.log``; the launcher holds an flock on ``<sweep_dir>/locks/<run_name>.lock``
(inherited by the child) so a second launcher, and ``mdm sweep status``, see the run as running.
Ctrl-C / SIGTERM: every child gets SIGTERM, checkpoints at its next step and exits 75 (a second Ctrl-C
kills them); re-running the same command resumes them.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mdm.errors import ABORTED_EXIT, PREEMPTED_EXIT
from mdm.sweep.launch import select_runs, write_config
from mdm.sweep.plan import Plan, PlannedRun
from mdm.sweep.status import last_metrics, lock_path


@dataclass
class LocalResult:
    completed: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # name -> error
    interrupted: list[str] = field(default_factory=list)  # stopped by a signal after checkpointing
    not_started: list[str] = field(default_factory=list)  # left when the launcher was stopped
    skipped: int = 0

    @property
    def exit_code(self) -> int:
        if self.interrupted or self.not_started:
            return 130
        return 1 if self.failed else 0


@dataclass
class _Child:
    run: PlannedRun
    proc: subprocess.Popen
    lock_fd: int
    log: Path
    started: float


def train_command(python: str, cfg_path: Path, threads: int | None) -> list[str]:
    cmd = [python, "-m", "mdm", "train", str(cfg_path)]
    if threads:
        cmd.append(f"train.threads={threads}")
    return cmd


def _tail(path: Path, n: int = 8) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def run_local(
    plan: Plan,
    max_parallel: int | None = None,
    threads: int | None = None,
    retry_failed: bool = False,
    dry_run: bool = False,
    python: str = sys.executable,
    progress_every: float = 15.0,
    out: Callable[[str], None] = print,
) -> LocalResult:
    k = max_parallel or plan.spec.local.max_parallel
    threads = threads or plan.spec.local.threads or max(1, (os.cpu_count() or 1) // k)
    sel = select_runs(plan, retry_failed)
    res = LocalResult(skipped=len(sel.completed) + len(sel.active) + len(sel.failed))
    for line in sel.describe():
        out(f"[sweep] {line}")
    for r, s in sel.failed:
        res.failed[r.name] = s.error or "failed"
    todo = list(sel.todo)
    if dry_run:
        for r in todo:
            out(f"[sweep] would run: {' '.join(train_command(python, write_config(plan, r), threads))}")
        out(f"[sweep] dry run: {len(todo)} run(s) to start, {k} at a time, {threads} thread(s) each")
        return res
    if not todo:
        out(f"[sweep] nothing to run ({len(sel.completed)} of {len(plan.runs)} completed)")
        return res
    total_flops = sum(r.flops for r in todo)
    out(
        f"[sweep] {plan.spec.name}: {len(todo)} run(s) to train ({total_flops:.3g} FLOPs), {k} at a time, {threads} thread(s) each"
    )
    logs, locks = plan.sweep_dir / "logs", plan.sweep_dir / "locks"
    logs.mkdir(parents=True, exist_ok=True)
    locks.mkdir(parents=True, exist_ok=True)

    stop = {"n": 0}

    def on_signal(signum, frame):
        stop["n"] += 1
        sig = signal.SIGTERM if stop["n"] == 1 else signal.SIGKILL
        out(
            f"[sweep] {signal.Signals(signum).name}: sending {sig.name} to {len(active)} run(s)"
            + (" (they checkpoint and stop; re-run to resume)" if stop["n"] == 1 else "")
        )
        for c in active:
            try:
                os.killpg(c.proc.pid, sig)
            except ProcessLookupError:
                pass

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    active: list[_Child] = []
    t0 = last_report = time.monotonic()
    done_flops = 0.0
    n_done = 0
    try:
        while (todo and not stop["n"]) or active:
            while todo and len(active) < k and not stop["n"]:
                run = todo.pop(0)
                cfg_path = write_config(plan, run)
                lock_fd = os.open(lock_path(plan, run.name), os.O_RDWR | os.O_CREAT, 0o644)
                try:
                    fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(lock_fd)
                    out(f"[sweep] skipping {run.name}: another launcher started it")
                    res.skipped += 1
                    continue
                log = logs / f"{run.name}.log"
                with open(log, "ab") as f:
                    f.write(f"\n===== {time.strftime('%Y-%m-%dT%H:%M:%S')} mdm sweep run (local)\n".encode())
                    f.flush()
                    proc = subprocess.Popen(
                        train_command(python, cfg_path, threads),
                        stdout=f,
                        stderr=subprocess.STDOUT,
                        stdin=subprocess.DEVNULL,
                        start_new_session=True,
                        pass_fds=(lock_fd,),
                        env={**os.environ, "PYTHONUNBUFFERED": "1"},
                    )
                active.append(_Child(run, proc, lock_fd, log, time.monotonic()))
                what = f"{run.family} depth {run.depth}" + (f" C={run.budget:.3g}" if run.budget else "")
                out(
                    f"[sweep] start {run.name} ({what}: {run.steps} steps, {run.params_non_embedding:,} params) log {log}"
                )
            time.sleep(0.5)
            for c in list(active):
                rc = c.proc.poll()
                if rc is None:
                    continue
                active.remove(c)
                os.close(c.lock_fd)
                dt = time.monotonic() - c.started
                summary = c.run.run_dir.read_summary() if c.run.run_dir.summary.exists() else None
                if rc == 0 and summary and summary.get("status") == "completed":
                    n_done += 1
                    done_flops += c.run.flops
                    res.completed.append(c.run.name)
                    left = sum(r.flops for r in todo) + sum(a.run.flops for a in active)
                    rate = done_flops / max(1e-9, time.monotonic() - t0)
                    eta = f", ~{left / rate / 60:.1f} min left" if rate > 0 and left else ""
                    out(
                        f"[sweep] done  {c.run.name}: val_loss {summary['val_loss']:.4f} in {dt:.0f}s "
                        f"({n_done}/{n_done + len(todo) + len(active)}{eta})"
                    )
                elif rc in (PREEMPTED_EXIT, ABORTED_EXIT) or (stop["n"] and rc < 0):
                    res.interrupted.append(c.run.name)
                    out(f"[sweep] stopped {c.run.name} (exit {rc}); re-run to resume from its checkpoint")
                else:
                    err = (summary or {}).get("error") if (summary or {}).get("status") == "failed" else None
                    err = err or f"exit code {rc}; last lines of {c.log}:\n{_tail(c.log)}"
                    res.failed[c.run.name] = err
                    out(f"[sweep] FAILED {c.run.name}: {err}")
            now = time.monotonic()
            if active and now - last_report >= progress_every:
                last_report = now
                parts = []
                for c in active:
                    step, loss = last_metrics(c.run.run_dir.metrics)
                    parts.append(
                        f"{c.run.name} {step or 0}/{c.run.steps}"
                        + (f" loss {loss:.3f}" if loss is not None else "")
                    )
                out(f"[sweep] {time.strftime('%H:%M:%S')} running: " + " | ".join(parts))
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    if stop["n"]:
        res.not_started = [r.name for r in todo]
    out(
        f"[sweep] {len(res.completed)} completed, {len(res.failed)} failed, {len(res.interrupted)} interrupted, "
        f"{len(res.not_started)} not started, {res.skipped} skipped in {time.monotonic() - t0:.0f}s"
    )
    return res
