"""Approach 2: IsoFLOP profiles (Hoffmann et al. 2022, §3.2).

For each compute budget C, fit a parabola to loss against x = ln N over the runs at that budget,
L(x) ≈ p0 + p1 (x − x̄) + p2 (x − x̄)²; its vertex x* = x̄ − p1/(2 p2) gives N_opt(C) = e^{x*} and
L_min(C). D_opt(C) is read off the budget's own ln D–ln N line at x* (exactly C/(6 N_opt) when
C = 6ND, and right for any other FLOP convention the flops column uses). Then least squares in
log–log space gives N_opt = k_N C^a and D_opt = k_D C^b; G = k_N·6^a so that N_opt = G (C/6)^a.

Flags per budget: ``edge`` (the vertex lies outside the sampled sizes, or the lowest observed loss
is at the smallest or largest size: the minimum was not bracketed) and ``flat`` (curvature not
significantly positive: p2 ≤ 0, or p2 < 2 standard errors when there are > 3 sizes).

A budget is *used* in the power laws only when its parabola opens upward AND its vertex lies
within its sampled sizes: a vertex outside them is an extrapolation of the parabola, and N_opt
there can be anything (a near-flat parabola puts it decades away). The bootstrap
(:func:`scaling.bootstrap.bootstrap_approach2`) applies the same rule to every resample and fits
the same budgets, so the point estimate and its interval describe the same estimator. (Before,
the point fit used extrapolated vertices that the bootstrap dropped: on a demo-like sweep this
gave a = 1.16 with a 95% interval [−2.98, 0.38].)

FLOP convention: with C from the ``flops`` column and N the non-embedding parameter count,
C/(N·D) is not a constant at small widths (the output head and attention add FLOPs not counted in
N), so a + b ≠ 1 even for a perfect fit: with s = d ln(C/D)/d ln N across the runs (C/D = FLOPs
per token), D_opt = C/fpt(N_opt) gives b = 1 − s·a, i.e. a + b = 1 + a(1 − s).
``flops_per_token_slope`` reports s and :mod:`scaling.checks` compares a + b with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from scaling.errors import ScalingInputError, warn
from scaling.powerlaw import AllocationLaws, PowerLaw, fit_power_law
from scaling.results import group_budgets, validate

MIN_SIZES = 3  # a parabola has 3 coefficients
MIN_BUDGETS = 2  # a power law has 2


@dataclass
class BudgetFit:
    budget: float  # C (geometric mean of the runs' compute)
    n_runs: int
    n_sizes: int
    coeffs: tuple[float, float, float]  # (p0, p1, p2) in (x − x_center)
    x_center: float
    n_opt: float
    d_opt: float
    loss_min: float
    edge: bool
    flat: bool
    used: bool
    note: str = ""
    bracketed: bool = False  # the vertex lies within the sampled sizes

    def parabola(self, n: np.ndarray) -> np.ndarray:
        """The fitted parabola's loss at sizes ``n``."""
        x = np.log(np.asarray(n, dtype=np.float64)) - self.x_center
        p0, p1, p2 = self.coeffs
        return p0 + p1 * x + p2 * x * x


@dataclass
class Approach2Fit(AllocationLaws):
    budgets: list[BudgetFit]
    n_law: PowerLaw  # N_opt = k_N C^a
    d_law: PowerLaw  # D_opt = k_D C^b
    n_points: int
    warnings: list[str] = field(default_factory=list)
    intervals: dict[str, dict[str, float]] | None = None
    bootstrap: dict[str, Any] | None = None
    samples: dict[str, np.ndarray] | None = field(default=None, repr=False)  # bootstrap draws, not in JSON
    budget_intervals: dict[str, list[list[float]]] | None = None  # per budget: [lo, hi]
    flops_per_token_slope: float = 1.0  # s = d ln(C/D) / d ln N over the runs (1 when C = k·N·D)

    def tokens_per_param(self, c: np.ndarray | float) -> np.ndarray:
        return self.d_opt(c) / self.n_opt(c)

    def budget_table(self) -> pd.DataFrame:
        return pd.DataFrame(
            [
                {
                    "budget": b.budget,
                    "n_runs": b.n_runs,
                    "n_sizes": b.n_sizes,
                    "n_opt": b.n_opt,
                    "d_opt": b.d_opt,
                    "tokens_per_param": b.d_opt / b.n_opt if b.n_opt > 0 else np.nan,
                    "loss_min": b.loss_min,
                    "edge": b.edge,
                    "flat": b.flat,
                    "used": b.used,
                    "bracketed": b.bracketed,
                    "note": b.note,
                }
                for b in self.budgets
            ]
        )

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            **self.allocation_dict(2),
            "objective_note": "residual sum of squares of ln N_opt vs ln C",
            "n_points": self.n_points,
            "a_plus_b": self.a + self.b,
            "flops_per_token_slope": self.flops_per_token_slope,
            "a_plus_b_expected": 1.0 + self.a * (1.0 - self.flops_per_token_slope),
            "budgets": self.budget_table().to_dict(orient="records"),
            "warnings": list(self.warnings),
        }
        if self.intervals is not None:
            d["intervals"] = self.intervals
            d["bootstrap"] = self.bootstrap
            d["budget_intervals"] = self.budget_intervals
        return d


