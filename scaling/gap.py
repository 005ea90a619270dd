"""Two-family comparison: the compute multiplier one family needs to match another's loss.

With compute-optimal frontiers L*_f(C) = min_{6ND=C} L_f(N, D) (closed form, scaling.forms), the
multiplier of family f against reference family r at compute C is

    M(C) = C_f / C   where   L*_f(C_f) = L*_r(C),

i.e. f needs M(C)× the compute to reach the loss r reaches with C (M > 1: f is less
compute-efficient). L*_f decreases monotonically to E_f, so C_f is found by bisection in ln C;
M = inf when L*_r(C) ≤ E_f (f never gets there). Bootstrap intervals pair the two families'
independent bootstrap draws (draw i with draw i).

``empirical_multiplier`` does the same with the Approach-2 isoFLOP minima instead of a fitted
form: L_min,f(C) is interpolated linearly in ln C between f's budgets (no extrapolation).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from scaling.approach2 import Approach2Fit
from scaling.forms import optimal_loss_arrays

LN_SPAN = 60.0  # search C_f within C·e^{±60}


def multiplier_arrays(
    theta_f: np.ndarray, theta_r: np.ndarray, c: np.ndarray, iters: int = 200
) -> np.ndarray:
    """M(C) for paired parameter rows theta_f, theta_r (R, 5) at computes c (K,) → (R, K).

    NaN where a row has α ≤ 0 or β ≤ 0 or the root is not bracketed within e^{±60}; inf where
    the reference's loss is at or below family f's irreducible loss E_f.
    """
    theta_f = np.atleast_2d(theta_f)
    theta_r = np.atleast_2d(theta_r)
    c = np.asarray(c, dtype=np.float64)
    target = optimal_loss_arrays(theta_r, c)  # (R, K)
    e_f = np.exp(theta_f[:, 2])[:, None]  # (R, 1)
    lc = np.log(c)[None, :] + np.zeros_like(target)  # (R, K)
    lo, hi = lc - LN_SPAN, lc + LN_SPAN
    f_lo = optimal_loss_arrays(theta_f, np.exp(lo)) - target  # > 0 wanted (worse at less compute)
    f_hi = optimal_loss_arrays(theta_f, np.exp(hi)) - target  # < 0 wanted
    bracketed = (f_lo > 0) & (f_hi < 0)
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        fm = optimal_loss_arrays(theta_f, np.exp(mid)) - target
        pos = fm > 0
        lo = np.where(pos, mid, lo)
        hi = np.where(pos, hi, mid)
    m = np.exp(0.5 * (lo + hi) - lc)
    ok_rows = ((theta_f[:, 3] > 0) & (theta_f[:, 4] > 0) & (theta_r[:, 3] > 0) & (theta_r[:, 4] > 0))[:, None]
    m = np.where(bracketed & ok_rows, m, np.nan)
    return np.where((target <= e_f) & ok_rows, np.inf, m)


@dataclass
class GapResult:
    family: str
    reference: str
    c: np.ndarray  # (K,)
    multiplier: np.ndarray  # (K,) from the point fits
    lo: np.ndarray | None = None  # (K,) percentile interval from the bootstrap
    hi: np.ndarray | None = None
    level: float | None = None
    n_boot: int = 0
    frac_unreachable: np.ndarray | None = None  # (K,) share of draws with M = inf
    empirical: list[dict[str, float]] = field(default_factory=list)  # Approach-2 based, per budget

    def to_dict(self) -> dict[str, Any]:
        rows = []
        for i in range(self.c.size):
            row = {"C": float(self.c[i]), "multiplier": float(self.multiplier[i])}
            if self.lo is not None and self.hi is not None:
                row.update(lo=float(self.lo[i]), hi=float(self.hi[i]))
            if self.frac_unreachable is not None:
                row["frac_unreachable"] = float(self.frac_unreachable[i])
            rows.append(row)
        return {
            "family": self.family,
            "reference": self.reference,
            "definition": f"compute {self.family} needs to reach {self.reference}'s compute-optimal loss at C, divided by C "
            "(Approach-3 frontiers, C = 6ND)",
            "level": self.level,
            "n_boot": self.n_boot,
            "curve": rows,
            "empirical_approach2": self.empirical,
        }


def compute_multiplier(
    theta_f: np.ndarray,
    theta_r: np.ndarray,
    c: np.ndarray,
    *,
    family: str = "f",
    reference: str = "r",
    samples_f: np.ndarray | None = None,
    samples_r: np.ndarray | None = None,
    level: float = 0.95,
) -> GapResult:
    """M(C) at computes ``c`` from point fits θ (5,), with bootstrap intervals when both families'
    bootstrap θ draws (R, 5) are given."""
    c = np.atleast_1d(np.asarray(c, dtype=np.float64))
    point = multiplier_arrays(np.asarray(theta_f)[None], np.asarray(theta_r)[None], c)[0]
    out = GapResult(family=family, reference=reference, c=c, multiplier=point)
    if samples_f is not None and samples_r is not None:
        R = min(len(samples_f), len(samples_r))
        sf, sr = np.asarray(samples_f)[:R], np.asarray(samples_r)[:R]
        good = np.isfinite(sf).all(axis=1) & np.isfinite(sr).all(axis=1)
        m = multiplier_arrays(sf[good], sr[good], c)  # (R', K)
        q = (1.0 - level) / 2.0
        lo = np.full(c.size, np.nan)
        hi = np.full(c.size, np.nan)
        for k in range(c.size):
            col = m[:, k][~np.isnan(m[:, k])]  # inf kept: "never reaches" is a real outcome
            if col.size >= 2:
                lo[k], hi[k] = np.quantile(col, [q, 1.0 - q], method="inverted_cdf")
        out.lo, out.hi, out.level, out.n_boot = lo, hi, level, int(good.sum())
        out.frac_unreachable = np.isinf(m).mean(axis=0) if m.size else None
    return out


def empirical_multiplier(fit_f: Approach2Fit, fit_r: Approach2Fit) -> list[dict[str, float]]:
    """Approach-2 version at the reference's budgets: interpolate family f's isoFLOP minima
    L_min,f(C) (linear in ln C, within f's budget range only; NaN outside)."""
    bf = sorted((b for b in fit_f.budgets if b.used), key=lambda b: b.budget)
    lc_f = np.log([b.budget for b in bf])
    l_f = np.array([b.loss_min for b in bf])
    out = []
    monotone = bool(np.all(np.diff(l_f) < 0))
    for b in fit_r.budgets:
        if not b.used:
            continue
        m = np.nan
        if monotone and l_f.min() <= b.loss_min <= l_f.max():
            lc = np.interp(b.loss_min, l_f[::-1], lc_f[::-1])
            m = float(np.exp(lc) / b.budget)
        out.append({"C": b.budget, "reference_loss_min": b.loss_min, "multiplier": m})
    return out
