"""Reliability edges (issue 14): corrupt checkpoints, one writer per run, Ctrl-C, start-up limits, one
error style, no half-made run directories, start-up imports."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from mdm.cli import COMMANDS, build_parser, main
from mdm.config import load
from mdm.errors import PREEMPTED_EXIT
from mdm.limits import LimitError, check_run
from mdm.lock import RunLock, RunLockedError, lock_held
from mdm.rundir import RunDir
from mdm.train import CheckpointError, find_resume_checkpoint, prepare_run, train

REPO = Path(__file__).resolve().parents[1]
DEBUG_YAML = REPO / "configs" / "debug.yaml"
COMMON = ["train.max_steps=24", "train.ckpt_every=4", "train.val_every=5", "optim.ema=0.99"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _cmd(runs: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "mdm", "train", str(DEBUG_YAML), f"train.runs_dir={runs}", *extra]


def _run_dir(runs: Path, *extra: str) -> RunDir:
    return RunDir.for_config(load([DEBUG_YAML], [f"train.runs_dir={runs}", *extra]))


def _losses(run: RunDir) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in run.read_metrics() if "loss" in r}


def _wait_for_step(run: RunDir, proc: subprocess.Popen, step: int, timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        try:
            if max(_losses(run), default=0) >= step:
                return
        except (OSError, json.JSONDecodeError):
            pass
        time.sleep(0.02)
    raise AssertionError(f"run did not reach step {step} (exit {proc.poll()})")


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> RunDir:
    """An uninterrupted run of COMMON (a subprocess, one thread): the losses every resume must match."""
    runs = tmp_path_factory.mktemp("ref") / "runs"
    subprocess.run(_cmd(runs, *COMMON), check=True, env=ENV, cwd=REPO, capture_output=True)
    return _run_dir(runs, *COMMON)


# ---- 1. corrupt last.ckpt -> the newest periodic checkpoint that loads --------------------------------


def test_corrupt_last_ckpt_resumes_from_periodic_bit_exactly(reference, tmp_path):
    runs = tmp_path / "runs"
    run = RunDir(runs / reference.name)
    shutil.copytree(reference.path, run.path)
    run.summary.unlink()
    newest = run.checkpoints / "step-0000024.ckpt"
    run.last_ckpt.unlink()
    os.link(newest, run.last_ckpt)  # as mdm train writes them (the copy made two files)
    # `truncate -s 50% last.ckpt`: the newest periodic (the same file) breaks too; step 20 loads
    os.truncate(run.last_ckpt, run.last_ckpt.stat().st_size // 2)
    proc = subprocess.run(_cmd(runs, *COMMON), env=ENV, cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert f"resuming from {run.checkpoints / 'step-0000020.ckpt'} (step 20)" in proc.stdout
    assert "set aside as last.ckpt.corrupt" in proc.stdout
    assert (run.checkpoints / "last.ckpt.corrupt").exists()  # renamed, not deleted
    assert (run.checkpoints / "step-0000024.ckpt.corrupt").exists()
    got, want = _losses(run), _losses(reference)
    assert sorted(got) == list(range(1, 25)), "rows past step 20 must be dropped, then rewritten once"
    assert got == want  # bit for bit
    assert run.read_summary()["val_loss"] == reference.read_summary()["val_loss"]
    assert torch.load(run.last_ckpt, weights_only=True)["global_step"] == 24


def test_no_loadable_checkpoint_refuses_and_keeps_metrics(tmp_path):
    cfg = load(
        [DEBUG_YAML], [f"train.runs_dir={tmp_path / 'runs'}", "train.max_steps=3", "train.ckpt_every=3"]
    )
    train(cfg)
    run = RunDir.for_config(cfg)
    run.summary.unlink()
    run.last_ckpt.write_bytes(run.last_ckpt.read_bytes()[:1000])  # same inode as step-0000003.ckpt
    metrics = run.metrics.read_text()
    for _ in range(2):  # refused again on a re-run: the corrupt files are still there
        with pytest.raises(CheckpointError, match=r"no checkpoint of .* loads .*rm .*corrupt"):
            train(cfg)
    assert run.metrics.read_text() == metrics  # never deleted while a checkpoint might be recovered
    assert sorted(p.name for p in run.checkpoints.iterdir()) == [
        "last.ckpt.corrupt",
        "step-0000003.ckpt.corrupt",
    ]


def test_deleted_last_ckpt_falls_back_to_the_newest_periodic(tmp_path):
    run = RunDir(tmp_path / "r")
    run.checkpoints.mkdir(parents=True)
    for step in (4, 8):
        torch.save({"global_step": step}, run.checkpoints / f"step-{step:07d}.ckpt")
    assert find_resume_checkpoint(run) == (run.checkpoints / "step-0000008.ckpt", 8)
    assert find_resume_checkpoint(RunDir(tmp_path / "empty")) is None


# ---- 2. one writer per run directory ----------------------------------------------------------------


def test_second_writer_exits_at_once_naming_the_holder(tmp_path):
    runs = tmp_path / "runs"
    extra = ["train.max_steps=2000", "train.ckpt_every=1000", "train.val_every=1000"]
    run = _run_dir(runs, *extra)
    first = subprocess.Popen(
        _cmd(runs, *extra), env=ENV, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        _wait_for_step(run, first, 2)
        assert lock_held(run.path)
        second = subprocess.run(
            _cmd(runs, *extra), env=ENV, cwd=REPO, capture_output=True, text=True, timeout=120
        )
        assert second.returncode == 2, second.stderr
        assert f"in use by process {first.pid}" in second.stderr and "Traceback" not in second.stderr
        assert "[mdm] run" not in second.stdout  # refused before any work
        assert first.poll() is None  # the first writer is untouched
    finally:
        first.kill()
        first.wait()
    assert not lock_held(run.path)  # a killed holder leaves no stale lock
    with RunLock(run.path):
        pass


def test_lock_in_process_names_pid(tmp_path):
    with RunLock(tmp_path):
        with pytest.raises(RunLockedError, match=f"process {os.getpid()}"):
            RunLock(tmp_path, retry_s=0).acquire()
    RunLock(tmp_path).acquire().release()


# ---- 3. Ctrl-C -> checkpoint, exit 75, interrupted; the sweep resumes it bit-exactly -----------------


def test_sigint_checkpoints_is_interrupted_and_sweep_resumes_bit_exactly(reference, tmp_path):
    from mdm.sweep.launch import write_config
    from mdm.sweep.local import run_local
    from mdm.sweep.plan import build_plan
    from mdm.sweep.spec import load_spec
    from mdm.sweep.status import format_status, sweep_states

    spec_path = tmp_path / "s.yaml"
    spec_path.write_text(
        yaml.safe_dump(
            {
                "name": "t",
                "out_dir": str(tmp_path / "sweep"),
                "base": {"files": [str(DEBUG_YAML)], "overrides": COMMON},
            }
        )
    )
    plan = build_plan(load_spec(spec_path))
    (planned,) = plan.runs
    assert planned.name == reference.name  # the same training as the reference
    run = planned.run_dir
    cfg_path = write_config(plan, planned)
    proc = subprocess.Popen(
        [sys.executable, "-m", "mdm", "train", str(cfg_path)], env=ENV, cwd=REPO,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    _wait_for_step(run, proc, 6)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == PREEMPTED_EXIT, err
    assert "interrupted at step" in err and "Traceback" not in err
    assert not run.summary.exists()  # interrupted, not failed
    stopped = max(_losses(run))
    assert 6 <= stopped < 24
    assert torch.load(run.last_ckpt, weights_only=True)["global_step"] == stopped  # saved at the interrupt
    states = sweep_states(plan)
    assert [s.status for s in states] == ["interrupted"]
    assert "1 interrupted" in format_status(plan, states)

    res = run_local(plan, max_parallel=1, threads=1, out=lambda s: None)
    assert res.completed == [planned.name]
    assert _losses(run) == _losses(reference)  # bit for bit, no row lost or duplicated
    assert run.read_summary()["val_loss"] == reference.read_summary()["val_loss"]


# ---- 4. start-up limits -----------------------------------------------------------------------------


def test_absurd_seq_len_is_refused_with_numbers(tmp_path, capsys):
    runs = tmp_path / "runs"
    assert main(["train", str(DEBUG_YAML), f"train.runs_dir={runs}", "model.seq_len=100000"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "GFLOP/s measured here" in err and "train.preempt_grace_s=300" in err and "model.seq_len" in err
    assert not runs.exists()  # refused before anything was written
    # a run that cannot fit in memory is refused naming the sizes
    cfg = load([DEBUG_YAML], [f"train.runs_dir={runs}", "model.seq_len=100000", "train.global_batch=4096"])
    with pytest.raises(LimitError, match=r"needs about \d+\.\d GiB per device .* but the CPU RAM has"):
        train(cfg)
    assert not runs.exists()


def test_force_limits_skips_the_checks(tmp_path):
    extra = [f"train.runs_dir={tmp_path}", "model.seq_len=100000", "train.global_batch=4096"]
    cfg = load([DEBUG_YAML], extra)
    p = prepare_run(cfg)
    with pytest.raises(LimitError):
        check_run(cfg, p["counts"], p["derived"], p["vocab"].size)
    forced = load([DEBUG_YAML], [*extra, "train.force_limits=true"])
    est = check_run(forced, p["counts"], p["derived"], p["vocab"].size)
    assert est.total_bytes > est.available_bytes


def test_huge_synthetic_vocab_is_refused_before_allocating(tmp_path):
    cfg = load([DEBUG_YAML], [f"train.runs_dir={tmp_path / 'runs'}", "data.synthetic.vocab=70000"])
    with pytest.raises(LimitError, match=r"data.synthetic.vocab=70000 .* GiB"):
        train(cfg)
    assert not (tmp_path / "runs").exists()


# ---- 5. one error style -----------------------------------------------------------------------------


def test_runtime_data_error_is_a_few_lines_exit_2_and_recorded(tmp_path, monkeypatch):
    from mdm.data.datamodule import ensure_prepared
    from mdm.data.meta import DataError

    runs = tmp_path / "runs"
    extra = [f"train.runs_dir={runs}", "data.synthetic.eval_tokens=10", f"data.dir={tmp_path / 'data'}"]
    ensure_prepared(load([DEBUG_YAML], extra).data)  # so that only the run's own output is seen
    proc = subprocess.run(_cmd(runs, *extra[1:]), env=ENV, cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert 1 <= len(lines) <= 5 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[-1].startswith("mdm: error: split 'validation'")
    run = _run_dir(runs, *extra[1:])
    s = run.read_summary()
    assert (
        s["status"] == "failed" and s["error"].startswith("DataError: split 'validation'") and s["user_error"]
    )
    monkeypatch.setenv("MDM_DEBUG", "1")  # the traceback on request
    with pytest.raises(DataError):
        main(["train", str(DEBUG_YAML), *extra])


# ---- 6. no half-made run directory after a refused start --------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        ["train.max_steps=-5"],
        ["data.name=files", "data.path=/nonexistent/none*.txt", "data.dir=/nonexistent/dir"],
    ],
)
def test_refused_start_leaves_no_run_dir(tmp_path, capsys, bad):
    runs = tmp_path / "runs"
    assert main(["train", str(DEBUG_YAML), f"train.runs_dir={runs}", *bad]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert not runs.exists() or not any(runs.iterdir())


# ---- 7. start-up: no torch for --help, no heavy optional packages for training ----------------------


def test_help_imports_no_torch_and_helps_match_the_modules():
    code = (
        "import sys\nfrom mdm.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], env=ENV, cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert all(name in proc.stdout for name in COMMANDS)
    sub = next(a for a in build_parser(["--help"], load_all=True)._actions if a.dest == "command")
    helps = {a.dest: a.help for a in sub._choices_actions}
    assert helps == {name: h for name, (_, h) in COMMANDS.items()}


def test_training_imports_skip_optional_heavy_packages():
    code = (
        "import sys, mdm.train\n"
        "heavy = [m for m in ('transformers', 'matplotlib', 'torch._dynamo', 'scipy.signal') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "import torch, torch._dynamo\n"
        "assert torch._dynamo.OptimizedModule.__module__.startswith('torch._dynamo')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], env=ENV, cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


# ---- 4b. a preemption signal is answered in bounded time, even during a step that does not end ------

_SLOW_STEP = """
import os, sys, time
from mdm.diffusion.mdlm import MDLM
loss = MDLM.loss
def slow(self, *a, **k):
    if os.path.exists(sys.argv[1]):
        time.sleep(600)  # a step that would not end before the scheduler's kill
    return loss(self, *a, **k)
