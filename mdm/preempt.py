"""Preemption and Ctrl-C: SIGUSR1 / SIGTERM / SIGINT -> save ``last.ckpt`` at the next step boundary -> exit 75.

Slurm sends SIGUSR1 ``--signal=USR1@<s>`` seconds before a time limit (and ``scancel --signal=USR1``
simulates it); schedulers send SIGTERM before killing a preempted job; a user presses Ctrl-C (SIGINT).
The handler only records the signal. At the end of the current optimizer step (after the metrics row of
that step is written) every rank agrees on it (a max all-reduce when there are several ranks), the run
saves ``checkpoints/last.ckpt`` through :meth:`mdm.train.RunCallback.save` (the file a re-run resumes
from, truncating metrics rows past its step) and raises :class:`Preempted`, a ``SystemExit`` with code
:data:`PREEMPTED_EXIT`. ``mdm train`` then writes no summary (the run is interrupted, not failed:
``mdm sweep status`` lists it as ``interrupted`` and ``mdm sweep run`` resumes it) and exits 75; the
sweep's sbatch script requeues the task on that code (``scontrol requeue``), the local launcher reports
the run as interrupted.

Bounded time: the signal is also seen by a watchdog thread (through :func:`signal.set_wakeup_fd`, so even
while the main thread is inside a long tensor operation). If the step in progress has not ended
``train.preempt_grace_s`` seconds after the signal, the process exits 75 at once without a new
checkpoint: the re-run resumes from the last periodic ``last.ckpt``. A second Ctrl-C exits at once (code
130), also keeping the last checkpoint. (Start-up refuses runs whose step could not end within the grace
period: :mod:`mdm.limits`.)

The handlers replace Lightning's own SIGTERM/SIGINT handling for the duration of ``fit`` and, because a
SIGUSR1 handler is already installed, Lightning's SLURM auto-requeue (which writes ``hpc_ckpt_*.ckpt``
files that our resume would not read) never installs itself.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch

from mdm.errors import ABORTED_EXIT, PREEMPTED_EXIT  # 75 (checkpoint saved) and 130 (second Ctrl-C)
from mdm.pl import pl

SIGNALS = (signal.SIGUSR1, signal.SIGTERM, signal.SIGINT)


class Preempted(SystemExit):
    """Raised after the checkpoint is saved; exits the process with :data:`PREEMPTED_EXIT`."""

    def __init__(self, signum: int, step: int):
        super().__init__(PREEMPTED_EXIT)
        self.signum, self.step = signum, step

    def __str__(self) -> str:
        what = "interrupted" if self.signum == signal.SIGINT else "preempted"
        return f"{what} by {signal.Signals(self.signum).name} at step {self.step}"


def _say(msg: str) -> None:
    print(f"[mdm] {msg}", file=sys.stderr, flush=True)


@contextmanager
def stop_on_signal(step: int) -> Iterator[None]:
    """After ``fit`` (the final validation, whose inputs are all in the last checkpoint): a signal stops
    at once with :class:`Preempted` (exit 75); the re-run goes straight to the validation."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame) -> None:
        _say(
            f"received {signal.Signals(signum).name} during the final validation: stopping (exit {PREEMPTED_EXIT})"
        )
        raise Preempted(signum, step)

    previous = {s: signal.signal(s, handler) for s in SIGNALS}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


class PreemptionCallback(pl.Callback):
    """Records SIGUSR1/SIGTERM/SIGINT; at the next train batch end saves via ``save(trainer, step)`` and raises."""

    def __init__(self, save: Callable[[pl.Trainer, int], None], grace_s: float = 300.0):
        self.save = save
        self.grace_s = grace_s
        self.signum: int | None = None
        self._previous: dict[int, object] = {}
        self._step_ended = threading.Event()  # set at the step boundary that answers the signal
        self._wakeup: tuple[socket.socket, socket.socket] | None = None
        self._previous_wakeup = -1
        self._install()  # early, so a signal during setup is not fatal (and Lightning sees a USR1 handler)

    def _handler(self, signum: int, frame) -> None:
        if self.signum is None:
            self.signum = signum
            _say(
                f"received {signal.Signals(signum).name}: checkpointing at the end of this step "
                f"(at most {self.grace_s:g} s; Ctrl-C again to stop at once)"
            )
        elif signum == signal.SIGINT:
            _say(
                f"second SIGINT: stopping now; the re-run resumes from the last checkpoint (exit {ABORTED_EXIT})"
            )
            os._exit(ABORTED_EXIT)

    def _watchdog(self, sock: socket.socket) -> None:
        """Runs in a daemon thread: a signal's byte arrives at once, even during a long C call."""
        ours = {int(s) for s in SIGNALS}
        while True:
            try:
                data = sock.recv(64)
            except OSError:
                return
            if not data:  # closed at teardown
                return
            if any(b in ours for b in data):
                break
        if self._step_ended.wait(self.grace_s):
            return
        _say(
            f"the step in progress did not end within train.preempt_grace_s={self.grace_s:g} s of the signal: "
            f"exiting without a new checkpoint (exit {PREEMPTED_EXIT}); the re-run resumes from the last one"
        )
        os._exit(PREEMPTED_EXIT)

    def _install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for s in SIGNALS:
            previous = signal.signal(s, self._handler)
            self._previous.setdefault(s, previous)
        if self._wakeup is None and self.grace_s > 0:
            r, w = socket.socketpair()
            w.setblocking(False)
            self._wakeup = (r, w)
            self._previous_wakeup = signal.set_wakeup_fd(w.fileno(), warn_on_full_buffer=False)
            threading.Thread(target=self._watchdog, args=(r,), daemon=True, name="mdm-preempt").start()

    def on_train_start(self, trainer, pl_module) -> None:
        self._install()  # Lightning installed its SIGTERM handler when fit started: take it back

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        flag = self.signum or 0
        if trainer.world_size > 1:  # all ranks must stop at the same step (the save is collective)
            t = torch.tensor(float(flag), device=trainer.strategy.root_device)
            flag = int(trainer.strategy.reduce(t, reduce_op="max").item())
        if not flag:
            return
        self._step_ended.set()  # the watchdog stands down: the save below is bounded by the disk
        step = trainer.global_step
        self.save(trainer, step)
        if trainer.is_global_zero:
            what = "interrupted" if flag == signal.SIGINT else "preempted"
            _say(
                f"{what} at step {step}: saved last.ckpt; exiting with code {PREEMPTED_EXIT} "
                f"(re-run the same command to resume)"
            )
        raise Preempted(flag, step)

    def on_exception(self, trainer, pl_module, exception) -> None:
        self.teardown(trainer, pl_module, "fit")  # Lightning skips teardown hooks after an exception

    def teardown(self, trainer, pl_module, stage) -> None:
        if threading.current_thread() is threading.main_thread():
            for s, h in self._previous.items():
                signal.signal(s, h)  # type: ignore[arg-type]
            if self._wakeup is not None:
                signal.set_wakeup_fd(self._previous_wakeup)
                self._step_ended.set()
                for sock in self._wakeup:
                    try:
                        sock.shutdown(socket.SHUT_RDWR)  # wakes the watchdog's recv
                    except OSError:
                        pass
                    sock.close()
                self._wakeup = None
        self._previous = {}
