"""Checks that decide whether a fit (or a two-family comparison) is reported as a result.

Each ``check_*`` returns a list of reasons (plain sentences); an empty list means the fit passed.
:func:`verdict` turns them into the machine-readable ``status`` that ``fit.json`` carries:

    ok        passed every check: its numbers are printed and plotted as a result
    flagged   fitted, but a check failed: its allocation numbers are withheld, the reasons shown
    skipped   not fitted (too little data), with the reason

and ``frontier_usable``: true when the only failed checks are the allocation exponents' interval
widths. Such a fit's loss frontier L*(C) (Approach 3) or isoFLOP minima (Approach 2) may still
carry the two-family comparison, whose own numbers then face their own checks (:func:`ratio_reasons`).

What is checked (thresholds are the module constants below, stated in the report):

* a law must be a law: α > 0 and β > 0 (Approach 3), a > 0 and b > 0, G finite and > 0, E not
  vanishing (E ≥ ``MIN_E_FRACTION`` × the lowest observed loss), N_opt ≥ 1 parameter and
  D_opt ≥ 1 token at every sampled budget;
* the fit is determined: no "ill-determined" diagnosis (Approach 3: starts within 1% of the best
  objective that disagree), at most ``MAX_FAILED_SHARE`` of the bootstrap resamples failed;
* the point estimate lies inside its own bootstrap interval (a point outside means the point
  fit and the bootstrap are not the same estimator, or the draws are degenerate);
* intervals are informative: exponents a, b narrower than ``MAX_EXPONENT_WIDTH``, ratios
  (compute multiplier, N_opt ratio) narrower than ``MAX_DECADES`` decades;
* Approach 2: a + b agrees with what the FLOP convention implies, 1 + a(1 − s) with s the slope
  of ln(FLOPs per token) against ln N (s = 1, a + b = 1 under C = 6ND), within ``A_PLUS_B_TOL``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

MAX_DECADES = 1.0  # widest acceptable 95% interval of a ratio (multiplier, N_opt ratio), in decades
MAX_EXPONENT_WIDTH = 0.5  # widest acceptable interval of an allocation exponent a or b
MAX_FAILED_SHARE = 0.5  # most bootstrap resamples that may fail before the interval is not trusted
MIN_E_FRACTION = 1e-3  # E below this fraction of the lowest observed loss: the floor vanished
A_PLUS_B_TOL = 0.1  # |a + b − (1 + a(1 − s))| above this: N_opt and D_opt inconsistent
MAX_NOISE_SHARE = 0.5  # Approach 1: most of the envelope's range of sizes that noise may leave open
MAX_MID_SCHEDULE_SHARE = 0.5  # Approach 1: most of the envelope's grid that mid-schedule points may win

THRESHOLDS = {
    "max_ratio_interval_decades": MAX_DECADES,
    "max_exponent_interval_width": MAX_EXPONENT_WIDTH,
    "max_bootstrap_failed_share": MAX_FAILED_SHARE,
    "min_E_fraction_of_lowest_loss": MIN_E_FRACTION,
    "a_plus_b_tolerance": A_PLUS_B_TOL,
    "max_envelope_noise_share": MAX_NOISE_SHARE,
    "max_envelope_mid_schedule_share": MAX_MID_SCHEDULE_SHARE,
}


def verdict(
    reasons: Sequence[str], skipped: str | None = None, allocation_only: Sequence[str] = ()
) -> dict[str, Any]:
    """{"status": "ok" | "flagged" | "skipped", "reasons": [...], "frontier_usable": bool}.

    ``allocation_only``: those of ``reasons`` that concern only the allocation law (an exponent's
    interval too wide); a fit flagged for nothing else is still a usable loss frontier L*(C), so
    the comparison may rest on it (its own numbers face their own checks)."""
    if skipped is not None:
        return {"status": "skipped", "reasons": [skipped], "frontier_usable": False}
    return {
        "status": "flagged" if reasons else "ok",
        "reasons": list(reasons),
        "frontier_usable": set(reasons) <= set(allocation_only),
    }


def _finite(x: Any) -> bool:
    return x is not None and isinstance(x, (int, float, np.floating)) and math.isfinite(float(x))


def outside_interval(value: float, iv: Mapping[str, float] | None, rtol: float = 1e-9) -> bool:
    """True when ``value`` lies outside [lo, hi] (both finite); False without an interval."""
    if not iv or not (_finite(iv.get("lo")) and _finite(iv.get("hi"))) or not _finite(value):
        return False
    lo, hi = float(iv["lo"]), float(iv["hi"])
    slack = rtol * max(abs(lo), abs(hi), 1e-300)
    return not (lo - slack <= float(value) <= hi + slack)


def interval_reasons(
    est: Mapping[str, Any], intervals: Mapping[str, Mapping[str, float]] | None, keys: Iterable[str]
) -> list[str]:
    """A point estimate outside its own interval (and, via :func:`width_reasons`, an exponent
    interval wider than allowed)."""
    out: list[str] = []
    if not intervals:
        return out
    for k in keys:
        iv, v = intervals.get(k), est.get(k)
        if iv is None or v is None:
            continue
        if outside_interval(v, iv):
            out.append(
                f"point estimate {k} = {v:.4g} lies outside its own bootstrap interval "
                f"[{iv['lo']:.4g}, {iv['hi']:.4g}]"
            )
    return out + width_reasons(intervals)


def width_reasons(intervals: Mapping[str, Mapping[str, float]] | None) -> list[str]:
    """The allocation exponents' intervals: undetermined or wider than MAX_EXPONENT_WIDTH."""
    out: list[str] = []
    for k in ("a", "b"):
        iv = (intervals or {}).get(k)
        if iv is None:
            continue
        lo, hi = iv.get("lo"), iv.get("hi")
        if not (_finite(lo) and _finite(hi)):
            out.append(f"the bootstrap interval of {k} is undetermined (too few successful resamples)")
        elif hi - lo > MAX_EXPONENT_WIDTH:
            out.append(
                f"the interval of {k}, [{lo:.3g}, {hi:.3g}], is wider than {MAX_EXPONENT_WIDTH}: "
                "the exponent is not determined by these data"
            )
    return out


