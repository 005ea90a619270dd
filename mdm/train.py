"""``mdm train``: build everything from the config, run Lightning's Trainer, keep the run dir honest.

Re-running the same command resumes from ``checkpoints/last.ckpt`` (model, optimizer, scheduler, EMA,
RNG states, data position); a completed run is skipped. ``summary.json`` is written last, atomically.

Reliability: everything the config decides is checked before the run directory is made (a refused
start leaves no directory behind), including the memory and step-time limits of :mod:`mdm.limits`;
one process at a time trains a run directory (:mod:`mdm.lock`); a corrupt or truncated checkpoint is
set aside as ``<name>.corrupt`` and the run resumes from the newest periodic checkpoint that loads
(metrics rows past it dropped); SIGINT/SIGTERM/SIGUSR1 checkpoint and exit 75 (:mod:`mdm.preempt`);
a failed run's ``summary.json`` records its error.
"""

from __future__ import annotations

import json
import logging
import os
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

import torch

from mdm.config import Config, to_yaml
from mdm.derived import Derived
from mdm.errors import debug, is_user_error
from mdm.io import atomic_write_text, read_jsonl
from mdm.limits import check_run, check_synthetic
from mdm.loading import CheckpointError, load_checkpoint_safely  # noqa: F401  (CheckpointError re-exported)
from mdm.lock import RunLock, is_rank_zero_process
from mdm.module import LitDiffusion
from mdm.pl import pl  # Lightning without its optional heavy imports
from mdm.preempt import Preempted, PreemptionCallback, stop_on_signal
from mdm.rundir import RunDir, git_sha
from mdm.runprep import prepare_run


class PositionedLoader:
    """Wraps a data loader so each batch carries the loader position *after* it (key ``_pos``).

    The module stores the position of the last batch it consumed, which is what a checkpoint must
    hold (Lightning prefetches batches, so the loader itself is ahead of the training step).
    """

    def __init__(self, inner: Any):
        self.inner = inner
        self._pending: dict | None = None

    def load_state_dict(self, state: dict | None) -> None:
        self._pending = state

    def __iter__(self):
        if self._pending is not None:
            self.inner.load_state_dict(self._pending)
            self._pending = None
        for batch in self.inner:
            batch = dict(batch)
            batch["_pos"] = self.inner.state_dict()
            yield batch


class RunCallback(pl.Callback):
    """Writes metrics.jsonl rows and atomic checkpoints (``last.ckpt`` + periodic)."""

    def __init__(self, run: RunDir, cfg: Config, derived: Derived):
        self.run, self.cfg, self.derived = run, cfg, derived
        self._last_time: float | None = None

    def _write(self, trainer: pl.Trainer, row: dict) -> None:
        if trainer.is_global_zero:
            with open(self.run.metrics, "a") as f:
                f.write(json.dumps(row) + "\n")

    def on_train_start(self, trainer, pl_module):
        self._last_time = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        now = time.perf_counter()
        stats = pl_module.last_step_stats
        step = trainer.global_step
        dt = now - (self._last_time or now)
        self._last_time = now
        self._write(
            trainer,
            {
                "step": step,
                "tokens": step * self.derived.tokens_per_step,
                "loss": stats["loss"],
                "lr": stats["lr"],
                "tokens_per_s": stats["tokens"] / dt if dt > 0 else None,
                "wall_s": pl_module.wall_seconds(),
                **stats.get("metrics", {}),
            },
        )
        if step % self.cfg.train.ckpt_every == 0 or step >= self.derived.max_steps:
            self.save(trainer, step)
            self._last_time = time.perf_counter()  # do not bill checkpoint I/O to the next step

    def on_validation_end(self, trainer, pl_module):
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        step = trainer.global_step
        self._write(
            trainer,
            {"step": step, "tokens": step * self.derived.tokens_per_step, "val_loss": pl_module.val_loss},
        )
        self._last_time = time.perf_counter()

    def save(self, trainer: pl.Trainer, step: int) -> None:
        ckdir = self.run.checkpoints
        tmp = ckdir / ".last.ckpt.tmp"
        # weights_only=False: the full training state (Lightning's "model weights only" flag, not
        # torch.load's; our checkpoints are loaded with torch.load(weights_only=True)).
        trainer.save_checkpoint(tmp, weights_only=False)
        if trainer.is_global_zero:
            if self.cfg.train.keep_periodic:
                periodic = ckdir / f"step-{step:07d}.ckpt"
                if periodic.exists():
                    periodic.unlink()
                os.link(tmp, periodic)
            os.replace(tmp, self.run.last_ckpt)
        trainer.strategy.barrier()


def _set_aside(path: Path) -> Path:
    """Rename a bad checkpoint to ``<name>.corrupt`` (``.corrupt.N`` if taken); never delete it."""
    dest, n = path.with_name(path.name + ".corrupt"), 0
    while dest.exists():
        n += 1
        dest = path.with_name(f"{path.name}.corrupt.{n}")
    os.replace(path, dest)
    return dest


