"""Bootstrap over runs: seeded resampling with replacement → standard errors and percentile intervals.

* Approach 3: resampling runs with replacement is the same as weighting each run's Huber term by
  how often it was drawn, so all resamples are refitted at once by the batched L-BFGS (one problem
  per resample × start). Each resample starts from a reduced set of starts — the distinct local
  optima the full-grid fit found (best first), padded with grid points — not the full 4,500-point
  grid (``starts="full"`` does that, 4,500 × more work). ``n_switched`` counts resamples whose best
  end point did not come from the full fit's optimum (a sign of several competing minima).
* Approach 2: runs are resampled within each budget (stratified), so every budget keeps its
  number of runs. Each resample refits exactly the budgets the point fit used, with the point
  fit's rule (upward parabola, vertex within the budget's sampled sizes: with ~5 sizes a
  resample often holds 3 distinct ones, and a near-flat parabola through them would put N_opt
  anywhere; the range is the sweep's design, not the sizes a resample happened to draw). A
  resample in which one of them fails is a failed draw, not refitted on fewer budgets; the
  intervals are conditional on success, and ``failed_share`` says how often that was not so.
  Each budget's draw is redrawn until it holds >= 3 distinct sizes (a draw with fewer cannot
  have a parabola; with 5 sizes ~10% of plain draws are such).
* Approach 1: whole runs (training curves) are resampled, and each drawn curve's noise is redrawn:
  the curve becomes its trend (smoothed over a tenth of its points) plus its own residuals about
  that trend resampled with replacement, then goes through the point fit's smoothing and envelope.
  Without the second step a curve's noise would be frozen into every resample and an envelope
  picked by noise would look certain.

Intervals are percentile intervals at ``level`` (default 95%); SE is the standard deviation of the
bootstrap draws (ddof = 1).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from scaling.approach1 import Approach1Fit, fit_approach1, smooth_curve, window
from scaling.approach2 import MIN_BUDGETS, Approach2Fit, budget_labels, fit_budget
from scaling.approach3 import N_PARAMS, Approach3Fit, _center, init_grid, objective_and_grad
from scaling.errors import ScalingInputError
from scaling.forms import allocation_arrays
from scaling.lbfgs import minimize_batched
from scaling.powerlaw import fit_power_law


def summarize(samples: dict[str, np.ndarray], level: float = 0.95) -> dict[str, dict[str, float]]:
    """{name: {se, se_robust, lo, hi, median, level}} from bootstrap draws (non-finite draws ignored).

    se is the draws' standard deviation; se_robust = 1.4826·MAD is its outlier-proof counterpart
    (a few resamples with an extrapolated vertex can blow up the plain SE of G or A)."""
    q = (1.0 - level) / 2.0
    out = {}
    for k, v in samples.items():
        v = np.asarray(v, dtype=np.float64)
        v = v[np.isfinite(v)]
        if v.size < 2:
            out[k] = {
                "se": np.nan,
                "se_robust": np.nan,
                "lo": np.nan,
                "hi": np.nan,
                "median": np.nan,
                "level": level,
            }
            continue
        with np.errstate(all="ignore"):  # A, B draws can be astronomically large
            lo, med, hi = np.quantile(v, [q, 0.5, 1.0 - q])
            se, se_robust = float(v.std(ddof=1)), float(1.4826 * np.median(np.abs(v - med)))
        out[k] = {
            "se": se,
            "se_robust": se_robust,
            "lo": float(lo),
            "hi": float(hi),
            "median": float(med),
            "level": level,
        }
    return out


def resample_counts(n_points: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot, n_points) multiplicities of each point in each resample of size n_points."""
    idx = rng.integers(0, n_points, size=(n_boot, n_points))
    flat = (idx + n_points * np.arange(n_boot)[:, None]).ravel()
    return np.bincount(flat, minlength=n_boot * n_points).reshape(n_boot, n_points).astype(np.float64)


def _begin(n_boot: int, seed: int) -> tuple[float, np.random.Generator]:
    """(start time, seeded generator) of a bootstrap of ``n_boot`` resamples (at least 2)."""
    if n_boot < 2:
        raise ScalingInputError(f"bootstrap count must be >= 2, got {n_boot}")
    return time.perf_counter(), np.random.default_rng(seed)


