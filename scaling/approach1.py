"""Approach 1: the lower envelope of training curves (Hoffmann et al. 2022, §3.1).

Each run's history gives loss against compute C_t (C = 6·N·tokens_t, or the flops column). On a
log-spaced grid of C, the envelope picks, at every C, the run with the lowest loss (each run's
curve is linearly interpolated in ln C, and only inside the range it covers). The chosen runs'
N and tokens at that C give N_opt(C) and D_opt(C); least squares in log–log space gives
N_opt = k_N C^a and D_opt = k_D C^b (G = k_N·6^a as in Approach 2).

The envelope only takes the model sizes that were trained, so N_opt(C) is a staircase: the
exponent is meaningful when the sizes are dense and the envelope crosses several of them.

Noise. Per-step training losses are one batch each (for a diffusion objective also one draw of
times and masks): their noise can exceed the gap between neighbouring sizes, and then the envelope
picks winners by chance. Each curve's per-point noise is estimated from its second differences
(robust: their median absolute value) and the smoothed curve's noise from the smoother's weights.
At each compute of the grid, the runs whose loss is within twice the noise of the winner's are
contenders; ``noise_share`` is the median over the grid of the contenders' range of ln N, as a
fraction of the range of ln N the envelope crosses (0: noise never opens the choice; 1: noise
could pick any of the envelope's sizes; scaling.checks flags the fit above MAX_NOISE_SHARE). The
bootstrap (scaling.bootstrap.bootstrap_approach1) redraws that noise too.

Schedules. A run whose learning rate decays to the end of its own horizon is, mid-schedule, worse
than a run trained to that compute (its rate has not come down yet), so an envelope made of
mid-schedule points favours the sizes whose runs end there: small ones. Hoffmann et al. trained
four horizons per size for this reason. With an ``lr`` column, ``mid_schedule_share`` is the share
of the envelope's grid won by a point whose learning rate had not yet done DECAYED of its decay
(scaling.checks flags the fit above MAX_MID_SCHEDULE_SHARE); an isoFLOP sweep (one horizon per
run, every run ending at its budget) is such a design between its budgets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.signal import savgol_coeffs, savgol_filter

from scaling.errors import ScalingInputError, warn
from scaling.powerlaw import AllocationLaws, PowerLaw, fit_power_law


@dataclass
class Approach1Fit(AllocationLaws):
    grid: np.ndarray  # (K,) compute values of the envelope
    envelope_loss: np.ndarray  # (K,)
    envelope_run: np.ndarray  # (K,) name of the winning run
    envelope_n: np.ndarray  # (K,)
    envelope_d: np.ndarray  # (K,)
    n_law: PowerLaw
    d_law: PowerLaw
    n_runs: int
    n_points: int  # history rows used
    noise_share: float  # median ln-N range within 2 noise sd of the winner, over the envelope's ln-N range
    curve_noise: float  # median over runs of the smoothed curves' per-point noise sd (loss units)
    mid_schedule_share: (
        float | None
    )  # share of the grid won by a point before its run's LR decayed; None: no lr
    smooth: int | str = 0
    warnings: list[str] = field(default_factory=list)
    intervals: dict[str, dict[str, float]] | None = None
    bootstrap: dict[str, Any] | None = None
    samples: dict[str, np.ndarray] | None = field(default=None, repr=False)  # bootstrap draws, not in JSON

    def to_dict(self) -> dict[str, Any]:
        sizes = sorted(set(self.envelope_n.tolist()))
        d: dict[str, Any] = {
            **self.allocation_dict(1),
            "objective_note": "residual sum of squares of ln N_opt vs ln C over the envelope grid",
            "n_points": self.n_points,
            "n_runs": self.n_runs,
            "envelope_sizes": sizes,
            "smooth": self.smooth,
            "noise_share": self.noise_share,
            "curve_noise": self.curve_noise,
            "mid_schedule_share": self.mid_schedule_share,
            "compute_range": [float(self.grid[0]), float(self.grid[-1])],
            "warnings": list(self.warnings),
        }
        if self.intervals is not None:
            d["intervals"] = self.intervals
            d["bootstrap"] = self.bootstrap
        return d


Smooth = int | str  # a Savitzky-Golay window in logged points, or "auto"


def window(n: int, smooth: Smooth) -> int:
    """The odd Savitzky–Golay window used on a curve of ``n`` points: ``smooth`` points, or for
    "auto" a tenth of the curve (at least 5); 1 (no smoothing) when it does not fit."""
    w = max(5, n // 10) if smooth == "auto" else int(smooth)
    w = min(w, n - (1 - n % 2))  # ≤ n, odd when n is
    if w % 2 == 0:
        w -= 1
    return w if w >= 3 else 1


def smooth_curve(v: np.ndarray, w: int) -> np.ndarray:
    """Savitzky–Golay smoothing (local quadratic over ``w`` points, fitted, not padded, at the ends
    so the curve's last points are not biased); ``w`` < 3: unchanged."""
    if w < 3:
        return v
    return savgol_filter(v, w, polyorder=2, mode="interp")


def point_noise(v: np.ndarray) -> float:
    """Per-point noise sd of a curve = smooth trend + independent noise, from its second differences
    (variance 6σ² for white noise; the trend's curvature adds little between neighbouring points);
    robust to outliers through the median absolute value (1.4826 · MAD = σ for a normal)."""
    if v.size < 3:
        return 0.0
    d2 = v[2:] - 2.0 * v[1:-1] + v[:-2]
    return float(1.4826 * np.median(np.abs(d2)) / np.sqrt(6.0))


def _gain(w: int) -> float:
    """sd of a smoothed point over sd of a raw point (the centre weights' L2 norm)."""
    return 1.0 if w < 3 else float(np.linalg.norm(savgol_coeffs(w, 2)))


@dataclass
class _Curve:
    name: str
    n: float
    lc: np.ndarray  # ln C, ascending
    loss: np.ndarray  # smoothed
    lt: np.ndarray  # ln tokens
    sd: float  # noise sd of a smoothed point
    decayed: np.ndarray | None  # 1 where the learning rate has done DECAYED of its decay, else 0; None: no lr


DECAYED = 0.75  # a point counts as end-of-schedule once its learning rate has done this share of its decay


def _decayed(lr: np.ndarray) -> np.ndarray:
    """1.0 at the points past the peak whose learning rate has come down ``DECAYED`` of the way from its
    peak to its final value, else 0.0 (warm-up and the stable/early part of a decay). A constant rate
    has nothing to decay: every point counts as decayed."""
    peak, final = lr.max(), lr[-1]
    if not peak > final:
        return np.ones_like(lr)
    past = np.arange(lr.size) >= int(np.argmax(lr))
    return (past & ((peak - lr) >= DECAYED * (peak - final))).astype(float)


def _curves(hist: pd.DataFrame, smooth: Smooth = 0) -> list[_Curve]:
    """Per run, sorted by compute: the smoothed loss, its noise and (with an ``lr`` column) its decay."""
    out = []
    lr_known = "lr" in hist.columns and bool(np.isfinite(pd.to_numeric(hist["lr"], errors="coerce")).all())
    for name, g in hist.groupby("name", sort=False):
        n_vals = g["params"].unique()
        if n_vals.size != 1:
            raise ScalingInputError(
                f"run '{name}' has several parameter counts {n_vals.tolist()[:3]} in its history"
            )
        g = g.sort_values("flops")
        loss = g["loss"].to_numpy(float)
        w = window(loss.size, smooth)
        out.append(
            _Curve(
                name=str(name),
                n=float(n_vals[0]),
                lc=np.log(g["flops"].to_numpy(float)),
                loss=smooth_curve(loss, w),
                lt=np.log(g["tokens"].to_numpy(float)),
                sd=point_noise(loss) * _gain(w),
                decayed=_decayed(g["lr"].to_numpy(float)) if lr_known else None,
            )
        )
    return out


def _noise_share(losses: np.ndarray, win: np.ndarray, sizes: np.ndarray, sd: np.ndarray) -> float:
    """How much of the envelope's range of sizes the noise leaves open: at each grid column, the ln-N
    range of the runs whose (smoothed) loss is within twice the sd of its difference from the
    winner's; the median over the grid, over the ln-N range the envelope spans. ``losses`` (R, K),
    inf = no data. 0: noise never makes another size a contender; ≥ 1: noise could pick any size."""
    cols = np.arange(losses.shape[1])
    lead = losses - losses[win, cols][None, :]  # (R, K) ≥ 0
    near = np.isfinite(lead) & (lead < 2.0 * np.sqrt(sd[:, None] ** 2 + sd[win][None, :] ** 2))
    ln = np.log(sizes)[:, None]
    width = np.where(near, ln, -np.inf).max(axis=0) - np.where(near, ln, np.inf).min(axis=0)
    span = np.log(sizes[win].max() / sizes[win].min())
    return float(np.median(width) / span) if span > 0 else float("inf")


def fit_approach1(
    history: pd.DataFrame,
    *,
    n_grid: int = 200,
    min_cover: int = 2,
    smooth: Smooth = 0,
    quiet: bool = False,
    source: str = "histories",
) -> Approach1Fit:
    """Envelope fit from training curves in long format (name, params, tokens, loss[, flops]).

    ``n_grid`` log-spaced compute values span the range where at least ``min_cover`` runs have
    data. ``smooth`` > 1 smooths each loss curve over that many consecutive logged points first, "auto"
    over a tenth of its points (per-step training losses are noisy; noise makes the envelope jump). Raises ScalingInputError if the envelope touches fewer than 2 model sizes.
    """
    missing = [c for c in ("name", "params", "tokens", "loss") if c not in history.columns]
    if missing:
        raise ScalingInputError(
            f"{source}: missing column(s) {missing} for Approach 1; have {list(history.columns)}"
        )
    h = history.copy()
    if "flops" not in h.columns:
        h["flops"] = 6.0 * h["params"] * h["tokens"]
    for c in ("params", "tokens", "loss", "flops"):
        v = pd.to_numeric(h[c], errors="coerce").to_numpy(float)
        if not np.isfinite(v).all():
            raise ScalingInputError(
                f"{source}: column '{c}' has NaN/non-numeric values in {int((~np.isfinite(v)).sum())} rows"
            )
        if (v <= 0).any():
            raise ScalingInputError(
                f"{source}: column '{c}' must be > 0; {int((v <= 0).sum())} non-positive rows"
            )
        h[c] = v
    curves = _curves(h, smooth)
    if len(curves) < 2:
        raise ScalingInputError(
            f"{source}: Approach 1 needs training curves of at least 2 runs; got {len(curves)}"
        )
    msgs: list[str] = []
    if all(cv.lc.size == 1 for cv in curves):
        msgs.append(
            "Approach 1: every run has a single point (final results only); the envelope is then over final "
            "losses, not training curves. Pass run directories or a history CSV for the real Approach 1"
        )
    lo = np.array([cv.lc[0] for cv in curves])
    hi = np.array([cv.lc[-1] for cv in curves])
    cover_lo = np.sort(lo)[min(min_cover, len(curves)) - 1]
    cover_hi = np.sort(hi)[::-1][min(min_cover, len(curves)) - 1]
    if not cover_hi > cover_lo:
        cover_lo, cover_hi = lo.min(), hi.max()
    grid_l = np.linspace(cover_lo, cover_hi, n_grid)  # (K,) ln C
    K, R = grid_l.size, len(curves)
    losses = np.full((R, K), np.inf)
    toks = np.full((R, K), np.nan)
    decayed = np.full((R, K), np.nan)
    for i, cv in enumerate(curves):
        inside = (grid_l >= cv.lc[0]) & (grid_l <= cv.lc[-1])
        if cv.lc.size == 1:
            inside = np.isclose(grid_l, cv.lc[0])
        losses[i, inside] = np.interp(grid_l[inside], cv.lc, cv.loss)
        toks[i, inside] = np.interp(grid_l[inside], cv.lc, cv.lt)
        if cv.decayed is not None:
            decayed[i, inside] = np.interp(grid_l[inside], cv.lc, cv.decayed) >= 0.5
    covered = np.isfinite(losses).any(axis=0)
    grid_l, losses, toks, decayed = grid_l[covered], losses[:, covered], toks[:, covered], decayed[:, covered]
    win = np.argmin(losses, axis=0)  # (K,)
    cols = np.arange(grid_l.size)
    env_n = np.array([curves[i].n for i in win])
    env_d = np.exp(toks[win, cols])
    env_l = losses[win, cols]
    names = np.array([curves[i].name for i in win])
    all_n = np.array([cv.n for cv in curves])
    share = _noise_share(losses, win, all_n, np.array([cv.sd for cv in curves]))
    env_decayed = decayed[win, cols]
    mid = float(np.mean(env_decayed == 0)) if np.isfinite(env_decayed).all() else None
    sizes = np.unique(env_n)
    if sizes.size < 2:
        raise ScalingInputError(
            f"{source}: the loss envelope is a single model size (N={sizes[0]:.3g}) over the whole compute range; "
            "Approach 1 needs runs of several sizes whose curves cross"
        )
    grid = np.exp(grid_l)
    n_law = fit_power_law(grid, env_n)
    d_law = fit_power_law(grid, env_d)
    for end, label in ((0, "lowest"), (-1, "highest")):
        if env_n[end] in (all_n.min(), all_n.max()):
            msgs.append(
                f"Approach 1: at the {label} compute the envelope is the {'smallest' if env_n[end] == all_n.min() else 'largest'} "
                "model: the optimum there may lie outside the sampled sizes"
            )
    if sizes.size < 3:
        msgs.append(
            f"Approach 1: the envelope crosses only {sizes.size} model sizes; the exponents are coarse"
        )
    fit = Approach1Fit(
        grid=grid,
        envelope_loss=env_l,
        envelope_run=names,
        envelope_n=env_n,
        envelope_d=env_d,
        n_law=n_law,
        d_law=d_law,
        n_runs=len(curves),
        n_points=int(len(h)),
        noise_share=share,
        curve_noise=float(np.median([cv.sd for cv in curves])),
        mid_schedule_share=mid,
        smooth=smooth,
    )
    for m in msgs:
        if quiet:
            fit.warnings.append(m)
        else:
            warn(m, fit.warnings)
    return fit
