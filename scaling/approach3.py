"""Approach 3: fit L(N, D) = E + A/N^α + B/D^β the way Hoffmann et al. 2022 did (their App. D.2).

    log L̂(N, D) = LSE(a − α log N, b − β log D, e),   A = e^a, B = e^b, E = e^e,
    objective   = Σ_i w_i Huber_δ(log L̂_i − log L_i),  δ = 1e-3, SUMMED over points
                  (averaging makes the objective tiny and stalls L-BFGS's stopping rule),

minimised with L-BFGS from every point of a grid of initialisations (α, β ∈ {0, 0.5, …, 2},
e ∈ {−1, −0.5, …, 1}, a, b ∈ {0, 5, …, 25}: 4,500 starts); the best end point is the fit.

All starts run at once in :func:`scaling.lbfgs.minimize_batched` with the analytic gradient.
Internally log N and log D are centred (a_c = a − α·mean(log N)), a linear change of variables
that leaves the objective and its minimisers unchanged (starts and results are mapped exactly)
but makes the problem far better conditioned for L-BFGS. The best few end points are then
polished with scipy's L-BFGS-B at tight tolerances (``polish``).

Parameter vector order everywhere: θ = (log A, log B, log E, α, β).
"""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import optimize

from scaling.errors import ScalingInputError, warn
from scaling.forms import LossParams
from scaling.lbfgs import STATUS_NAMES, minimize_batched

PARAM_NAMES = ("log_A", "log_B", "log_E", "alpha", "beta")
N_PARAMS = 5

DEFAULT_GRID: dict[str, Sequence[float]] = {
    "alpha": tuple(np.arange(0.0, 2.0 + 1e-9, 0.5)),
    "beta": tuple(np.arange(0.0, 2.0 + 1e-9, 0.5)),
    "e": tuple(np.arange(-1.0, 1.0 + 1e-9, 0.5)),
    "a": tuple(np.arange(0.0, 25.0 + 1e-9, 5.0)),
    "b": tuple(np.arange(0.0, 25.0 + 1e-9, 5.0)),
}


def init_grid(grid: dict[str, Sequence[float]] | None = None) -> np.ndarray:
    """All combinations of the initialisation grid as θ rows (S, 5); default S = 6·6·5·5·5 = 4,500."""
    g = dict(DEFAULT_GRID)
    if grid is not None:
        unknown = set(grid) - set(DEFAULT_GRID)
        if unknown:
            raise ScalingInputError(f"unknown grid key(s) {sorted(unknown)}; valid: {sorted(DEFAULT_GRID)}")
        g.update(grid)
    for k, v in g.items():
        if len(v) == 0:
            raise ScalingInputError(f"grid key '{k}' has no values")
    rows = itertools.product(g["a"], g["b"], g["e"], g["alpha"], g["beta"])
    return np.array(list(rows), dtype=np.float64)


def huber(r: np.ndarray, delta: float) -> np.ndarray:
    """Huber_δ(r) = r²/2 for |r| ≤ δ, δ(|r| − δ/2) otherwise (elementwise)."""
    ar = np.abs(r)
    return np.where(ar <= delta, 0.5 * r * r, delta * (ar - 0.5 * delta))