def _each_resample(n_boot: int, draw: Callable[[], dict[str, Any]]) -> dict[str, np.ndarray]:
    """The resampling loop: ``draw()`` refits one resample (drawing from the caller's generator) and returns
    its values by name (NaN where it failed); the draws stacked per name, (n_boot, ...)."""
    rows = [draw() for _ in range(n_boot)]
    return {k: np.array([row[k] for row in rows], dtype=np.float64) for k in rows[0]}


def _attach(fit, samples, intervals, t0: float, n_boot: int, seed: int, level: float, unit: str, **more):
    """Set ``fit.samples``, ``fit.intervals`` and ``fit.bootstrap`` (n, seed, level, unit, ``more``, seconds)."""
    fit.samples, fit.intervals = samples, intervals
    fit.bootstrap = {"n": int(n_boot), "seed": int(seed), "level": level, "unit": unit, **more}
    fit.bootstrap["seconds"] = time.perf_counter() - t0
    return fit


def reduced_starts(fit: Approach3Fit, k: int, seed: int = 0, min_dist: float = 0.05) -> np.ndarray:
    """Up to ``k`` starts: the full fit's distinct end points (best first), padded with grid points."""
    order = np.argsort(fit.start_objectives)
    chosen: list[np.ndarray] = []
    for i in order:
        th = fit.start_thetas[i]
        if not np.isfinite(fit.start_objectives[i]) or not np.isfinite(th).all():
            break
        if all(np.max(np.abs(th[2:] - c[2:])) > min_dist for c in chosen):
            chosen.append(th)
        if len(chosen) >= k:
            break
    if len(chosen) < k:
        grid = init_grid()
        pick = np.random.default_rng(seed).choice(grid.shape[0], size=k - len(chosen), replace=False)
        chosen.extend(grid[pick])
    return np.array(chosen)


