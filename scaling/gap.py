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

``compare_families`` is what the report prints: the multiplier and the ratio of compute-optimal
sizes at the reference's smallest budget, by both approaches, each with a bootstrap interval and
a ``status`` from :mod:`scaling.checks` (a number is given only when every check passed).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from scaling.approach2 import Approach2Fit
from scaling.forms import allocation_arrays, optimal_loss_arrays

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
    sampled_f: np.ndarray | None = None  # family f's sampled budgets: M(C)·C outside them = extrapolation
    sampled_r: np.ndarray | None = None  # the reference's: C outside them = extrapolation

    def extrapolated(self) -> np.ndarray:
        """(K,) True where f's compute C·M(C) lies outside its sampled budgets (or M is not finite),
        or C outside the reference's."""
        out = np.zeros(self.c.size, dtype=bool)
        if self.sampled_f is not None:
            cf = self.c * self.multiplier
            out |= np.array([not (np.isfinite(x) and _within(float(x), self.sampled_f)) for x in cf])
        if self.sampled_r is not None:
            out |= np.array([not _within(float(x), self.sampled_r) for x in self.c])
        return out

    def to_dict(self) -> dict[str, Any]:
        rows = []
        ext = self.extrapolated()
        for i in range(self.c.size):
            row = {"C": float(self.c[i]), "multiplier": float(self.multiplier[i])}
            if self.sampled_f is not None or self.sampled_r is not None:
                row["extrapolation"] = bool(ext[i])
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


# --- the two-family comparison the report prints: at the reference's smallest budget ----------
def _interval(draws: np.ndarray, level: float) -> list[float] | None:
    """[lo, hi] percentile interval over draws (NaN ignored, inf kept); None with < 2 draws."""
    v = np.asarray(draws, dtype=np.float64)
    v = v[~np.isnan(v)]
    if v.size < 2:
        return None
    q = (1.0 - level) / 2.0
    lo, hi = np.quantile(v, [q, 1.0 - q], method="inverted_cdf")
    return [float(lo), float(hi)]


def _within(c: float, budgets: np.ndarray, rtol: float = 1e-6) -> bool:
    b = np.asarray(budgets, dtype=np.float64)
    return bool(b.size and b.min() * (1 - rtol) <= c <= b.max() * (1 + rtol))


