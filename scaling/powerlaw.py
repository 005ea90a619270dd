"""Least-squares power laws y = k·C^p fitted as straight lines in log–log space."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PowerLaw:
    """y = coef · C^exponent; ``sse`` is the residual sum of squares in natural-log units."""

    coef: float
    exponent: float
    sse: float
    n: int

    def __call__(self, c: np.ndarray | float) -> np.ndarray:
        with np.errstate(over="ignore", invalid="ignore"):
            return self.coef * np.asarray(c, dtype=np.float64) ** self.exponent


def fit_power_law(c: np.ndarray, y: np.ndarray) -> PowerLaw:
    """Fit log y = log k + p log C by ordinary least squares (needs ≥ 2 distinct C)."""
    lc = np.log(np.asarray(c, dtype=np.float64))
    ly = np.log(np.asarray(y, dtype=np.float64))
    if lc.size < 2 or np.ptp(lc) == 0:
        raise ValueError("a power law needs at least 2 distinct compute values")
    X = np.stack([np.ones_like(lc), lc], axis=1)  # (n, 2)
    (k, p), *_ = np.linalg.lstsq(X, ly, rcond=None)
    resid = ly - (k + p * lc)
    with np.errstate(over="ignore"):
        coef = float(np.exp(k))
    return PowerLaw(coef=coef, exponent=float(p), sse=float(resid @ resid), n=int(lc.size))