def find_resume_checkpoint(run: RunDir) -> tuple[Path, int] | None:
    """The newest checkpoint that loads (``last.ckpt``, then ``step-*.ckpt`` newest first) and its step.

    Checkpoints that do not load are renamed to ``*.corrupt`` (by rank 0), saying so. None when the
    run has no checkpoint at all; CheckpointError, saying what to do, when it has only corrupt ones.
    """
    ck = run.checkpoints
    candidates = ([run.last_ckpt] if run.last_ckpt.exists() else []) + sorted(
        ck.glob("step-*.ckpt"), reverse=True
    )
    for path in candidates:
        try:
            state = load_checkpoint_safely(path)
        except CheckpointError as e:
            if is_rank_zero_process():
                print(f"[mdm] {e}; set aside as {_set_aside(path).name}")
            continue
        step = int(state.get("global_step", 0))
        del state
        return path, step
    corrupt = sorted(ck.glob("*.corrupt*")) if ck.exists() else []
    if corrupt:
        names = ", ".join(p.name for p in corrupt)
        raise CheckpointError(
            f"no checkpoint of {run.path} loads ({names} set aside as corrupt). To restart the run from "
            f"step 0: rm {ck}/*.corrupt* {run.metrics} ; or put a good checkpoint back as {run.last_ckpt}"
        )
    return None


def _precision(cfg: Config) -> str:
    if cfg.train.precision != "auto":
        return cfg.train.precision
    return (
        "bf16-mixed"
        if torch.cuda.is_available() and cfg.train.accelerator in ("auto", "gpu", "cuda")
        else "32-true"
    )


def _strategy(cfg: Config):
    """``train.strategy``: auto | ddp as Lightning names them; fsdp: FSDP2 over every rank (mdm/fsdp.py)."""
    if cfg.train.strategy != "fsdp":
        return cfg.train.strategy
    from mdm.fsdp import fsdp_strategy

    return fsdp_strategy(cfg.train.devices * cfg.train.num_nodes)


def _loggers(cfg: Config, run: RunDir):
    if not cfg.logging.wandb:
        return False
    os.environ.setdefault("WANDB_MODE", "offline")  # never asks for a login
    from lightning.pytorch.loggers import WandbLogger

    return WandbLogger(project=cfg.logging.wandb_project, name=run.name, save_dir=str(run.path), offline=True)


def _truncate_metrics(run: RunDir, step: int) -> None:
    """After a resume from ``step``, drop rows written after that checkpoint (no duplicated rows)."""
    rows = [r for r in read_jsonl(run.metrics) if r.get("step", 0) <= step]
    atomic_write_text(run.metrics, "".join(json.dumps(r) + "\n" for r in rows))


def train(cfg: Config) -> dict[str, Any]:
    """Train (or resume, or skip) the run the config describes; return its summary."""
    run = RunDir.for_config(cfg)
    if run.is_complete():
        print(f"[mdm] {run.path} is complete; skipping (delete summary.json to retrain)")
        return run.read_summary()
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    rank0 = is_rank_zero_process()  # DDP ranks share rank 0's lock
    fresh = not run.path.exists()
    # A second writer of an existing run stops here, before any work.
    lock = RunLock(run.path).acquire() if rank0 and not fresh else None
    try:
        # Everything else that can refuse the start runs before a new run directory is made.
        check_synthetic(cfg)
        p = prepare_run(cfg)
        check_run(cfg, p["counts"], p["derived"], p["vocab"].size)
        if fresh:
            run.path.mkdir(parents=True, exist_ok=True)
            if rank0:
                lock = RunLock(run.path).acquire()  # two fresh starts at once: the loser leaves it alone
        try:
            return _train(cfg, run, p)
        except BaseException:
            if fresh and lock is not None:
                _remove_if_empty(run)  # a start that failed before anything ran
            raise
    finally:
        if lock is not None:
            lock.release()


def _remove_if_empty(run: RunDir) -> None:
    """Remove a run directory made by a start that failed before anything ran (no metrics, summary or
    checkpoint): only its lock, its config and an empty checkpoints/ are there."""
    left = {p.name for p in run.path.iterdir()} - {"train.lock", "checkpoints", "config.yaml"}
    if left or (run.checkpoints.exists() and any(run.checkpoints.iterdir())):
        return
    if run.checkpoints.exists():
        run.checkpoints.rmdir()
    run.config.unlink(missing_ok=True)
    (run.path / "train.lock").unlink(missing_ok=True)
    try:
        run.path.rmdir()
    except OSError:
        pass