def fit_budget(
    n: np.ndarray,
    d: np.ndarray,
    loss: np.ndarray,
    c: float,
    size_range: tuple[float, float] | None = None,
) -> BudgetFit:
    """Fit one isoFLOP parabola (n, d, loss: runs at budget c). Needs ≥ 3 distinct sizes.

    The budget is usable (``used``) when the parabola opens upward and its vertex lies within
    the sampled sizes (otherwise N_opt would be an extrapolation: a near-flat parabola can put
    it at 10^25). ``size_range`` (N_min, N_max): the sizes the sweep sampled at this budget, for
    that test, when ``n`` is a bootstrap resample (the design is fixed: a resample that happens
    to miss the largest size does not make the sweep's range smaller); default: n's range."""
    x = np.log(n)
    n_sizes = int(np.unique(x).size)
    if n_sizes < MIN_SIZES:
        return BudgetFit(c, int(n.size), n_sizes, (np.nan,) * 3, np.nan, np.nan, np.nan, np.nan, False, False, False,
                         f"only {n_sizes} distinct size(s); a parabola needs {MIN_SIZES}")  # fmt: skip
    xc = float(x.mean())
    z = x - xc
    X = np.stack([np.ones_like(z), z, z * z], axis=1)  # (n, 3)
    coef, *_ = np.linalg.lstsq(X, loss, rcond=None)
    p0, p1, p2 = (float(v) for v in coef)
    flat = not p2 > 0
    if not flat and n.size > MIN_SIZES:
        resid = loss - X @ coef
        s2 = float(resid @ resid) / (n.size - 3)
        cov = s2 * np.linalg.pinv(X.T @ X)
        se2 = float(np.sqrt(max(cov[2, 2], 0.0)))
        flat = p2 < 2.0 * se2
    if p2 > 0:
        zv = -p1 / (2.0 * p2)
        lmin = p0 + p1 * zv + p2 * zv * zv
    else:  # no minimum: report the best observed run, flagged
        zv = float(z[np.argmin(loss)])
        lmin = float(loss.min())
    xv = xc + zv
    # ln D against ln N within the budget, evaluated at the vertex
    slope, icpt = np.polyfit(x, np.log(d), 1)
    with np.errstate(over="ignore"):  # a flat parabola's vertex can lie decades away
        d_opt = float(np.exp(icpt + slope * xv))
    i_min = int(np.argmin(loss))
    lo_x, hi_x = (
        (x.min(), x.max()) if size_range is None else np.log(np.asarray(size_range, dtype=np.float64))
    )
    bracketed = bool(lo_x <= xv <= hi_x)
    edge = bool(not bracketed or x[i_min] == x.min() or x[i_min] == x.max())
    note = []
    if p2 > 0 and not bracketed:
        note.append(
            "minimum at the edge of the sampled sizes: the vertex lies outside them (N_opt would be an extrapolation)"
        )
    elif edge:
        note.append("minimum at the edge of the sampled sizes")
    if flat:
        note.append("flat parabola (curvature not significantly > 0)")
    return BudgetFit(
        budget=float(c),
        n_runs=int(n.size),
        n_sizes=n_sizes,
        coeffs=(p0, p1, p2),
        x_center=xc,
        n_opt=float(np.exp(xv)),
        d_opt=d_opt,
        loss_min=float(lmin),
        edge=edge,
        flat=flat,
        used=bool(p2 > 0 and bracketed),
        note="; ".join(note),
        bracketed=bracketed,
    )