def objective_and_grad(
    theta: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    log_loss: np.ndarray,
    delta: float,
    weights: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Summed Huber objective and its gradient for many θ at once.

    theta (k, 5) = (log A, log B, log E, α, β); x = log N (n,), y = log D (n,), log_loss (n,);
    weights None, (n,) or (k, n) (bootstrap multiplicities). Returns f (k,), grad (k, 5).
    With p_j the softmax weights of the three LSE terms and ψ = Huber'(r) = clip(r, −δ, δ):
    ∂f/∂log A = Σ ψ p_1, ∂f/∂α = −Σ ψ p_1 log N, ∂f/∂log B = Σ ψ p_2, ∂f/∂β = −Σ ψ p_2 log D,
    ∂f/∂log E = Σ ψ p_3.
    """
    u1 = theta[:, 0, None] - theta[:, 3, None] * x[None, :]  # (k, n)
    u2 = theta[:, 1, None] - theta[:, 4, None] * y[None, :]  # (k, n)
    u3 = theta[:, 2, None]  # (k, 1)
    mx = np.maximum(np.maximum(u1, u2), u3)  # (k, n)
    e1 = np.exp(u1 - mx)
    e2 = np.exp(u2 - mx)
    e3 = np.exp(u3 - mx)
    s = e1 + e2 + e3
    r = mx + np.log(s) - log_loss[None, :]  # (k, n) residual of log L̂ − log L
    psi = np.clip(r, -delta, delta)  # Huber'(r)
    h = psi * (r - 0.5 * psi)  # Huber(r), same as huber() without a second branch
    if weights is not None:
        h = h * weights
        psi = psi * weights
    f = h.sum(axis=1)  # (k,)
    psi_s = psi / s
    g1 = psi_s * e1  # (k, n)
    g2 = psi_s * e2
    g3 = psi_s * e3
    grad = np.empty((theta.shape[0], N_PARAMS))
    grad[:, 0] = g1.sum(axis=1)
    grad[:, 1] = g2.sum(axis=1)
    grad[:, 2] = g3.sum(axis=1)
    # einsum, not `@`: numpy's own loop instead of a threaded BLAS gemv, whose spinning threads
    # made this ~25x slower on a busy 2-core machine
    grad[:, 3] = -np.einsum("kn,n->k", g1, x)
    grad[:, 4] = -np.einsum("kn,n->k", g2, y)
    return f, grad


def _center(theta: np.ndarray, xm: float, ym: float, sign: float) -> np.ndarray:
    """Map θ ↔ centred θ: log A_c = log A − α·x̄ (sign=−1) and back (sign=+1); same for B."""
    out = np.array(theta, dtype=np.float64, copy=True)
    out[..., 0] += sign * out[..., 3] * xm
    out[..., 1] += sign * out[..., 4] * ym
    return out


@dataclass
class Approach3Fit:
    """The result of :func:`fit_approach3` (best start) plus the diagnostics of all starts."""

    params: LossParams
    theta: np.ndarray  # (5,) best θ = (log A, log B, log E, α, β)
    objective: float  # summed Huber objective at θ
    n_points: int
    delta: float
    n_starts: int
    n_converged: int
    n_near_best: int  # starts within 1% of the best objective
    start_thetas: np.ndarray  # (S, 5) end points of every start
    start_objectives: np.ndarray  # (S,)
    fit_seconds: float
    optimizer: str
    status_counts: dict[str, int] = field(default_factory=dict)  # why the starts stopped
    warnings: list[str] = field(default_factory=list)
    intervals: dict[str, dict[str, float]] | None = None
    bootstrap: dict[str, Any] | None = None
    samples: dict[str, np.ndarray] | None = field(default=None, repr=False)  # bootstrap draws, not in JSON

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"approach": 3, **self.params.as_dict()}
        d.update(
            objective=self.objective,
            n_points=self.n_points,
            delta=self.delta,
            n_starts=self.n_starts,
            n_converged=self.n_converged,
            n_near_best=self.n_near_best,
            optimizer=self.optimizer,
            status_counts=dict(self.status_counts),
            fit_seconds=self.fit_seconds,
            warnings=list(self.warnings),
        )
        if self.intervals is not None:
            d["intervals"] = self.intervals
            d["bootstrap"] = self.bootstrap
        return d


def _validate_arrays(n: np.ndarray, d: np.ndarray, loss: np.ndarray, min_points: int) -> None:
    if not (n.shape == d.shape == loss.shape) or n.ndim != 1:
        raise ScalingInputError(
            f"params, tokens and loss must be 1-D of equal length; got {n.shape}, {d.shape}, {loss.shape}"
        )
    for name, arr in (("params", n), ("tokens", d), ("loss", loss)):
        if not np.isfinite(arr).all():
            raise ScalingInputError(
                f"'{name}' has NaN/inf at rows {np.flatnonzero(~np.isfinite(arr)).tolist()[:10]}"
            )
        if (arr <= 0).any():
            raise ScalingInputError(
                f"'{name}' must be > 0; non-positive at rows {np.flatnonzero(arr <= 0).tolist()[:10]}"
            )
    if n.size < min_points:
        raise ScalingInputError(
            f"Approach 3 fits {N_PARAMS} parameters (E, A, B, alpha, beta) but got only {n.size} points; "
            f"need at least {min_points}"
        )


def fit_approach3(
    n: np.ndarray,
    d: np.ndarray,
    loss: np.ndarray,
    *,
    delta: float = 1e-3,
    grid: dict[str, Sequence[float]] | None = None,
    starts: np.ndarray | None = None,
    optimizer: str = "lbfgs",
    max_iter: int = 1000,
    gtol: float = 1e-8,
    ftol: float = 1e-9,
    polish: int = 3,
    near_best_rtol: float = 0.01,
    weights: np.ndarray | None = None,
    quiet: bool = False,
) -> Approach3Fit:
    """Fit L(N, D) = E + A/N^α + B/D^β by Huber-on-log-loss from a grid of starts.

    n, d, loss: (n_points,) parameters, tokens, loss (nats/token). ``grid`` overrides keys of
    :data:`DEFAULT_GRID`; ``starts`` (S, 5) replaces the grid entirely. ``optimizer``:
    "lbfgs" (batched, vectorised, default) or "scipy" (scipy L-BFGS-B once per start: slow
    reference). ``gtol``/``ftol``: the batched optimiser's stopping rules (gradient max-norm;
    decrease relative to |f|). ``polish``: re-run scipy L-BFGS-B at tight tolerance from this
    many best end points. ``weights`` (n_points,) multiplies each point's Huber term (bootstrap
    counts). ``quiet``: collect warnings in ``fit.warnings`` without emitting them.
    """

    n = np.asarray(n, dtype=np.float64)
    d = np.asarray(d, dtype=np.float64)
    loss = np.asarray(loss, dtype=np.float64)
    _validate_arrays(n, d, loss, min_points=N_PARAMS)
    if not delta > 0:
        raise ScalingInputError(f"Huber delta must be > 0, got {delta}")
    msgs: list[str] = []
    if n.size == N_PARAMS:
        _note(
            f"Approach 3 has exactly {N_PARAMS} points for {N_PARAMS} parameters: the fit interpolates, no residual check",
            msgs,
            quiet,
        )
    x_raw, y_raw, ll = np.log(n), np.log(d), np.log(loss)
    xm, ym = float(x_raw.mean()), float(y_raw.mean())
    x, y = x_raw - xm, y_raw - ym
    theta0 = init_grid(grid) if starts is None else np.atleast_2d(np.asarray(starts, dtype=np.float64))
    if theta0.shape[1] != N_PARAMS:
        raise ScalingInputError(
            f"starts must have shape (S, 5) = (log A, log B, log E, alpha, beta); got {theta0.shape}"
        )
    t0 = time.perf_counter()
    th0c = _center(theta0, xm, ym, -1.0)
    w = None if weights is None else np.asarray(weights, dtype=np.float64)

    def fg(th: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return objective_and_grad(th, x, y, ll, delta, w)

    def fg1(th: np.ndarray) -> tuple[float, np.ndarray]:
        f, g = objective_and_grad(th[None, :], x, y, ll, delta, w)
        return float(f[0]), g[0]

    if optimizer == "lbfgs":
        res = minimize_batched(fg, th0c, max_iter=max_iter, gtol=gtol, ftol=ftol)
        ends, fs, conv = res.x, res.f, res.converged
    elif optimizer == "scipy":
        ends = np.empty_like(th0c)
        fs = np.empty(th0c.shape[0])
        conv = np.empty(th0c.shape[0], dtype=bool)
        with _one_blas_thread():
            for i, th in enumerate(th0c):
                r = optimize.minimize(fg1, th, jac=True, method="L-BFGS-B", options={"maxiter": max_iter})
                ends[i], fs[i], conv[i] = r.x, r.fun, r.success
    else:
        raise ScalingInputError(f"unknown optimizer '{optimizer}'; valid: 'lbfgs', 'scipy'")
    fs = np.where(np.isfinite(fs), fs, np.inf)

    order = np.argsort(fs)
    for i in order[: max(int(polish), 0)]:
        if not np.isfinite(fs[i]):
            continue
        with _one_blas_thread():
            r = optimize.minimize(
                fg1,
                ends[i],
                jac=True,
                method="L-BFGS-B",
                options={"maxiter": 20000, "ftol": 1e-15, "gtol": 1e-12},
            )
        if np.isfinite(r.fun) and r.fun <= fs[i]:
            ends[i], fs[i] = r.x, r.fun
    best = int(np.argmin(fs))
    if not np.isfinite(fs[best]):
        raise ScalingInputError("Approach 3: every start diverged (non-finite objective); check the data")
    ends_raw = _center(ends, xm, ym, +1.0)
    theta = ends_raw[best]
    params = LossParams.from_log(theta)
    fbest = float(fs[best])
    near = fs <= fbest + near_best_rtol * abs(fbest) + 1e-300
    fit = Approach3Fit(
        params=params,
        theta=theta,
        objective=fbest,
        n_points=int(n.size),
        delta=float(delta),
        n_starts=int(theta0.shape[0]),
        n_converged=int(conv.sum()),
        n_near_best=int(near.sum()),
        start_thetas=ends_raw,
        start_objectives=fs,
        fit_seconds=time.perf_counter() - t0,
        optimizer=optimizer,
        warnings=msgs,
    )
    if optimizer == "lbfgs":
        fit.status_counts = {
            STATUS_NAMES[int(k)]: int(v) for k, v in zip(*np.unique(res.status, return_counts=True))
        }
    for m in diagnose(fit, grid_bounds=_grid_bounds(theta0)):
        _note(m, fit.warnings, quiet)
    return fit


def _one_blas_thread() -> contextlib.AbstractContextManager[Any]:
    """scipy's L-BFGS-B makes many tiny BLAS calls; OpenBLAS's spinning worker threads slow them
    ~25x on a busy 2-core machine. Limit BLAS to one thread when threadpoolctl is installed."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # optional: without it scipy just runs with the default thread count
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def _note(message: str, sink: list[str], quiet: bool) -> None:
    if quiet:
        sink.append(message)
    else:
        warn(message, sink)


