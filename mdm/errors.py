"""One error style for the CLI: a user error is one or a few lines naming the thing and the fix, exit 2.

A *user error* is bad input, missing or corrupt data, a corrupt checkpoint, a run directory in use,
or a run that does not fit the machine. It is an instance of :class:`UserError` or of one of the
library's own error classes listed in :data:`USER_ERRORS` (by qualified name, so that ``mdm --help``
need not import torch to know them). Anything else is a bug: its traceback is printed and the exit
code is 1. ``MDM_DEBUG=1`` prints the traceback of user errors too.
"""

from __future__ import annotations

import os

# Exit codes of mdm commands (0 = done).
BUG_EXIT = 1  # an unexpected exception: its traceback is printed
USER_ERROR_EXIT = 2  # like argparse: "you asked for something that cannot be done"
PREEMPTED_EXIT = 75  # EX_TEMPFAIL: interrupted or preempted after checkpointing; re-run to resume
ABORTED_EXIT = 130  # a second Ctrl-C: stopped at once; the re-run resumes from the last checkpoint

# Error classes of the library that always mean "the input is wrong" (module.qualname).
USER_ERRORS = frozenset(
    {
        "mdm.errors.UserError",
        "mdm.config.ConfigError",
        "mdm.data.meta.DataError",
        "mdm.diffusion.encoders.EncoderError",
        "mdm.sweep.spec.SweepError",
        "mdm.eval.tokenizer.VocabMismatchError",
        "mdm.eval.genppl.EvaluatorError",
        "mdm.eval.benchmarks.BenchmarkError",
        "mdm.eval.protocols.ProtocolError",
        "mdm.sampling.base.SamplerMismatchError",
        "mdm.sampling.condition.ConditionError",
        "mdm.module.NonFiniteLossError",
        "scaling.errors.ScalingInputError",
        # out of memory is the input's fault (model, batch or sequence too large for the device)
        "builtins.MemoryError",
        "torch.OutOfMemoryError",
        "torch.cuda.OutOfMemoryError",
    }
)


class UserError(Exception):
    """Base class of errors whose message is the whole story (no traceback needed)."""


def is_user_error(e: BaseException) -> bool:
    return any(f"{c.__module__}.{c.__qualname__}" in USER_ERRORS for c in type(e).__mro__)


def debug() -> bool:
    return os.environ.get("MDM_DEBUG", "") not in ("", "0")


def one_line(e: BaseException, limit: int = 5) -> str:
    """The message of ``e`` cut to ``limit`` lines (a user error is a few lines, never a traceback)."""
    text = str(e).strip() or type(e).__name__
    if isinstance(e, MemoryError) or type(e).__name__ == "OutOfMemoryError":
        text = f"out of memory: {text} (reduce model.seq_len, train.micro_batch or the model size)"
    lines = text.splitlines()
    return "\n".join(lines[:limit] + (["..."] if len(lines) > limit else []))