def _train(cfg: Config, run: RunDir, p: dict[str, Any]) -> dict[str, Any]:
    vocab, counts, derived = p["vocab"], p["counts"], p["derived"]
    resume = find_resume_checkpoint(run) if run.checkpoints.exists() else None
    run.checkpoints.mkdir(exist_ok=True)
    atomic_write_text(run.config, to_yaml(cfg))
    print(f"[mdm] run {run.path}")
    print(f"[mdm] derived: {json.dumps(derived.as_dict())}")
    print(
        f"[mdm] params total={counts.params_total:,} non-embedding={counts.params_non_embedding:,} "
        f"flops/token={counts.flops_per_token:.4g}"
    )
    base_summary = {
        "run_name": run.name,
        "objective": cfg.objective.name,
        "family": cfg.objective.name,
        "data": cfg.data.name,
        "data_mixture": [vars(m) for m in cfg.data.mixture] or None,  # data.mixture (mdm/data/mixture.py)
        "data_dir": str(p["data_dir"]),
        "params_total": counts.params_total,
        "params_non_embedding": counts.params_non_embedding,
        "params_embedding": counts.params_embedding,
        "n_matmul": counts.n_matmul,
        "flops_per_token": counts.flops_per_token,
        "flop_convention": counts.as_dict()["flop_convention"],
        "depth": counts.n_layer,
        "d_model": counts.d_model,
        "seq_len": counts.seq_len,
        "derived": derived.as_dict(),
        "git_sha": git_sha(),
    }

    ckpt_path = None
    if resume is not None:
        ckpt_path, step = resume
        if is_rank_zero_process():
            _truncate_metrics(run, step)
        print(f"[mdm] resuming from {ckpt_path} (step {step})")
    elif run.metrics.exists() and is_rank_zero_process():
        run.metrics.unlink()  # rows from an attempt that never checkpointed (there is no checkpoint at all)

    pl.seed_everything(cfg.train.seed, workers=True, verbose=False)
    module = LitDiffusion(
        cfg, vocab, derived, objective=p["objective"], loader_factory=loader_factory(cfg, derived)
    )
    if not debug():  # Lightning's banners (GPU/TPU available, tips); our own line says what is used
        logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)
        warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
    trainer = pl.Trainer(
        accelerator=cfg.train.accelerator,
        devices=cfg.train.devices,
        num_nodes=cfg.train.num_nodes,
        strategy=_strategy(cfg),
        precision=_precision(cfg),
        max_steps=derived.max_steps,
        val_check_interval=cfg.train.val_every,
        check_val_every_n_epoch=None,
        limit_val_batches=cfg.train.val_batches,
        num_sanity_val_steps=0,
        logger=_loggers(cfg, run),
        callbacks=[
            saver := RunCallback(run, cfg, derived),
            PreemptionCallback(saver.save, cfg.train.preempt_grace_s),  # preempt.py
        ],
        enable_checkpointing=False,
        enable_progress_bar=cfg.logging.progress_bar,
        enable_model_summary=False,
        default_root_dir=str(run.path),
        use_distributed_sampler=False,
    )
    if trainer.is_global_zero:
        print(
            f"[mdm] device {trainer.strategy.root_device} x {trainer.world_size}, precision {_precision(cfg)}"
        )
    try:
        trainer.fit(module, ckpt_path=ckpt_path, weights_only=True)
        with stop_on_signal(trainer.global_step):
            trainer.validate(module, verbose=False)
        val_loss = float(module.val_loss)
        summary = {
            **base_summary,
            "status": "completed",
            "steps": trainer.global_step,
            "tokens": trainer.global_step * derived.tokens_per_step,
            "flops": trainer.global_step * derived.tokens_per_step * counts.flops_per_token,
            "val_loss": val_loss,
            "val_ppl_bound": float(torch.tensor(val_loss).exp()),
            "val_protocol": f"{cfg.train.val_batches} validation batches, EMA weights, eval.seed={cfg.eval.seed}",
            "wall_s": module.wall_seconds(),
        }
    except BaseException as e:
        if trainer.is_global_zero and not isinstance(e, Preempted):  # preempted: checkpointed, not failed
            run.write_summary(
                {
                    **base_summary,
                    "status": "failed",
                    "error": f"{type(e).__name__}: {e}",
                    "user_error": is_user_error(e),
                    "traceback": traceback.format_exc(limit=20),
                    "steps": trainer.global_step,
                }
            )
        raise
    if trainer.is_global_zero:
        run.write_summary(summary)
        print(
            f"[mdm] done: val_loss={summary['val_loss']:.4f} nats/token, "
            f"val_ppl_bound={summary['val_ppl_bound']:.2f}, wall={summary['wall_s']:.1f}s"
        )
    return summary


def loader_factory(cfg: Config, derived: Derived):
    """(split, rank, world_size) -> loader; train loaders are wrapped to report their position."""
    from mdm.data.datamodule import build_loader

    def make(split: str, rank: int, world: int):
        train = split == "train"
        batch = derived.per_device_batch if train else cfg.eval.batch_size
        loader = build_loader(
            cfg.data, split, cfg.model.seq_len, batch, cfg.train.seed, rank, world, train=train
        )
        return PositionedLoader(loader) if train else loader

    return make