def flops_per_token_slope(n: np.ndarray, d: np.ndarray, c: np.ndarray) -> float:
    """s = slope of ln(C/D) (FLOPs per token) against ln N over the runs; 1 when C = k·N·D."""
    x = np.log(np.asarray(n, dtype=np.float64))
    if np.ptp(x) == 0:
        return 1.0
    return float(
        np.polyfit(x, np.log(np.asarray(c, dtype=np.float64) / np.asarray(d, dtype=np.float64)), 1)[0]
    )


def budget_labels(df: pd.DataFrame, rtol: float = 0.25) -> np.ndarray:
    """Budget labels: a ``budget`` column if present, else runs grouped by compute within rtol."""
    if "budget" in df.columns:
        _, lab = np.unique(np.asarray(df["budget"], dtype=np.float64), return_inverse=True)
        return lab
    return group_budgets(df["flops"].to_numpy(), rtol=rtol)


def fit_approach2(
    df: pd.DataFrame,
    *,
    budget_rtol: float = 0.25,
    drop_edge: bool = False,
    labels: np.ndarray | None = None,
    quiet: bool = False,
    source: str = "results",
) -> Approach2Fit:
    """IsoFLOP fit of one family's runs (columns params, tokens, loss, flops or C = 6ND).

    Budgets with < 3 distinct sizes, a downward parabola or a vertex outside the sampled sizes
    are skipped (with a warning); ``drop_edge`` also skips budgets whose lowest observed loss is
    at the smallest or largest size. Raises ScalingInputError when
    fewer than 2 budgets remain.
    """
    df = validate(df, source=source).df if not {"flops", "name", "family"} <= set(df.columns) else df
    if labels is None:
        labels = budget_labels(df, budget_rtol)
    n_all, d_all = df["params"].to_numpy(float), df["tokens"].to_numpy(float)
    l_all, c_all = df["loss"].to_numpy(float), df["flops"].to_numpy(float)
    msgs: list[str] = []
    fits = []
    for lab in np.unique(labels):
        m = labels == lab
        c = float(np.exp(np.log(c_all[m]).mean()))
        bf = fit_budget(n_all[m], d_all[m], l_all[m], c)
        if bf.used and drop_edge and bf.edge:
            bf.used = False
        fits.append(bf)
        if not bf.used:
            msgs.append(f"Approach 2: budget C={c:.3g} skipped: {bf.note or 'edge minimum (drop_edge)'}")
        elif bf.edge or bf.flat:
            msgs.append(f"Approach 2: budget C={c:.3g}: {bf.note}; its N_opt is poorly determined")
    used = [b for b in fits if b.used]
    if len(used) < MIN_BUDGETS:
        desc = ", ".join(
            f"C={b.budget:.3g} ({b.n_sizes} sizes{'' if b.used else ', unusable'})" for b in fits
        )
        raise ScalingInputError(
            f"{source}: Approach 2 needs at least {MIN_BUDGETS} compute budgets with >= {MIN_SIZES} distinct model "
            f"sizes and an upward parabola each; found {len(used)} usable of {len(fits)}: {desc}"
        )
    cs = np.array([b.budget for b in used])
    n_law = fit_power_law(cs, np.array([b.n_opt for b in used]))
    d_law = fit_power_law(cs, np.array([b.d_opt for b in used]))
    if len(used) == MIN_BUDGETS:
        msgs.append(
            "Approach 2: only 2 usable budgets: the power laws pass exactly through them (no residual check)"
        )
    fit = Approach2Fit(
        budgets=fits,
        n_law=n_law,
        d_law=d_law,
        n_points=int(sum(b.n_runs for b in used)),
        flops_per_token_slope=flops_per_token_slope(n_all, d_all, c_all),
    )
    for m_ in msgs:
        if quiet:
            fit.warnings.append(m_)
        else:
            warn(m_, fit.warnings)
    return fit