def bootstrap_approach3(
    fit: Approach3Fit,
    n: np.ndarray,
    d: np.ndarray,
    loss: np.ndarray,
    *,
    n_boot: int = 200,
    seed: int = 0,
    starts: str | np.ndarray = "reduced",
    n_starts: int = 8,
    level: float = 0.95,
    max_iter: int = 1000,
    chunk: int = 20000,
) -> Approach3Fit:
    """Attach bootstrap draws, intervals and metadata to ``fit`` (returned). See module docstring."""
    t0, rng = _begin(n_boot, seed)
    x_raw, y_raw, ll = (
        np.log(np.asarray(n, float)),
        np.log(np.asarray(d, float)),
        np.log(np.asarray(loss, float)),
    )
    xm, ym = float(x_raw.mean()), float(y_raw.mean())
    x, y = x_raw - xm, y_raw - ym
    W = resample_counts(x.size, n_boot, rng)  # (R, n)
    if isinstance(starts, str):
        if starts == "reduced":
            s0 = reduced_starts(fit, n_starts, seed=seed)
        elif starts == "full":
            s0 = init_grid()
        else:
            raise ScalingInputError(f"bootstrap starts must be 'reduced', 'full' or an array; got '{starts}'")
    else:
        s0 = np.atleast_2d(np.asarray(starts, float))
    K = s0.shape[0]
    s0c = _center(s0, xm, ym, -1.0)
    best_theta = np.full((n_boot, N_PARAMS), np.nan)
    best_f = np.full(n_boot, np.inf)
    best_k = np.full(n_boot, -1)
    per_chunk = max(1, chunk // K)
    for r0 in range(0, n_boot, per_chunk):
        rs = np.arange(r0, min(n_boot, r0 + per_chunk))
        prob_r = np.repeat(rs, K)  # (len(rs)·K,) resample of each problem
        th0 = np.tile(s0c, (rs.size, 1))

        def fg(
            th: np.ndarray, rows: np.ndarray, prob_r: np.ndarray = prob_r
        ) -> tuple[np.ndarray, np.ndarray]:
            return objective_and_grad(th, x, y, ll, fit.delta, W[prob_r[rows]])

        res = minimize_batched(fg, th0, max_iter=max_iter, groups=prob_r - rs[0])  # prune within a resample
        f = np.where(np.isfinite(res.f), res.f, np.inf).reshape(rs.size, K)
        kbest = np.argmin(f, axis=1)
        best_f[rs] = f[np.arange(rs.size), kbest]
        best_k[rs] = kbest
        best_theta[rs] = res.x.reshape(rs.size, K, N_PARAMS)[np.arange(rs.size), kbest]
    ok = np.isfinite(best_f)
    th = _center(best_theta, xm, ym, +1.0)
    alpha, beta = th[:, 3], th[:, 4]
    with np.errstate(all="ignore"):
        A, B, E = np.exp(th[:, 0]), np.exp(th[:, 1]), np.exp(th[:, 2])
        a, b, G = allocation_arrays(E, A, B, alpha, beta)
    samples = {"E": E, "A": A, "B": B, "alpha": alpha, "beta": beta, "a": a, "b": b, "G": G}
    samples = {k: np.where(ok, v, np.nan) for k, v in samples.items()}
    samples["theta"] = np.where(ok[:, None], th, np.nan)  # (R, 5), for the gap and plots
    intervals = summarize({k: v for k, v in samples.items() if k != "theta"}, level)
    return _attach(
        fit,
        samples,
        intervals,
        t0,
        n_boot,
        seed,
        level,
        "runs (rows), resampled with replacement",
        starts="full grid"
        if (isinstance(starts, str) and starts == "full")
        else f"{K} starts per resample (distinct optima of the full-grid fit, padded with grid points)",
        n_failed=int((~ok).sum()),
        n_switched=int(((best_k != 0) & ok).sum())
        if isinstance(starts, str) and starts == "reduced"
        else None,
    )


def bootstrap_approach2(
    fit: Approach2Fit,
    df: pd.DataFrame,
    *,
    n_boot: int = 200,
    seed: int = 0,
    level: float = 0.95,
    budget_rtol: float = 0.25,
) -> Approach2Fit:
    """Stratified (within-budget) bootstrap of the isoFLOP fit; attaches draws and intervals.

    Every resample refits the budgets the point fit used, with the point fit's rule (upward
    parabola, ≥ 3 distinct sizes, vertex within the budget's sampled sizes), and fits the power
    laws over all of them. A
    resample in which one of them fails the rule is a failed draw (counted in ``n_failed``, per
    budget in ``failed_by_budget``); it is not refitted on the remaining budgets, which would be
    a different estimator (the cause of point estimates outside their own intervals)."""
    t0, rng = _begin(n_boot, seed)
    labels = budget_labels(df, budget_rtol)
    uniq = np.unique(labels)
    if uniq.size != len(fit.budgets):
        raise ScalingInputError(
            f"bootstrap: {uniq.size} budget groups in the data but the fit has {len(fit.budgets)}; "
            "use the same budget_rtol for the fit and its bootstrap"
        )
    n, d = df["params"].to_numpy(float), df["tokens"].to_numpy(float)
    loss = df["loss"].to_numpy(float)
    groups = [np.flatnonzero(labels == lab) for lab in uniq]
    used = [j for j, b in enumerate(fit.budgets) if b.used]
    cb = np.array([fit.budgets[j].budget for j in used])
    nb = len(fit.budgets)
    failed_by = np.zeros(nb, dtype=int)
    ranges = {j: (float(n[groups[j]].min()), float(n[groups[j]].max())) for j in used}

    def draw() -> dict[str, Any]:
        out: dict[str, Any] = {k: np.nan for k in ("a", "b", "k_N", "k_D")}
        out.update({k: np.full(nb, np.nan) for k in ("n_opt", "d_opt", "loss_min")})
        ok = True
        for j in used:
            g = _draw_sizes(groups[j], n, rng)
            bf = fit_budget(n[g], d[g], loss[g], fit.budgets[j].budget, size_range=ranges[j])
            if bf.used:
                out["n_opt"][j], out["d_opt"][j], out["loss_min"][j] = bf.n_opt, bf.d_opt, bf.loss_min
            else:
                failed_by[j] += 1
                ok = False
        if ok and len(used) >= MIN_BUDGETS:
            nl = fit_power_law(cb, out["n_opt"][used])
            dl = fit_power_law(cb, out["d_opt"][used])
            out["a"], out["b"], out["k_N"], out["k_D"] = nl.exponent, dl.exponent, nl.coef, dl.coef
        return out

    draws = _each_resample(n_boot, draw)
    a_s, b_s, kn_s, kd_s = draws["a"], draws["b"], draws["k_N"], draws["k_D"]
    ok = np.isfinite(a_s)
    G_s = kn_s * 6.0**a_s
    samples = {
        "a": a_s,
        "b": b_s,
        "G": G_s,
        "k_N": kn_s,
        "k_D": kd_s,
        **{k: np.where(ok[:, None], draws[k], np.nan) for k in ("n_opt", "d_opt", "loss_min")},
    }
    intervals = summarize({"a": a_s, "b": b_s, "G": G_s, "a_plus_b": a_s + b_s}, level)
    q = (1.0 - level) / 2.0
    with np.errstate(all="ignore"):
        fit.budget_intervals = {k: _nanq(samples[k], q).tolist() for k in ("n_opt", "d_opt", "loss_min")}
    return _attach(
        fit,
        samples,
        intervals,
        t0,
        n_boot,
        seed,
        level,
        "runs resampled with replacement within each budget; every resample refits the budgets the "
        "point fit used (upward parabola, vertex within the budget's sampled sizes) and fails if one of them "
        "does not; each budget's draw is redrawn until it holds >= 3 distinct sizes",
        bracketed_share=[
            float(1.0 - failed_by[j] / n_boot) if fit.budgets[j].used else None for j in range(nb)
        ],
        failed_by_budget=failed_by.tolist(),
        n_failed=int((~ok).sum()),
        failed_share=float((~ok).mean()),
    )


def _draw_sizes(group: np.ndarray, n: np.ndarray, rng: np.random.Generator, tries: int = 1000) -> np.ndarray:
    """Runs of one budget drawn with replacement, redrawn until they hold >= 3 distinct sizes (a
    parabola's minimum; with 5 sizes ~10% of plain draws hold fewer, which says nothing about the
    data): the resample is conditional on being fittable at all."""
    for _ in range(tries):
        g = group[rng.integers(0, group.size, group.size)]
        if np.unique(n[g]).size >= 3:
            return g
    return g


def _nanq(v: np.ndarray, q: float) -> np.ndarray:
    """(n_budgets, 2) lower/upper percentiles over draws, NaN where a budget never fitted."""
    out = np.full((v.shape[1], 2), np.nan)
    for j in range(v.shape[1]):
        col = v[:, j][np.isfinite(v[:, j])]
        if col.size >= 2:
            out[j] = np.quantile(col, [q, 1.0 - q])
    return out


def bootstrap_approach1(
    fit: Approach1Fit,
    history: pd.DataFrame,
    *,
    n_boot: int = 200,
    seed: int = 0,
    level: float = 0.95,
    **kw: Any,
) -> Approach1Fit:
    """Bootstrap of the envelope fit over whole runs (training curves), each with its noise redrawn
    (trend + its residuals resampled; the module docstring says why)."""
    t0, rng = _begin(n_boot, seed)
    names = history["name"].unique()
    parts: dict[str, tuple[pd.DataFrame, np.ndarray, np.ndarray]] = {}
    for k, g in history.groupby("name", sort=False):
        g = g.sort_values("flops") if "flops" in g.columns else g.sort_values("tokens")
        loss = g["loss"].to_numpy(float)
        trend = smooth_curve(loss, window(loss.size, "auto"))
        parts[k] = (g, trend, loss - trend)

    def redrawn(k: str) -> pd.DataFrame:
        g, trend, resid = parts[k]
        g = g.copy()
        g["loss"] = trend + resid[rng.integers(0, resid.size, resid.size)]
        return g

    def draw() -> dict[str, float]:
        pick = names[rng.integers(0, names.size, names.size)]
        uniq = np.unique(pick)  # a duplicated curve does not change a minimum
        try:
            f = fit_approach1(pd.concat([redrawn(k) for k in uniq], ignore_index=True), quiet=True, **kw)
        except ScalingInputError:  # one size only, or a redrawn loss <= 0
            return {"a": np.nan, "b": np.nan, "G": np.nan}
        return {"a": f.a, "b": f.b, "G": f.G}

    samples = _each_resample(n_boot, draw)
    return _attach(
        fit,
        samples,
        summarize(samples, level),
        t0,
        n_boot,
        seed,
        level,
        "runs (whole training curves) resampled with replacement, each curve's residuals about its trend redrawn",
        n_failed=int((~np.isfinite(samples["a"])).sum()),
    )