def _grid_bounds(theta0: np.ndarray) -> dict[str, tuple[float, float]]:
    lo, hi = theta0.min(axis=0), theta0.max(axis=0)
    return {name: (float(lo[i]), float(hi[i])) for i, name in enumerate(PARAM_NAMES)}


def diagnose(
    fit: Approach3Fit, grid_bounds: dict[str, tuple[float, float]], spread_tol: float = 0.02
) -> list[str]:
    """Warnings for an ill-determined fit (returned, not emitted).

    1. Starts whose objective lies within 1% of the best but whose allocation exponent a or
       whose α, β differ from the best's: the data do not pin the optimum down.
    2. Fitted parameters outside the initialisation grid (the grid did not bracket the answer).
    3. α or β ≤ 0 (no finite compute-optimal allocation).
    """
    out: list[str] = []
    fs, th = fit.start_objectives, fit.start_thetas
    near = fs <= fit.objective + 0.01 * abs(fit.objective) + 1e-300
    th_near = th[near]
    with np.errstate(divide="ignore", invalid="ignore"):
        a_near = th_near[:, 4] / (th_near[:, 3] + th_near[:, 4])
    spreads = {
        "alpha": np.ptp(th_near[:, 3]),
        "beta": np.ptp(th_near[:, 4]),
        "a": np.nanmax(a_near) - np.nanmin(a_near) if np.isfinite(a_near).any() else np.inf,
    }
    wide = {k: v for k, v in spreads.items() if not (v <= spread_tol)}
    if wide:
        desc = ", ".join(
            f"{k} in [{np.nanmin(v):.3g}, {np.nanmax(v):.3g}]"
            for k, v in (("alpha", th_near[:, 3]), ("beta", th_near[:, 4]), ("a", a_near))
            if k in wide
        )
        out.append(
            f"ill-determined Approach-3 fit: {int(near.sum())} of {fs.size} starts end within 1% of the best "
            f"objective but disagree ({desc}); trust the bootstrap intervals, not the point estimate"
        )
    names = {"log_A": "log A", "log_B": "log B", "log_E": "log E", "alpha": "alpha", "beta": "beta"}
    for i, key in enumerate(PARAM_NAMES):
        lo, hi = grid_bounds[key]
        v = float(fit.theta[i])
        if v < lo or v > hi:
            out.append(
                f"fitted {names[key]} = {v:.4g} lies outside the initialisation grid [{lo:.3g}, {hi:.3g}]; "
                "widen the grid if the fit looks wrong"
            )
    p = fit.params
    if p.alpha <= 0 or p.beta <= 0:
        out.append(
            f"fitted alpha = {p.alpha:.4g}, beta = {p.beta:.4g}: a non-positive exponent means loss does not fall "
            "with that resource; the compute-optimal allocation (a, b, G) is meaningless"
        )
    return out
