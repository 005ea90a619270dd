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


class AllocationLaws:
    """Shared by fits that end in two power laws N_opt(C), D_opt(C) (Approaches 1 and 2).

    Subclasses (dataclasses) hold ``n_law`` and ``d_law``.
    """

    n_law: PowerLaw
    d_law: PowerLaw

    @property
    def a(self) -> float:
        return self.n_law.exponent

    @property
    def b(self) -> float:
        return self.d_law.exponent

    @property
    def G(self) -> float:
        """N_opt = G (C/6)^a."""
        return self.n_law.coef * 6.0**self.a

    @property
    def objective(self) -> float:
        """Residual sum of squares of the ln N_opt–ln C line."""
        return self.n_law.sse

    def n_opt(self, c: np.ndarray | float) -> np.ndarray:
        return self.n_law(c)

    def d_opt(self, c: np.ndarray | float) -> np.ndarray:
        return self.d_law(c)

    def allocation_dict(self, approach: int) -> dict:
        """The JSON keys every approach reports; the L(N, D) parameters are Approach 3's alone (None)."""
        return {
            "approach": approach,
            "E": None,
            "A": None,
            "B": None,
            "alpha": None,
            "beta": None,
            "a": self.a,
            "b": self.b,
            "G": self.G,
            "k_N": self.n_law.coef,
            "k_D": self.d_law.coef,
            "objective": self.objective,
        }
