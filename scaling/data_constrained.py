"""Data-constrained scaling: the value of repeated tokens (Muennighoff et al. 2023, eqs. 5-6).

A run that sees D tokens drawn from U unique ones (``unique_tokens``; ``mdm sweep collect`` writes it for
runs with ``data.unique_tokens``) repeats them R_D = D/U - 1 times beyond the first epoch. Its loss is
modelled with an effective data count D' in place of D:

    D' = U + U R_D* (1 - exp(-R_D / R_D*)),        L = E + A / N^alpha + B / D'^beta

D' = D for R_D = 0 and D' -> U (1 + R_D*) as R_D -> inf: R_D* is the number of repetitions after which
the value of one more pass has decayed to 1/e (its "half-life"); large R_D* means repeated tokens are
worth nearly as much as fresh ones. Muennighoff et al. report R_D* ~ 15 for AR transformers;
Prabhudesai et al. 2025 fit the same form to masked diffusion models and report R_D* ~ 500.

**Procedure: two stages, Muennighoff's.** (1) The base law L(N, D) is fitted on the single-epoch rows
alone (R_D <= ``SINGLE_EPOCH_RD``; there D' = D to within R_D^2 / (2 R_D*) relative), so its exponents
are pinned by data in which repetition plays no part. (2) With the base law held fixed, R_D* is fitted on
the repeated rows. Repeated rows whose loss lies above L(N, U) (by more than 3 single-epoch residual
SDs, at least 0.01), the law's worst case D' = U, overfit in a way no R_D* describes (a small model
memorising a small subset can end far above one epoch's loss): they are left out of stage 2 and named
in the warnings. A joint fit would let the base law bend (beta and E trade against R_D*) to absorb the
repetition penalty; the two-stage fit keeps the question "how far below the fresh-data curve do repeated
runs fall" separate from "what is the fresh-data curve". R_N* (excess parameters) is not fitted: every
run here has its own N, none is parameter-limited by design.

Fitting details (no torch): least squares on the loss itself (nats/token). Stage 1 is a variable
projection: for exponents on a grid (beta; alpha too when the single-epoch rows hold several sizes) the
coefficients (E, A, B) >= 0 are a non-negative linear least-squares problem, solved exactly; the best
grid point is refined by Nelder-Mead. With one size, A / N^alpha is a constant folded into E (reported as
``E`` with ``A = 0``). Stage 2 is one-dimensional: log R_D* on a grid over ``R_BOUNDS``, refined by a
bounded scalar minimisation. The bootstrap resamples runs with replacement within the single-epoch and
the repeated rows separately (each resample keeps both) and refits both stages.

R_D* is withheld (``R_D_star`` null, ``status`` "not determined", with the reasons) when the point
estimate lies at a bound of ``R_BOUNDS``, or the percentile interval reaches a bound or spans more than
``MAX_DECADES`` decade, or there is no bootstrap to say. Warnings (kept in the JSON) also say when the
fitted repetition penalty is within the single-epoch residual noise, when effective data fall outside the
single-epoch rows' range (the base law is then extrapolated), and when an exponent is at its grid edge.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import minimize, minimize_scalar, nnls

from scaling.errors import ScalingInputError, warn

SINGLE_EPOCH_RD = 0.05  # rows with R_D = D/U - 1 at most this are the single-epoch rows of stage 1
R_BOUNDS = (1e-2, 1e4)  # search range of R_D*
MAX_DECADES = 1.0  # an interval wider than this (hi/lo > 10) does not pin R_D* down
EXP_GRID = np.linspace(0.02, 2.0, 100)  # exponent grid of stage 1 (alpha, beta)
R_GRID = np.logspace(math.log10(R_BOUNDS[0]), math.log10(R_BOUNDS[1]), 601)
SIZE_RTOL = 1e-6  # params within this relative distance are one size
OVERFIT_SDS, OVERFIT_MIN = 3.0, 0.01  # a repeated row this far above L(N, U) is outside the law
PROCEDURE = (
    "two-stage (Muennighoff et al. 2023): L(N, D) = E + A/N^alpha + B/D^beta fitted on single-epoch rows "
    f"(R_D <= {SINGLE_EPOCH_RD}), then R_D* of D' = U + U R_D* (1 - exp(-R_D/R_D*)) on the repeated rows "
    "with the base law fixed; least squares on the loss"
)


def effective_data(unique: Any, tokens: Any, r_star: float) -> np.ndarray:
    """D' = U + U R* (1 - exp(-R_D / R*)), R_D = D/U - 1 (eq. 5); D' = D for R* = inf."""
    u = np.asarray(unique, dtype=np.float64)
    d = np.asarray(tokens, dtype=np.float64)
    if math.isinf(r_star):
        return d
    r_d = d / u - 1.0
    return u + u * r_star * -np.expm1(-r_d / r_star)


@dataclass(frozen=True)
class BaseLaw:
    """L(N, D) = E + A / N^alpha + B / D^beta (alpha unused, A = 0, when fitted at one size)."""

    E: float
    A: float
    B: float
    alpha: float
    beta: float
    n_sizes: int

    def loss(self, n: Any, d: Any) -> np.ndarray:
        n = np.asarray(n, dtype=np.float64)
        d = np.asarray(d, dtype=np.float64)
        size_term = self.A * n ** (-self.alpha) if self.n_sizes > 1 else 0.0 * n
        return self.E + size_term + self.B * d ** (-self.beta)

    def as_dict(self) -> dict[str, Any]:
        return {
            "E": self.E,
            "A": self.A,
            "B": self.B,
            "alpha": self.alpha if self.n_sizes > 1 else None,
            "beta": self.beta,
            "n_sizes": self.n_sizes,
        }


@dataclass
class DataConstrainedFit:
    """One family's fit: the base law, R_D*, its interval and whether it is a result."""

    family: str
    base: BaseLaw
    r_star: float  # the stage-2 optimum, a result only when status == "ok"
    n_single: int
    n_repeated: int
    max_repetitions: float  # largest R_D among the rows
    resid_sd_single: float  # stage-1 residual standard deviation (nats/token)
    resid_sd_repeated: float  # stage-2 residual standard deviation
    max_penalty: float  # largest L(D') - L(D) the fit gives the repeated rows
    excluded: list[str] = field(default_factory=list)  # repeated rows above L(N, U), not fitted
    interval: dict[str, Any] | None = None
    base_intervals: dict[str, dict[str, float]] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)  # why R_D* is not a result
    warnings: list[str] = field(default_factory=list)

    @property
    def determined(self) -> bool:
        return not self.reasons

    def to_dict(self) -> dict[str, Any]:
        return {
            "R_D_star": self.r_star if self.determined else None,
            "R_D_star_fit": self.r_star,  # the optimum found, reported even when not a result
            "R_D_star_interval": self.interval,
            "status": "ok" if self.determined else "not determined",
            "reasons": list(self.reasons),
            "warnings": list(self.warnings),
            "base_law": {**self.base.as_dict(), "intervals": self.base_intervals},
            "n_single_epoch": self.n_single,
            "n_repeated": self.n_repeated,
            "max_repetitions": self.max_repetitions,
            "resid_sd_single_epoch": self.resid_sd_single,
            "resid_sd_repeated": self.resid_sd_repeated,
            "max_repetition_penalty": self.max_penalty,
            "excluded_rows": list(self.excluded),
            "procedure": PROCEDURE,
        }


