"""One writer per run directory: an exclusive ``flock`` on ``<run_dir>/train.lock``, held while training.

The lock is an OS-level lock on an open file, so a crashed or killed process never leaves it stuck
(the kernel drops it with the file descriptor). The holder writes its PID into the file, which the
refusal names. Only the process that owns the run (global rank 0) locks: ranks started by a launcher
(``LOCAL_RANK``/``RANK``/``SLURM_PROCID``/``NODE_RANK`` > 0) share their rank 0's lock.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from mdm.errors import UserError

LOCK_NAME = "train.lock"
_RANK_VARS = ("RANK", "LOCAL_RANK", "SLURM_PROCID", "NODE_RANK", "GROUP_RANK")


class RunLockedError(UserError):
    pass


def is_rank_zero_process() -> bool:
    return all(os.environ.get(v, "0") in ("", "0") for v in _RANK_VARS)


def holder_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


class RunLock:
    """``with RunLock(run_dir):`` — raises RunLockedError naming the holder's PID when taken."""

    def __init__(self, run_dir: Path, retry_s: float = 0.5):
        self.path = Path(run_dir) / LOCK_NAME
        self.retry_s = retry_s
        self.fd: int | None = None

    def acquire(self) -> RunLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + self.retry_s  # a status probe may hold it for an instant
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    pid = holder_pid(self.path)
                    who = f"process {pid}" if pid else "another process"
                    raise RunLockedError(
                        f"run directory {self.path.parent} is in use by {who} (lock {self.path}); "
                        f"wait for it to finish or stop it{f' (kill {pid})' if pid else ''}, then re-run"
                    ) from None
                time.sleep(0.05)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # drops the lock; the file stays (unlinking it would race a new holder)
            self.fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def lock_held(run_dir: Path) -> bool:
    """True when a process holds the run directory's training lock."""
    path = Path(run_dir) / LOCK_NAME
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False