def _entry(
    what: str,
    method: str,
    value: float,
    draws: np.ndarray | None,
    level: float,
    blockers: list[str],
    *,
    extrapolated: str | None = None,
    draws_outside: float | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """One comparison number with its status: the value and interval only when every check passed."""
    from scaling.checks import ratio_reasons

    ci = _interval(draws, level) if draws is not None else None
    reasons = list(blockers)
    status = "invalid" if blockers else "ok"
    if not blockers:
        if np.isinf(value):
            status, reasons = (
                "unreachable",
                [f"{what}: the reference's loss is below the family's fitted floor E"],
            )
        elif extrapolated:
            status, reasons = "extrapolation", [extrapolated]
        else:
            reasons = ratio_reasons(value, ci, what)
            if draws is None:
                reasons.append(
                    f"no bootstrap draws: the {what} has no interval (run with --bootstrap N >= 2)"
                )
            if draws_outside is not None and draws_outside > (1.0 - level) / 2.0:
                reasons.append(
                    f"{draws_outside:.0%} of the bootstrap draws fall outside the sampled budgets: the "
                    "interval's ends rest on extrapolation"
                )
            status = "flagged" if reasons else "ok"
    out: dict[str, Any] = {
        "value": float(value) if status == "ok" else None,
        f"ci{round(100 * level)}": ci if status == "ok" else None,  # "ci95" at the default level
        "level": level,
        "status": status,
        "reasons": reasons,
        "method": method,
        **extra,
    }
    if status != "ok":
        out["diagnostic"] = {
            "note": "not a result: the raw numbers, for diagnosis only",
            "value": None if value is None or not np.isfinite(value) else float(value),
            "interval": ci,
        }
    return out


def _blockers(who: str, verdicts: Mapping[str, Mapping[str, Any]] | None, key: str, fit: Any) -> list[str]:
    if fit is None:
        v = (verdicts or {}).get(key) or {}
        return [f"{who} {key} skipped: {'; '.join(v.get('reasons') or ['not fitted'])}"]
    v = (verdicts or {}).get(key) or {"status": "ok"}
    if v["status"] != "ok" and not v.get("frontier_usable", False):
        rs = v.get("reasons") or []
        more = f" (and {len(rs) - 1} more reason(s), see {who}'s {key})" if len(rs) > 1 else ""
        return [f"{who} {key} {v['status']}: {rs[0] if rs else 'no reason given'}{more}"]
    return []


def compare_approach3(
    family: str,
    reference: str,
    fit_f: Any,
    fit_r: Any,
    budgets_f: np.ndarray,
    c_ref: float,
    blockers: list[str],
    level: float = 0.95,
) -> dict[str, dict[str, Any]]:
    """Multiplier and N_opt ratios at compute ``c_ref`` (C = 6ND) from the Approach-3 frontiers."""
    nan = float("nan")
    if blockers:
        return {k: _entry(k, "approach3", nan, None, level, blockers) for k in KEYS}
    th_f, th_r = np.asarray(fit_f.theta), np.asarray(fit_r.theta)
    m = float(multiplier_arrays(th_f[None], th_r[None], np.array([c_ref]))[0, 0])
    c_f = m * c_ref
    pf, pr = fit_f.params, fit_r.params
    ratio = float(pr.n_opt(c_ref) / pf.n_opt(c_ref))
    ratio_ml = float(pr.n_opt(c_ref) / pf.n_opt(c_f)) if np.isfinite(c_f) else nan
    m_d = r_d = rml_d = None
    out_share = None
    if fit_f.samples is not None and fit_r.samples is not None:
        R = min(len(fit_f.samples["theta"]), len(fit_r.samples["theta"]))
        sf, sr = fit_f.samples["theta"][:R], fit_r.samples["theta"][:R]
        good = np.isfinite(sf).all(axis=1) & np.isfinite(sr).all(axis=1)
        sf, sr = sf[good], sr[good]
        m_d = multiplier_arrays(sf, sr, np.array([c_ref]))[:, 0]
        with np.errstate(all="ignore"):
            ef, er = np.exp(sf[:, :3]), np.exp(sr[:, :3])
            af, bf_, gf = allocation_arrays(ef[:, 2], ef[:, 0], ef[:, 1], sf[:, 3], sf[:, 4])
            ar, br_, gr = allocation_arrays(er[:, 2], er[:, 0], er[:, 1], sr[:, 3], sr[:, 4])
            n_r = gr * (c_ref / 6.0) ** ar
            r_d = n_r / (gf * (c_ref / 6.0) ** af)
            rml_d = n_r / (gf * (m_d * c_ref / 6.0) ** af)
        fin = np.isfinite(m_d)
        out_share = (
            float(np.mean([not _within(x * c_ref, budgets_f) for x in m_d[fin]])) if fin.any() else None
        )
    ext_m = None
    if np.isfinite(c_f) and not _within(c_f, budgets_f):
        ext_m = (
            f"{family} reaches {reference}'s compute-optimal loss at C = {c_f:.3g}, outside {family}'s sampled "
            f"budgets [{budgets_f.min():.3g}, {budgets_f.max():.3g}]: an extrapolation of its fitted frontier"
        )
    ext_r = None
    if not _within(c_ref, budgets_f):
        ext_r = (
            f"C = {c_ref:.3g} lies outside {family}'s sampled budgets [{budgets_f.min():.3g}, "
            f"{budgets_f.max():.3g}]: its N_opt there is an extrapolation"
        )
    common = {"C_reference": float(c_ref), "compute_convention": "C = 6*N*D (Approach 3)"}
    return {
        "multiplier": _entry(
            "compute multiplier", "approach3", m, m_d, level, [], extrapolated=ext_m, draws_outside=out_share,
            C_family=float(c_f), target_loss=float(pr.optimal_loss(c_ref)), **common,
        ),
        "nopt_ratio": _entry(
            f"N_opt ratio {reference}/{family}", "approach3", ratio, r_d, level, [], extrapolated=ext_r, **common
        ),
        "nopt_ratio_matched_loss": _entry(
            f"N_opt ratio {reference}/{family} at matched loss", "approach3", ratio_ml, rml_d, level, [],
            extrapolated=ext_m, draws_outside=out_share, C_family=float(c_f), **common,
        ),
    }  # fmt: skip


def _interp_compute(target: np.ndarray, lc: np.ndarray, lmin: np.ndarray) -> np.ndarray:
    """ln C at which a decreasing isoFLOP-minimum curve (lc ascending, lmin per row) reaches target;
    NaN outside the sampled losses or where the minima do not fall with compute. (R,), (K,), (R, K)."""
    out = np.full(target.shape, np.nan)
    for i in range(target.size):
        li = lmin[i]
        if not (np.isfinite(li).all() and np.isfinite(target[i])) or not np.all(np.diff(li) < 0):
            continue
        if li.min() <= target[i] <= li.max():
            out[i] = np.interp(target[i], li[::-1], lc[::-1])
    return out


def compare_approach2(
    family: str,
    reference: str,
    fit_f: Approach2Fit | None,
    fit_r: Approach2Fit | None,
    c_ref: float,
    blockers: list[str],
    level: float = 0.95,
) -> dict[str, dict[str, Any]]:
    """Multiplier and N_opt ratios at the reference's budget ``c_ref`` (flops column) from the
    isoFLOP minima: family f's L_min(C) interpolated linearly in ln C between its used budgets."""
    nan = float("nan")
    blockers = list(blockers)
    j_r = None
    if not blockers:
        j_r = int(np.argmin([abs(np.log(b.budget / c_ref)) for b in fit_r.budgets]))
        if not fit_r.budgets[j_r].used:
            blockers.append(
                f"{reference}'s budget C = {c_ref:.3g} has no usable isoFLOP minimum "
                f"({fit_r.budgets[j_r].note or 'not used'})"
            )
    if blockers:
        return {k: _entry(k, "approach2", nan, None, level, blockers) for k in KEYS}
    used_f = [j for j, b in enumerate(fit_f.budgets) if b.used]
    lc_f = np.log([fit_f.budgets[j].budget for j in used_f])
    lmin_f = np.array([fit_f.budgets[j].loss_min for j in used_f])
    br = fit_r.budgets[j_r]
    c_r = br.budget
    lc = _interp_compute(np.array([br.loss_min]), lc_f, lmin_f[None, :])[0]
    m = float(np.exp(lc) / c_r) if np.isfinite(lc) else nan
    ratio = float(br.n_opt / fit_f.n_opt(c_r))
    ratio_ml = float(br.n_opt / fit_f.n_opt(m * c_r)) if np.isfinite(m) else nan
    ext_m = None
    if not np.isfinite(m):
        mono = bool(np.all(np.diff(lmin_f) < 0))
        ext_m = (
            f"{reference}'s isoFLOP minimum at C = {c_r:.3g} (loss {br.loss_min:.4g}) lies outside the range of "
            f"{family}'s isoFLOP minima [{lmin_f.min():.4g}, {lmin_f.max():.4g}]: reading it would be an extrapolation"
            if mono
            else f"{family}'s isoFLOP minima do not fall monotonically with compute: no interpolation"
        )
    budgets_f = np.exp(lc_f)
    ext_r = None
    if not _within(c_r, budgets_f):
        ext_r = (
            f"C = {c_r:.3g} lies outside {family}'s used budgets [{budgets_f.min():.3g}, {budgets_f.max():.3g}]: "
            "its N_opt there is an extrapolation of the power law"
        )
    m_d = r_d = rml_d = None
    out_share = None
    if fit_f.samples is not None and fit_r.samples is not None:
        R = min(len(fit_f.samples["a"]), len(fit_r.samples["a"]))
        lt = fit_r.samples["loss_min"][:R, j_r]
        nr = fit_r.samples["n_opt"][:R, j_r]
        lf = fit_f.samples["loss_min"][:R][:, used_f]
        kn, a = fit_f.samples["k_N"][:R], fit_f.samples["a"][:R]
        ok = np.isfinite(lt) & np.isfinite(lf).all(axis=1) & np.isfinite(kn) & np.isfinite(a)
        lc_d = _interp_compute(lt[ok], lc_f, lf[ok])
        m_d = np.exp(lc_d) / c_r
        out_share = float(np.isnan(lc_d).mean()) if ok.any() else None
        with np.errstate(all="ignore"):
            r_d = nr[ok] / (kn[ok] * c_r ** a[ok])
            rml_d = nr[ok] / (kn[ok] * (m_d * c_r) ** a[ok])
    common = {"C_reference": float(c_r), "compute_convention": "flops column (Approach 2)"}
    return {
        "multiplier": _entry(
            "compute multiplier", "approach2", m, m_d, level, [], extrapolated=ext_m, draws_outside=out_share,
            C_family=float(m * c_r), target_loss=float(br.loss_min), **common,
        ),
        "nopt_ratio": _entry(
            f"N_opt ratio {reference}/{family}", "approach2", ratio, r_d, level, [], extrapolated=ext_r, **common
        ),
        "nopt_ratio_matched_loss": _entry(
            f"N_opt ratio {reference}/{family} at matched loss", "approach2", ratio_ml, rml_d, level, [],
            extrapolated=ext_m, draws_outside=out_share, C_family=float(m * c_r), **common,
        ),
    }  # fmt: skip


KEYS = ("multiplier", "nopt_ratio", "nopt_ratio_matched_loss")


def compare_families(
    family: str,
    reference: str,
    fits: Mapping[str, Any],
    verdicts: Mapping[str, Mapping[str, Mapping[str, Any]]],
    budgets: Mapping[str, Mapping[str, np.ndarray]],
    level: float = 0.95,
) -> dict[str, Any]:
    """The comparison of ``family`` (A) against ``reference`` (B) at B's smallest sampled budget:

    * multiplier: the compute at which A's compute-optimal frontier reaches B's compute-optimal
      loss at that budget, divided by the budget;
    * nopt_ratio: N_opt(B)/N_opt(A) at that budget; nopt_ratio_matched_loss: N_opt(B) at the
      budget over N_opt(A) at the compute where A reaches the same loss.

    Each by Approach 3 (fitted L(N, D) minimised at fixed C = 6ND) and Approach 2 (interpolated
    isoFLOP minima, flops column), with bootstrap intervals from the two families' independent
    resamples (runs within each family; draw i paired with draw i). The headline entry is
    Approach 3's when it passes every check, else Approach 2's. A number is only given (``value``,
    ``ci95``) when it passes; otherwise ``status`` (invalid / extrapolation / unreachable /
    flagged) and ``reasons`` say why.

    ``fits[f]``: object with attributes a2, a3 (fits or None); ``verdicts[f][approach]``: the
    checks' verdicts; ``budgets[f]``: {"flops": sampled budgets, "6nd": the same in C = 6ND}.
    """
    ff, fr = fits[family], fits[reference]
    b3 = _blockers(family, verdicts.get(family), "approach3", ff.a3) + _blockers(
        reference, verdicts.get(reference), "approach3", fr.a3
    )
    b2 = _blockers(family, verdicts.get(family), "approach2", ff.a2) + _blockers(
        reference, verdicts.get(reference), "approach2", fr.a2
    )
    c6 = float(np.min(budgets[reference]["6nd"]))
    cf = float(np.min(budgets[reference]["flops"]))
    by = {
        "approach3": compare_approach3(
            family, reference, ff.a3, fr.a3, budgets[family]["6nd"], c6, b3, level
        ),
        "approach2": compare_approach2(family, reference, ff.a2, fr.a2, cf, b2, level),
    }
    out: dict[str, Any] = {
        "family": family,
        "reference": reference,
        "definition": f"at {reference}'s smallest sampled budget C_ref: multiplier = (compute at which {family}'s "
        f"compute-optimal frontier reaches {reference}'s compute-optimal loss at C_ref) / C_ref (> 1: {family} "
        f"needs more compute); nopt_ratio = N_opt({reference}) / N_opt({family}) at C_ref",
        "C_reference": {"flops": cf, "6nd": c6},
    }
    for k in KEYS:
        e3, e2 = by["approach3"][k], by["approach2"][k]
        out[k] = e3 if e3["status"] == "ok" or e2["status"] != "ok" else e2
    out["by_method"] = by
    return out