def _bootstrap_reasons(boot: Mapping[str, Any] | None) -> list[str]:
    if not boot or not boot.get("n"):
        return []
    share = boot.get("n_failed", 0) / boot["n"]
    if share > MAX_FAILED_SHARE:
        return [
            f"{boot['n_failed']} of {boot['n']} bootstrap resamples failed (> {MAX_FAILED_SHARE:.0%}): "
            "the interval rests on the resamples that happened to fit"
        ]
    return []


def _allocation_reasons(a: float, b: float, G: float, n_at: np.ndarray, d_at: np.ndarray) -> list[str]:
    out: list[str] = []
    if not (_finite(a) and _finite(b)):
        out.append(f"allocation exponents not finite (a = {a}, b = {b})")
    else:
        if a <= 0:
            out.append(f"a = {a:.3g} <= 0: N_opt does not grow with compute, not a law")
        if b <= 0:
            out.append(f"b = {b:.3g} <= 0: D_opt does not grow with compute, not a law")
    if not (_finite(G) and G > 0):
        out.append(f"G = {G} is not a positive finite number")
    with np.errstate(all="ignore"):
        n_at, d_at = np.asarray(n_at, dtype=np.float64), np.asarray(d_at, dtype=np.float64)
    if n_at.size and not (np.isfinite(n_at).all() and (n_at >= 1).all()):
        out.append(
            f"N_opt at the sampled budgets is {_list(n_at)} parameters: below one parameter or not finite"
        )
    if d_at.size and not (np.isfinite(d_at).all() and (d_at >= 1).all()):
        out.append(f"D_opt at the sampled budgets is {_list(d_at)} tokens: below one token or not finite")
    return out


def _list(v: np.ndarray) -> str:
    return "[" + ", ".join(f"{x:.3g}" for x in v) + "]"


