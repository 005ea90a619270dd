"""Errors and warnings raised by the scaling package."""

from __future__ import annotations

import warnings


class ScalingInputError(ValueError):
    """Bad input to a fit: the message names the file, column, row or setting at fault."""


class ScalingWarning(UserWarning):
    """A fit ran but its result deserves suspicion (edge of range, ill-determined, skipped part)."""


def warn(message: str, sink: list[str] | None = None) -> None:
    """Record ``message`` in ``sink`` (a result's ``warnings`` list) and emit a ScalingWarning."""
    if sink is not None:
        sink.append(message)
    warnings.warn(message, ScalingWarning, stacklevel=3)