# --- input ----------------------------------------------------------------------------------------
def check_input(df: pd.DataFrame, source: str = "results") -> pd.DataFrame:
    """The rows with a numeric ``unique_tokens`` column (> 0) and tokens >= unique_tokens; a one-line
    ScalingInputError naming the column or the row otherwise. Adds ``repetitions`` (R_D)."""
    if "unique_tokens" not in df.columns:
        raise ScalingInputError(
            f"{source}: missing column 'unique_tokens' (--form data-constrained needs params,tokens,"
            f"unique_tokens,loss; mdm sweep collect writes it for runs that set data.unique_tokens)"
        )
    df = df.copy()
    u = pd.to_numeric(df["unique_tokens"], errors="coerce")
    bad = ~np.isfinite(u.to_numpy(dtype=np.float64)) | (u.to_numpy(dtype=np.float64) <= 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ScalingInputError(
            f"{source}: row {i + 2} (name={df['name'].iloc[i]}): unique_tokens must be a positive number, "
            f"got {df['unique_tokens'].iloc[i]!r}"
            + (f" ({int(bad.sum())} such rows)" if bad.sum() > 1 else "")
        )
    df["unique_tokens"] = u.to_numpy(dtype=np.float64)
    short = df["tokens"].to_numpy() < df["unique_tokens"].to_numpy()
    if short.any():
        i = int(np.flatnonzero(short)[0])
        raise ScalingInputError(
            f"{source}: row {i + 2} (name={df['name'].iloc[i]}): tokens ({df['tokens'].iloc[i]:.6g}) < "
            f"unique_tokens ({df['unique_tokens'].iloc[i]:.6g}): the run saw less than one epoch of its "
            f"subset, which the law does not describe"
            + (f" ({int(short.sum())} such rows)" if short.sum() > 1 else "")
        )
    df["repetitions"] = df["tokens"] / df["unique_tokens"] - 1.0
    return df


def _sizes(n: np.ndarray) -> np.ndarray:
    """Distinct sizes (params within SIZE_RTOL are one)."""
    s = np.sort(np.unique(n))
    keep = np.concatenate([[True], np.diff(s) > SIZE_RTOL * s[1:]])
    return s[keep]


# --- stage 1: the base law on single-epoch rows ------------------------------------------------------
def _coef(design: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    """Non-negative least squares: (coefficients, sum of squares)."""
    c, r = nnls(design, y)
    return c, float(r * r)


def _design(n: np.ndarray, d: np.ndarray, alpha: float, beta: float, sized: bool) -> np.ndarray:
    cols = [np.ones_like(d), d ** (-beta)]
    if sized:
        cols.insert(1, n ** (-alpha))
    return np.stack(cols, axis=1)


def fit_base(n: np.ndarray, d: np.ndarray, loss: np.ndarray) -> tuple[BaseLaw, float]:
    """Stage 1: (base law, residual sum of squares) by variable projection (module docstring)."""
    n, d, y = (np.asarray(v, dtype=np.float64) for v in (n, d, loss))
    sized = len(_sizes(n)) > 1
    n_ref, d_ref = float(np.exp(np.mean(np.log(n)))), float(np.exp(np.mean(np.log(d))))
    nn, dd = n / n_ref, d / d_ref  # scaled: the coefficients stay O(1) for NNLS

    def sse(p: np.ndarray) -> float:
        a, b = (p[0], p[1]) if sized else (0.0, p[0])
        if not (EXP_GRID[0] * 0.5 <= b <= EXP_GRID[-1] * 1.5) or (sized and not 0.01 <= a <= 3.0):
            return np.inf
        return _coef(_design(nn, dd, a, b, sized), y)[1]

    grid = [(a, b) for a in EXP_GRID for b in EXP_GRID] if sized else [(0.0, b) for b in EXP_GRID]
    vals = [sse(np.array(g) if sized else np.array([g[1]])) for g in grid]
    best = np.array(grid[int(np.argmin(vals))])
    x0 = best if sized else best[1:]
    res = minimize(sse, x0, method="Nelder-Mead", options={"xatol": 1e-6, "fatol": 1e-14, "maxiter": 4000})
    p = res.x if res.fun <= min(vals) else x0
    a, b = (float(p[0]), float(p[1])) if sized else (0.0, float(p[0]))
    c, rss = _coef(_design(nn, dd, a, b, sized), y)
    E = float(c[0])
    A = float(c[1]) * n_ref**a if sized else 0.0
    B = float(c[-1]) * d_ref**b
    return BaseLaw(E=E, A=A, B=B, alpha=a, beta=b, n_sizes=len(_sizes(n))), rss


# --- stage 2: R_D* with the base law fixed ------------------------------------------------------------
def fit_r_star(
    base: BaseLaw, n: np.ndarray, u: np.ndarray, d: np.ndarray, loss: np.ndarray
) -> tuple[float, float]:
    """Stage 2: (R_D*, residual sum of squares) on the repeated rows, R_D* within R_BOUNDS."""
    n, u, d, y = (np.asarray(v, dtype=np.float64) for v in (n, u, d, loss))
    r_d = d / u - 1.0
    with np.errstate(all="ignore"):
        dp = u[None, :] + u[None, :] * R_GRID[:, None] * -np.expm1(-r_d[None, :] / R_GRID[:, None])  # (G, R)
        pred = base.loss(n[None, :], dp)
        sse = np.sum((pred - y[None, :]) ** 2, axis=1)  # (G,)
    k = int(np.nanargmin(sse))
    lo, hi = np.log(R_GRID[max(k - 1, 0)]), np.log(R_GRID[min(k + 1, len(R_GRID) - 1)])

    def f(log_r: float) -> float:
        return float(np.sum((base.loss(n, effective_data(u, d, float(np.exp(log_r)))) - y) ** 2))

    if hi > lo:
        res = minimize_scalar(f, bounds=(lo, hi), method="bounded", options={"xatol": 1e-8})
        if res.fun <= sse[k]:
            return float(np.exp(res.x)), float(res.fun)
    return float(R_GRID[k]), float(sse[k])


def _at_bound(r: float) -> bool:
    return r <= R_BOUNDS[0] * 1.05 or r >= R_BOUNDS[1] / 1.05  # within 5% of a bound


# --- a family ------------------------------------------------------------------------------------------
def fit_family(
    df: pd.DataFrame, family: str = "all", n_boot: int = 200, seed: int = 0, level: float = 0.95
) -> DataConstrainedFit:
    """Both stages on one family's rows (checked by :func:`check_input`), with a bootstrap of ``n_boot``
    resamples (0: none, and R_D* is then not a result)."""
    single = df[df["repetitions"] <= SINGLE_EPOCH_RD]
    rep = df[df["repetitions"] > SINGLE_EPOCH_RD]
    sized = len(_sizes(single["params"].to_numpy())) > 1 if len(single) else False
    need = 6 if sized else 4  # parameters of the base law + 1
    if len(single) < need or single["tokens"].nunique() < need - 1:
        raise ScalingInputError(
            f"family {family}: {len(single)} single-epoch rows (R_D <= {SINGLE_EPOCH_RD}) with "
            f"{single['tokens'].nunique()} distinct token counts; the base law needs at least {need} rows "
            f"and {need - 1} token counts"
        )
    if len(rep) < 2:
        raise ScalingInputError(
            f"family {family}: {len(rep)} repeated rows (R_D > {SINGLE_EPOCH_RD}); R_D* needs at least 2"
        )
    if not sized:
        known = _sizes(single["params"].to_numpy())[0]
        other = np.abs(rep["params"].to_numpy() / known - 1.0) > SIZE_RTOL
        if other.any():
            raise ScalingInputError(
                f"family {family}: the single-epoch rows hold one size (params {known:.6g}) but "
                f"repeated rows have other sizes (e.g. {rep['params'].to_numpy()[other][0]:.6g}): the base "
                "law cannot be applied to them; add single-epoch rows at those sizes"
            )
    cols = lambda t: [t[c].to_numpy(dtype=np.float64) for c in ("params", "unique_tokens", "tokens", "loss")]  # noqa: E731
    sn, _, sd, sl = cols(single)
    base, rss1 = fit_base(sn, sd, sl)
    resid_sd1 = math.sqrt(rss1 / max(len(single) - (5 if sized else 3), 1))
    # The law's worst case is D' = U (repeats worth nothing): a repeated run above L(N, U) overfits in a way
    # no R_D* describes; such rows are left out of stage 2 and named (module docstring).
    rn, ru, rd, rl = cols(rep)
    over = rl > base.loss(rn, ru) + max(OVERFIT_SDS * resid_sd1, OVERFIT_MIN)
    excluded = rep["name"].astype(str)[over].tolist()
    rep = rep[~over]
    rn, ru, rd, rl = cols(rep)
    if len(rep) >= 2:
        r_star, rss2 = fit_r_star(base, rn, ru, rd, rl)
        penalty = base.loss(rn, effective_data(ru, rd, r_star)) - base.loss(rn, rd)
    else:
        r_star, rss2, penalty = math.nan, math.nan, np.array([math.nan])
    fit = DataConstrainedFit(
        family=family,
        base=base,
        r_star=r_star,
        n_single=len(single),
        n_repeated=len(rep),
        max_repetitions=float(df["repetitions"].max()),
        resid_sd_single=resid_sd1,
        resid_sd_repeated=math.sqrt(rss2 / max(len(rep) - 1, 1)),
        max_penalty=float(np.max(penalty)),
        excluded=excluded,
    )
    sink = fit.warnings
    if excluded:
        warn(
            f"family {family}: {len(excluded)} repeated rows lie above the loss of one epoch of their subset "
            f"(L(N, U), the law's worst case) and are left out of the R_D* fit: {', '.join(excluded)}; they "
            "overfit beyond what the law describes, and leaving them out makes R_D* an upper estimate there",
            sink,
        )
    if len(rep) < 2:
        fit.reasons.append(f"only {len(rep)} repeated rows within the law's range (R_D* needs 2)")
        warn(f"family {family}: R_D* not determined: {fit.reasons[0]}", sink)
        return fit
    for name, v in (("beta", base.beta),) + ((("alpha", base.alpha),) if sized else ()):
        if v <= EXP_GRID[0] * 1.01 or v >= EXP_GRID[-1] * 0.99:
            warn(f"family {family}: base-law {name} = {v:.3g} is at the edge of its range", sink)
    if base.E <= 1e-9 * float(np.min(sl)):
        warn(
            f"family {family}: the base law's E is 0 (its bound): a pure power law over these D "
            f"(beta = {base.beta:.3g}), not an estimate of an irreducible loss",
            sink,
        )
    dp = effective_data(ru, rd, r_star)
    outside = (dp < sd.min() / 1.05) | (dp > sd.max() * 1.05)
    if outside.any():
        warn(
            f"family {family}: {int(outside.sum())} of {len(rep)} repeated rows have effective data D' outside "
            f"the single-epoch rows' D range [{sd.min():.3g}, {sd.max():.3g}]: the base law is extrapolated there",
            sink,
        )
    if fit.max_penalty < 2 * fit.resid_sd_single:
        warn(
            f"family {family}: the fitted repetition penalty (at most {fit.max_penalty:.3g} nats/token) is "
            f"within twice the single-epoch residual noise ({fit.resid_sd_single:.3g}): R_D* rests on "
            "differences the data barely resolve",
            sink,
        )
    if _at_bound(r_star):
        which = "lower" if r_star < 1 else "upper"
        fit.reasons.append(
            f"R_D* = {r_star:.3g} is at the {which} bound of its range {list(R_BOUNDS)}"
            + (
                " (repeated tokens are worth as much as fresh ones within these data)"
                if which == "upper"
                else " (repeated tokens are worth nothing within these data)"
            )
        )
    if n_boot:
        _bootstrap(fit, single, rep, n_boot, seed, level)
    else:
        fit.reasons.append("no bootstrap interval (run with --bootstrap N)")
    if fit.reasons:
        warn(f"family {family}: R_D* not determined: {'; '.join(fit.reasons)}", sink)
    return fit


def _bootstrap(
    fit: DataConstrainedFit, single: pd.DataFrame, rep: pd.DataFrame, n_boot: int, seed: int, level: float
) -> None:
    rng = np.random.default_rng(seed)
    cols = lambda t: [t[c].to_numpy(dtype=np.float64) for c in ("params", "unique_tokens", "tokens", "loss")]  # noqa: E731
    S, R = cols(single), cols(rep)
    draws = {k: [] for k in ("R_D_star", "E", "B", "beta")}
    failed = 0
    for _ in range(n_boot):
        i = rng.integers(0, len(single), len(single))
        j = rng.integers(0, len(rep), len(rep))
        if len(np.unique(S[2][i])) < 3:
            failed += 1
            continue
        base, _ = fit_base(S[0][i], S[2][i], S[3][i])
        r, _ = fit_r_star(base, R[0][j], R[1][j], R[2][j], R[3][j])
        for k, v in (("R_D_star", r), ("E", base.E), ("B", base.B), ("beta", base.beta)):
            draws[k].append(v)
    q = (1.0 - level) / 2.0
    r = np.asarray(draws["R_D_star"])
    if len(r) == 0:
        fit.reasons.append(f"every bootstrap resample failed ({failed} of {n_boot})")
        return
    lo, hi = (float(v) for v in np.exp(np.quantile(np.log(r), [q, 1.0 - q])))
    at_bound = float(np.mean([_at_bound(v) for v in r]))
    fit.interval = {
        "lo": lo,
        "hi": hi,
        "level": level,
        "n_boot": n_boot,
        "n_failed": failed,
        "at_bound_share": at_bound,
        "decades": math.log10(hi / lo),
    }
    for k in ("E", "B", "beta"):
        v = np.asarray(draws[k])
        fit.base_intervals[k] = {
            "lo": float(np.quantile(v, q)),
            "hi": float(np.quantile(v, 1 - q)),
            "se": float(np.std(v, ddof=1)),
        }
    if _at_bound(lo) or _at_bound(hi):
        fit.reasons.append(
            f"the {level:.0%} interval [{lo:.3g}, {hi:.3g}] reaches a bound of {list(R_BOUNDS)} "
            f"({at_bound:.0%} of the resamples at a bound)"
        )
    elif hi / lo > 10**MAX_DECADES:
        fit.reasons.append(
            f"the {level:.0%} interval [{lo:.3g}, {hi:.3g}] spans {math.log10(hi / lo):.2g} decades "
            f"(more than {MAX_DECADES:g})"
        )
    if not (lo <= fit.r_star <= hi) and not fit.reasons:
        fit.reasons.append(
            f"the estimate {fit.r_star:.3g} lies outside its own interval [{lo:.3g}, {hi:.3g}]"
        )


def fit_data_constrained(
    df: pd.DataFrame, source: str = "results", n_boot: int = 200, seed: int = 0, level: float = 0.95
) -> dict[str, DataConstrainedFit]:
    """Every family of ``df`` (scaling.results columns + unique_tokens), each on its own."""
    df = check_input(df, source)
    fams = list(dict.fromkeys(df["family"].astype(str)))
    return {
        f: fit_family(df[df["family"].astype(str) == f].reset_index(drop=True), f, n_boot, seed, level)
        for f in fams
    }


# --- a synthetic study (tests, notebook) ------------------------------------------------------------
def synthetic_results(
    families: dict[str, float] | None = None,
    base: BaseLaw | None = None,
    n: float = 1e5,
    ladder: tuple[float, ...] = tuple(2.0**k for k in range(16, 24)),
    repeated: tuple[tuple[float, tuple[float, ...]], ...] = (
        (2.0**15, (4, 16, 64)),
        (2.0**17, (4, 16, 64)),
        (2.0**19, (4, 16)),
    ),
    noise: float = 0.005,
    seed: int = 0,
) -> pd.DataFrame:
    """A study drawn from the law: per family (name -> true R_D*) a single-epoch ladder (U = D) and
    repeated subsets (U, epochs), loss = law + N(0, noise^2). Columns as ``mdm sweep collect`` writes."""
    families = families or {"mdlm": 300.0, "ar": 15.0}
    base = base or BaseLaw(E=2.0, A=0.0, B=60.0, alpha=0.0, beta=0.3, n_sizes=1)
    rng = np.random.default_rng(seed)
    rows = []
    for fam, r_star in families.items():
        pts = [(d, 1.0) for d in ladder] + [(u, e) for u, es in repeated for e in es]
        for u, e in pts:
            d = u * e
            loss = float(base.loss(n, effective_data(u, d, r_star))) + float(rng.normal(0.0, noise))
            rows.append(
                {
                    "name": f"{fam}-U{int(u)}-e{e:g}",
                    "family": fam,
                    "params": n,
                    "tokens": d,
                    "flops": 6.0 * n * d,
                    "loss": loss,
                    "unique_tokens": u,
                    "epochs": e,
                }
            )
    return pd.DataFrame(rows)


# --- figure --------------------------------------------------------------------------------------------
def _points(ax: Any, x: Any, y: Any, excluded: Any, top: float, color: str, label: str) -> None:
    """Fitted rows as dots; rows left out of the fit (above L(N, U)) as ^ clipped at ``top``, their loss
    written beside them."""
    x, y, ex = np.asarray(x, float), np.asarray(y, float), np.asarray(excluded, bool)
    ax.scatter(x[~ex], y[~ex], color=color, s=22, zorder=3, label=label)
    if ex.any():
        ax.scatter(x[ex], np.minimum(y[ex], top - 0.02), color=color, marker="^", s=40, zorder=3,
                   label=f"{label}: above L(N, U), not fitted")  # fmt: skip
        for xi, yi in zip(x[ex], y[ex]):
            ax.annotate(
                f"{yi:.2f}", (xi, top - 0.02), textcoords="offset points", xytext=(4, -10), fontsize=7
            )


def plot_data_constrained(df: pd.DataFrame, fits: dict[str, DataConstrainedFit]):
    """Per family (rows): loss against tokens D (single-epoch rows and the base law; repeated rows and
    their fitted curves) and loss against epochs at fixed N, one curve per U (solid: the fit; dashed:
    the same tokens if they were fresh). Returns a matplotlib Figure."""
    from matplotlib.figure import Figure

    df = check_input(df)
    fams = list(fits)
    fig = Figure(figsize=(11, 4.0 * len(fams)))
    axes = fig.subplots(len(fams), 2, squeeze=False)
    for row, fam in zip(axes, fams):
        fit, t = fits[fam], df[df["family"].astype(str) == fam]
        single, rep = t[t["repetitions"] <= SINGLE_EPOCH_RD], t[t["repetitions"] > SINGLE_EPOCH_RD]
        n = float(np.exp(np.mean(np.log(t["params"]))))
        rs = fit.r_star
        out = t["name"].astype(str).isin(fit.excluded).to_numpy()
        top = float(t["loss"][~out].max()) + 0.15  # excluded rows are drawn clipped at the top (^)
        bottom = float(t["loss"].min()) - 0.1
        label = (f"R_D* = {rs:.3g}" if math.isfinite(rs) else "R_D*: -") + (
            f" [{fit.interval['lo']:.3g}, {fit.interval['hi']:.3g}]" if fit.interval else ""
        )
        if not fit.determined:
            label += " (not determined)"
        ax = row[0]
        d_all = np.geomspace(single["tokens"].min() / 1.5, t["tokens"].max() * 1.5, 200)
        ax.plot(d_all, fit.base.loss(n, d_all), color="black", lw=1, label="base law (fresh data)")
        ax.scatter(single["tokens"], single["loss"], color="black", s=18, zorder=3, label="single epoch")
        us = sorted(rep["unique_tokens"].unique())
        for k, u in enumerate(us):
            c = f"C{k}"
            tu = rep[rep["unique_tokens"] == u]
            _points(
                ax,
                tu["tokens"],
                tu["loss"],
                tu["name"].astype(str).isin(fit.excluded),
                top,
                c,
                f"U = {u:,.0f}",
            )
            dd = np.geomspace(u, tu["tokens"].max() * 1.5, 100)
            if math.isfinite(rs):
                ax.plot(dd, fit.base.loss(n, effective_data(u, dd, rs)), color=c, lw=1.2)
        ax.set_ylim(bottom, top)
        ax.set_xscale("log")
        ax.set_xlabel("training tokens D")
        ax.set_ylabel("validation loss (nats/token)")
        ax.set_title(f"{fam}: loss against tokens; {label}", fontsize=9)
        ax.legend(fontsize=7)
        ax = row[1]
        for k, u in enumerate(us):
            c = f"C{k}"
            tu = t[np.isclose(t["unique_tokens"], u)]
            ex = tu["name"].astype(str).isin(fit.excluded)
            _points(ax, tu["tokens"] / u, tu["loss"], ex, top, c, f"U = {u:,.0f}")
            e = np.geomspace(1.0, max(tu["tokens"].max() / u, 2.0) * 1.5, 100)
            if math.isfinite(rs):
                ax.plot(e, fit.base.loss(n, effective_data(u, u * e, rs)), color=c, lw=1.2)
            ax.plot(e, fit.base.loss(n, u * e), color=c, lw=0.8, ls="--")
        ax.set_ylim(bottom, top)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("epochs over the unique subset (D / U)")
        ax.set_ylabel("validation loss (nats/token)")
        ax.set_title(f"{fam}: loss against epochs at N = {n:,.0f} (dashed: fresh tokens)", fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


# --- command line (python -m scaling fit RESULTS.csv --form data-constrained) -------------------------
def run_fit(
    results: str,
    json_out: str | None = None,
    plot_dir: str | None = None,
    n_boot: int = 200,
    seed: int = 0,
    level: float = 0.95,
    family: str | None = None,
) -> dict[str, Any]:
    """Read RESULTS.csv, fit every family (or ``family``), print a table, write the JSON and figure."""
    import warnings

    from scaling.atomic import write_json
    from scaling.errors import ScalingWarning
    from scaling.results import load_results

    res = load_results(results)
    df = res.family(family) if family else res.df
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ScalingWarning)  # printed below, and kept in the JSON
        fits = fit_data_constrained(df, source=res.source, n_boot=n_boot, seed=seed, level=level)
    doc = {
        "form": "data-constrained",
        "procedure": PROCEDURE,
        "law": "L = E + A/N^alpha + B/D'^beta, D' = U + U R_D* (1 - exp(-R_D/R_D*)), R_D = D/U - 1",
        "families": {f: fit.to_dict() for f, fit in fits.items()},
        "input": res.describe(),
    }
    print(f"data-constrained fit ({PROCEDURE})")
    for f, fit in fits.items():
        b, iv = fit.base, fit.interval
        ci = f" [{iv['lo']:.3g}, {iv['hi']:.3g}] ({iv['level']:.0%}, {iv['n_boot']} resamples)" if iv else ""
        print(
            f"{f}: base law on {fit.n_single} single-epoch rows: E = {b.E:.4g}, B = {b.B:.4g}, "
            f"beta = {b.beta:.3g}"
            + (f", A = {b.A:.4g}, alpha = {b.alpha:.3g}" if b.n_sizes > 1 else "")
            + f" (residual sd {fit.resid_sd_single:.3g})"
        )
        verdict = "ok" if fit.determined else f"NOT DETERMINED ({'; '.join(fit.reasons)})"
        print(
            f"{f}: R_D* = {fit.r_star:.3g}{ci} on {fit.n_repeated} repeated rows (up to R_D = "
            f"{fit.max_repetitions:.3g}): {verdict}"
        )
        for w in fit.warnings:
            if "not determined" not in w:
                print(f"WARNING: {w}")
    if json_out:
        write_json(json_out, doc)
        print(f"wrote {json_out}")
    if plot_dir:
        from scaling.plots import save

        for p in save(plot_data_constrained(df, fits), plot_dir, "data_constrained"):
            print(f"wrote {p}")
    return doc
