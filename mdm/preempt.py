"""Preemption: SIGUSR1 / SIGTERM -> save ``last.ckpt`` at the next step boundary -> exit for requeue.

Slurm sends SIGUSR1 ``--signal=USR1@<s>`` seconds before a time limit (and ``scancel --signal=USR1``
simulates it); schedulers send SIGTERM before killing a preempted job. The handler only records the
signal. At the end of the current optimizer step (after the metrics row of that step is written) every
rank agrees on it (a max all-reduce when there are several ranks), the run saves ``checkpoints/last.ckpt``
through :meth:`mdm.train.RunCallback.save` (the file a re-run resumes from, truncating metrics rows past
its step) and raises :class:`Preempted`, a ``SystemExit`` with code :data:`PREEMPTED_EXIT`. ``mdm train``
then writes no summary (the run is not failed) and exits 75; the sweep's sbatch script requeues the task
on that code (``scontrol requeue``), the local launcher reports the run as interrupted.

The handlers replace Lightning's own SIGTERM handling for the duration of ``fit`` and, because a SIGUSR1
handler is already installed, Lightning's SLURM auto-requeue (which writes ``hpc_ckpt_*.ckpt`` files that
our resume would not read) never installs itself.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable

import lightning.pytorch as pl
import torch

PREEMPTED_EXIT = 75  # EX_TEMPFAIL: "try again"
SIGNALS = (signal.SIGUSR1, signal.SIGTERM)


class Preempted(SystemExit):
    """Raised after the checkpoint is saved; exits the process with :data:`PREEMPTED_EXIT`."""

    def __init__(self, signum: int, step: int):
        super().__init__(PREEMPTED_EXIT)
        self.signum, self.step = signum, step

    def __str__(self) -> str:
        return f"preempted by {signal.Signals(self.signum).name} at step {self.step}"


class PreemptionCallback(pl.Callback):
    """Records SIGUSR1/SIGTERM; at the next train batch end saves via ``save(trainer, step)`` and raises."""

    def __init__(self, save: Callable[[pl.Trainer, int], None]):
        self.save = save
        self.signum: int | None = None
        self._previous: dict[int, object] = {}
        self._install()  # early, so a signal during setup is not fatal (and Lightning sees a USR1 handler)

    def _handler(self, signum: int, frame) -> None:
        if self.signum is None:
            self.signum = signum
            print(
                f"[mdm] received {signal.Signals(signum).name}: checkpointing at the end of this step",
                file=sys.stderr,
            )

    def _install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for s in SIGNALS:
            previous = signal.signal(s, self._handler)
            self._previous.setdefault(s, previous)

    def on_train_start(self, trainer, pl_module) -> None:
        self._install()  # Lightning installed its SIGTERM handler when fit started: take it back

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        flag = self.signum or 0
        if trainer.world_size > 1:  # all ranks must stop at the same step (the save is collective)
            t = torch.tensor(float(flag), device=trainer.strategy.root_device)
            flag = int(trainer.strategy.reduce(t, reduce_op="max").item())
        if not flag:
            return
        step = trainer.global_step
        self.save(trainer, step)
        if trainer.is_global_zero:
            print(
                f"[mdm] preempted at step {step}: saved last.ckpt; exiting with code {PREEMPTED_EXIT} to be requeued",
                file=sys.stderr,
            )
        raise Preempted(flag, step)

    def teardown(self, trainer, pl_module, stage) -> None:
        if threading.current_thread() is threading.main_thread():
            for s, h in self._previous.items():
                signal.signal(s, h)  # type: ignore[arg-type]
        self._previous = {}