def check_approach3(fit: Any, budgets: np.ndarray, min_loss: float) -> list[str]:
    """Reasons an Approach-3 fit (scaling.approach3.Approach3Fit) is not a result.

    ``budgets``: the family's sampled budgets in the C = 6ND convention Approach 3 uses."""
    p = fit.params
    out = [w for w in fit.warnings if "ill-determined" in w]
    if p.alpha <= 0 or p.beta <= 0:
        out.append(f"alpha = {p.alpha:.4g}, beta = {p.beta:.4g}: a non-positive exponent is not a law")
    if not p.E >= MIN_E_FRACTION * min_loss:
        out.append(
            f"E = {p.E:.3g} is below {MIN_E_FRACTION:g} x the lowest observed loss ({min_loss:.4g}): "
            "the irreducible term vanished (degenerate fit)"
        )
    if p.alpha > 0 and p.beta > 0:
        with np.errstate(all="ignore"):
            out += _allocation_reasons(p.a, p.b, p.G, p.n_opt(budgets), p.d_opt(budgets))
    est = {**p.as_dict()}
    out += interval_reasons(est, fit.intervals, ("E", "alpha", "beta", "a", "b", "G"))
    out += _bootstrap_reasons(fit.bootstrap)
    return out


def check_allocation_fit(fit: Any, budgets: np.ndarray) -> list[str]:
    """Reasons an Approach-1 or -2 fit (power laws N_opt, D_opt in C) is not a result."""
    with np.errstate(all="ignore"):
        out = _allocation_reasons(fit.a, fit.b, fit.G, fit.n_opt(budgets), fit.d_opt(budgets))
    out += interval_reasons({"a": fit.a, "b": fit.b, "G": fit.G}, fit.intervals, ("a", "b", "G"))
    out += _bootstrap_reasons(fit.bootstrap)
    share = getattr(fit, "noise_share", None)  # Approach 1 only
    if share is not None and share > MAX_NOISE_SHARE:
        out.append(
            f"the envelope is picked by noise: at a typical compute, runs within twice the loss curves' noise "
            f"(sd {fit.curve_noise:.3g} after smoothing) of the winner span {share:.0%} of the envelope's range of "
            f"ln N (more than {MAX_NOISE_SHARE:.0%})"
        )
    mid = getattr(fit, "mid_schedule_share", None)  # Approach 1 with learning rates only
    if mid is not None and mid > MAX_MID_SCHEDULE_SHARE:
        out.append(
            f"{mid:.0%} of the envelope's compute grid is won by mid-schedule points (learning rate not yet "
            f"decayed; more than {MAX_MID_SCHEDULE_SHARE:.0%}): those losses lie above what a run trained to that "
            "compute reaches, which biases N_opt toward the sizes whose runs end there (train several horizons "
            "per size for Approach 1)"
        )
    s = getattr(fit, "flops_per_token_slope", None)
    if s is not None and _finite(fit.a) and _finite(fit.b):
        expected = 1.0 + fit.a * (1.0 - s)
        if abs(fit.a + fit.b - expected) > A_PLUS_B_TOL:
            out.append(
                f"a + b = {fit.a + fit.b:.3g} but the FLOP convention implies {expected:.3g} "
                f"(1 + a(1 - s), s = {s:.3g}): N_opt and D_opt are inconsistent"
            )
    return out


def ratio_reasons(value: float, ci: Sequence[float] | None, what: str) -> list[str]:
    """A ratio (multiplier, N_opt ratio): finite and positive, inside its interval, interval
    finite and narrower than MAX_DECADES."""
    out: list[str] = []
    if not (_finite(value) and value > 0):
        return [f"{what} is {value}: not a positive finite number"]
    if ci is None:
        return out
    lo, hi = ci
    if not (_finite(lo) and _finite(hi) and lo > 0):
        out.append(f"the interval of the {what} is undetermined ([{lo}, {hi}])")
        return out
    if outside_interval(value, {"lo": lo, "hi": hi}):
        out.append(f"the {what} {value:.3g} lies outside its own bootstrap interval [{lo:.3g}, {hi:.3g}]")
    if math.log10(hi / lo) > MAX_DECADES:
        out.append(
            f"the interval of the {what}, [{lo:.3g}, {hi:.3g}], spans {math.log10(hi / lo):.2g} decades "
            f"(more than {MAX_DECADES:g})"
        )
    return out