MDLM.loss = slow
from mdm.cli import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.parametrize("second", [None, signal.SIGINT])
def test_signal_during_a_step_that_does_not_end_exits_in_bounded_time(tmp_path, second):
    runs, flag = tmp_path / "runs", tmp_path / "slow"
    extra = ["train.max_steps=2000", "train.ckpt_every=2", "train.val_every=1000", "train.preempt_grace_s=3"]
    run = _run_dir(runs, *extra)
    argv = [
        sys.executable,
        "-c",
        _SLOW_STEP,
        str(flag),
        "train",
        str(DEBUG_YAML),
        f"train.runs_dir={runs}",
        *extra,
    ]
    proc = subprocess.Popen(
        argv, env=ENV, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    _wait_for_step(run, proc, 3)
    flag.touch()  # the steps from now on hang
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT if second else signal.SIGTERM)
    t0 = time.monotonic()
    if second:
        time.sleep(0.5)
        proc.send_signal(second)
    out, err = proc.communicate(timeout=120)
    waited = time.monotonic() - t0
    if second:  # a second Ctrl-C: at once, the last periodic checkpoint kept
        assert proc.returncode == 130 and "second SIGINT: stopping now" in err, err
    else:
        assert proc.returncode == PREEMPTED_EXIT, err
        assert "did not end within train.preempt_grace_s=3 s" in err
    assert waited < 600 and "Traceback" not in err
    step = torch.load(run.last_ckpt, weights_only=True)["global_step"]
    assert step % 2 == 0 and step <= max(_losses(run))  # the last periodic checkpoint, intact


def test_checkpoint_saves_do_not_log_the_weights_only_default(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    train(load([DEBUG_YAML], [f"train.runs_dir={tmp_path}", "train.max_steps=2", "train.ckpt_every=1"]))
    assert "weights_only" not in caplog.text
