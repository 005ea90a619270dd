"""The sweep report: Approaches 2 and 3 (with bootstrap intervals) per family, the two-family
compute multiplier, figures (PNG + SVG), ``report.md`` and ``fit.json`` in one directory.

Parts that the data cannot support (e.g. Approach 2 with a single budget, Approach 3 with fewer
points than parameters, the multiplier with one family) are skipped with a stated reason, never
a crash: the report says what was skipped and why.

Every fit then goes through :mod:`scaling.checks`: each approach in ``fit.json`` carries
``status`` (ok / flagged / skipped) and ``reasons``. Only an ``ok`` fit's allocation (a, b, G,
N_opt, D_opt, tokens per parameter) is printed as a result and plotted; a flagged fit's numbers
are shown as diagnostics, marked so. The comparison (``fit.json`` → ``comparison``) is given only
when the fits it rests on are ``ok`` (or flagged only for their exponents' intervals:
``frontier_usable``) and it passes its own checks.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scaling import checks, plots
from scaling.approach1 import Approach1Fit, fit_approach1
from scaling.approach2 import Approach2Fit, budget_labels, fit_approach2
from scaling.approach3 import Approach3Fit, fit_approach3
from scaling.atomic import write_json, write_text
from scaling.bootstrap import bootstrap_approach1, bootstrap_approach2, bootstrap_approach3
from scaling.errors import ScalingInputError
from scaling.gap import GapResult, compare_families, compute_multiplier, empirical_multiplier
from scaling.results import Results, load_run_histories


@dataclass
class FamilyFits:
    family: str
    df: pd.DataFrame
    a2: Approach2Fit | None = None
    a3: Approach3Fit | None = None
    a1: Approach1Fit | None = None
    history: pd.DataFrame | None = None
    skipped: dict[str, str] = field(default_factory=dict)  # approach → reason
    budgets: np.ndarray | None = None  # sampled budgets (geometric means of the groups)
    budgets_6nd: np.ndarray | None = None  # the same budgets in C = 6ND (Approach 3's convention)
    verdicts: dict[str, dict[str, Any]] = field(default_factory=dict)  # approach → checks' verdict

    def ok(self, approach: str) -> bool:
        return self.verdicts.get(approach, {}).get("status") == "ok"

    def frontier_ok(self, approach: str) -> bool:
        """Passed every check, or was flagged only for its allocation exponents' intervals."""
        return bool(self.verdicts.get(approach, {}).get("frontier_usable", self.ok(approach)))


def _stderr(msg: str) -> None:
    print(f"[scaling] {msg}", file=sys.stderr, flush=True)


def sampled_budgets(df: pd.DataFrame, rtol: float = 0.25, convention: str = "flops") -> np.ndarray:
    """Geometric-mean compute of each budget group, ascending; ``convention`` "flops" (the flops
    column) or "6nd" (C = 6·N·D of the same runs, Approach 3's convention)."""
    lab = budget_labels(df, rtol)
    groups = np.unique(lab)
    lf = np.log(df["flops"].to_numpy(float))
    c = df["flops"] if convention == "flops" else 6.0 * df["params"] * df["tokens"]
    lc = np.log(c.to_numpy(float))
    order = np.argsort([lf[lab == k].mean() for k in groups])
    return np.array([np.exp(lc[lab == k].mean()) for k in groups])[order]


def family_verdicts(ff: FamilyFits) -> dict[str, dict[str, Any]]:
    """The checks' verdict per approach (see scaling.checks)."""
    out: dict[str, dict[str, Any]] = {}
    b, b6 = ff.budgets if ff.budgets is not None else np.array([]), ff.budgets_6nd
    for key, fit in (("approach1", ff.a1), ("approach2", ff.a2), ("approach3", ff.a3)):
        if fit is None:
            if key in ff.skipped:
                out[key] = checks.verdict([], skipped=ff.skipped[key])
            continue
        if key == "approach3":
            reasons = checks.check_approach3(fit, b6 if b6 is not None else b, float(ff.df["loss"].min()))
        else:
            reasons = checks.check_allocation_fit(fit, b)
        out[key] = checks.verdict(reasons, allocation_only=checks.width_reasons(fit.intervals))
    return out


def fit_family(
    df: pd.DataFrame,
    family: str,
    *,
    n_boot: int = 200,
    seed: int = 0,
    budget_rtol: float = 0.25,
    a3_options: dict[str, Any] | None = None,
    runs_root: str | os.PathLike | None = None,
    params_key: str = "params_non_embedding",
    progress: Callable[[str], None] = _stderr,
) -> FamilyFits:
    """Approaches 2 and 3 (+ bootstraps when n_boot ≥ 2) for one family; skips with reasons.
    With ``runs_root`` (run directories ``runs_root/<name>/``), Approach 1 too."""
    ff = FamilyFits(
        family=family,
        df=df,
        budgets=sampled_budgets(df, budget_rtol),
        budgets_6nd=sampled_budgets(df, budget_rtol, "6nd"),
    )
    progress(f"{family}: {len(df)} runs, {ff.budgets.size} budget(s)")
    if runs_root is not None:
        try:
            ff.history = load_run_histories([Path(runs_root) / n for n in df["name"]], params_key=params_key)
            ff.a1 = fit_approach1(ff.history, quiet=True, source=family, smooth="auto")
            if n_boot >= 2:
                progress(f"{family}: Approach 1 bootstrap ({n_boot} resamples)")
                bootstrap_approach1(ff.a1, ff.history, n_boot=n_boot, seed=seed, smooth="auto")
        except ScalingInputError as e:
            ff.skipped["approach1"] = str(e)
            progress(f"{family}: Approach 1 SKIPPED: {e}")
    try:
        ff.a2 = fit_approach2(df, budget_rtol=budget_rtol, quiet=True, source=family)
        if n_boot >= 2:
            progress(f"{family}: Approach 2 bootstrap ({n_boot} resamples)")
            bootstrap_approach2(ff.a2, df, n_boot=n_boot, seed=seed, budget_rtol=budget_rtol)
    except ScalingInputError as e:
        ff.skipped["approach2"] = str(e)
        progress(f"{family}: Approach 2 SKIPPED: {e}")
    try:
        progress(f"{family}: Approach 3 (full grid of starts)")
        ff.a3 = fit_approach3(df["params"], df["tokens"], df["loss"], quiet=True, **(a3_options or {}))
        progress(f"{family}: Approach 3 done in {ff.a3.fit_seconds:.1f} s")
        if n_boot >= 2:
            progress(f"{family}: Approach 3 bootstrap ({n_boot} resamples)")
            bootstrap_approach3(ff.a3, df["params"], df["tokens"], df["loss"], n_boot=n_boot, seed=seed)
    except ScalingInputError as e:
        ff.skipped["approach3"] = str(e)
        progress(f"{family}: Approach 3 SKIPPED: {e}")
    ff.verdicts = family_verdicts(ff)
    for key, v in ff.verdicts.items():
        if v["status"] == "flagged":
            progress(f"{family}: {key} FLAGGED: {'; '.join(v['reasons'])}")
    return ff


def _iv_ratio(f3: Approach3Fit, c: float, level: float) -> tuple[float, float, float, float, float, float]:
    """(N_opt, D_opt, D/N) lo/hi from bootstrap draws at compute c (NaN without draws)."""
    if f3.samples is None:
        return (math.nan,) * 6
    th = f3.samples["theta"]
    th = th[np.isfinite(th).all(axis=1) & (th[:, 3] > 0) & (th[:, 4] > 0)]
    if len(th) < 2:
        return (math.nan,) * 6
    from scaling.forms import allocation_arrays

    with np.errstate(all="ignore"):
        a, b, G = allocation_arrays(np.exp(th[:, 2]), np.exp(th[:, 0]), np.exp(th[:, 1]), th[:, 3], th[:, 4])
        n = G * (c / 6.0) ** a
        d = (c / 6.0) ** b / G
    q = (1 - level) / 2
    out = []
    for v in (n, d, d / n):
        lo, hi = np.quantile(v, [q, 1 - q])
        out += [float(lo), float(hi)]
    return tuple(out)  # type: ignore[return-value]


def tokens_per_param_rows(ff: FamilyFits, level: float = 0.95) -> list[dict[str, Any]]:
    """N_opt, D_opt and D/N at each sampled budget from Approach 3 (with intervals) and 2; only
    from approaches whose checks passed (all of them when no verdicts were computed)."""
    rows = []
    a2_by_c = {}
    use2 = ff.ok("approach2") if ff.verdicts else True
    use3 = ff.ok("approach3") if ff.verdicts else True
    b6 = ff.budgets_6nd if ff.budgets_6nd is not None else ff.budgets
    if ff.a2 is not None and use2:
        for b in ff.a2.budgets:
            if b.used:
                a2_by_c[b.budget] = b
    for c, c6 in zip(ff.budgets if ff.budgets is not None else [], b6 if b6 is not None else []):
        row: dict[str, Any] = {"C": float(c), "C_6nd": float(c6)}
        if ff.a3 is not None and use3 and ff.a3.params.alpha > 0 and ff.a3.params.beta > 0:
            p = ff.a3.params
            c = c6  # Approach 3's allocation is in C = 6ND
            n_lo, n_hi, d_lo, d_hi, r_lo, r_hi = _iv_ratio(ff.a3, c, level)
            row.update(
                a3_n_opt=float(p.n_opt(c)),
                a3_d_opt=float(p.d_opt(c)),
                a3_tokens_per_param=float(p.tokens_per_param(c)),
                a3_tokens_per_param_lo=r_lo,
                a3_tokens_per_param_hi=r_hi,
            )
        c = float(row["C"])
        if a2_by_c:
            near = min(a2_by_c, key=lambda x: abs(math.log(x / c)))
            if abs(math.log(near / c)) < 1e-6:
                b = a2_by_c[near]
                row.update(
                    a2_n_opt=b.n_opt, a2_d_opt=b.d_opt, a2_tokens_per_param=b.d_opt / b.n_opt, a2_edge=b.edge
                )
        rows.append(row)
    return rows


def _g(x: Any, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "inf" if isinstance(x, float) and math.isinf(x) and x > 0 else "—"
    if isinstance(x, (bool, np.bool_)):
        return "yes" if x else ""
    return f"{x:.{digits}g}"


def _param_table(d: dict[str, Any], keys: Sequence[str]) -> list[str]:
    iv = d.get("intervals") or {}
    lvl = next((v.get("level") for v in iv.values()), None)
    head = "| parameter | estimate | SE | " + (f"{int(100 * lvl)}% interval |" if lvl else "interval |")
    lines = [head, "|---|---|---|---|"]
    for k in keys:
        v = iv.get(k, {})
        ci = f"[{_g(v.get('lo'))}, {_g(v.get('hi'))}]" if v else "—"
        lines.append(f"| {k} | {_g(d.get(k), 4)} | {_g(v.get('se'))} | {ci} |")
    return lines


def make_report(
    results: Results,
    out_dir: str | os.PathLike,
    *,
    n_boot: int = 200,
    seed: int = 0,
    families: Sequence[str] | None = None,
    level: float = 0.95,
    budget_rtol: float = 0.25,
    a3_options: dict[str, Any] | None = None,
    runs_root: str | os.PathLike | None = None,
    make_plots: bool = True,
    params_key: str = "params_non_embedding",
    progress: Callable[[str], None] = _stderr,
) -> dict[str, Any]:
    """Fit every family (or ``families``, in that order), compare the first two, write
    ``fit.json``, ``report.md`` and figures into ``out_dir``; returns the fit.json content.
    ``runs_root``: also fit Approach 1 from the runs' training curves (``runs_root/<name>/``), with
    ``params_key`` of their summary.json as N (the same N as the results' ``params`` column)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fams = list(families) if families else results.families
    for f in fams:
        if f not in results.families:
            raise ScalingInputError(
                f"{results.source}: family '{f}' not found; families present: {results.families}"
            )
    fits: dict[str, FamilyFits] = {}
    for i, fam in enumerate(fams):
        fits[fam] = fit_family(
            results.family(fam),
            fam,
            n_boot=n_boot,
            seed=seed + 1000 * i,  # independent draws per family
            budget_rtol=budget_rtol,
            a3_options=a3_options,
            runs_root=runs_root,
            params_key=params_key,
            progress=progress,
        )
    warnings_all: list[str] = []
    fam_json: dict[str, Any] = {}
    for fam, ff in fits.items():
        j: dict[str, Any] = {"n_runs": int(len(ff.df))}
        pairs: list[tuple[str, Any]] = [("approach2", ff.a2), ("approach3", ff.a3)]
        if runs_root is not None:
            pairs.insert(0, ("approach1", ff.a1))
        for key, fit in pairs:
            if fit is not None:
                j[key] = {**fit.to_dict(), **ff.verdicts.get(key, checks.verdict([]))}
                warnings_all += [f"{fam}: {w}" for w in fit.warnings]
                if j[key]["status"] == "flagged":
                    warnings_all.append(
                        f"{fam}: {key} flagged (not a result): {'; '.join(j[key]['reasons'])}"
                    )
            else:
                reason = ff.skipped.get(key, "not run")
                j[key] = {"skipped": reason, "status": "skipped", "reasons": [reason]}
                warnings_all.append(f"{fam}: {key} skipped: {reason}")
        j["budgets"] = {"flops": ff.budgets.tolist(), "6nd": ff.budgets_6nd.tolist()}
        j["tokens_per_param"] = tokens_per_param_rows(ff, level)
        fam_json[fam] = j

    gap: GapResult | None = None
    gap_json: dict[str, Any]
    comparison: dict[str, Any]
    if len(fams) < 2:
        gap_json = {"skipped": f"needs two families; found {len(fams)} ({', '.join(fams)})"}
        comparison = {"status": "skipped", "reasons": [gap_json["skipped"]]}
    else:
        f_, r_ = fams[0], fams[1]
        progress(f"comparison: {f_} vs {r_}")
        comparison = compare_families(
            f_,
            r_,
            fits,
            {f: ff.verdicts for f, ff in fits.items()},
            {f: {"flops": ff.budgets, "6nd": ff.budgets_6nd} for f, ff in fits.items()},
            level=level,
        )
        bad = [f"{f} approach3 {fits[f].verdicts.get('approach3', {}).get('status', 'missing')}"
               for f in (f_, r_) if not fits[f].frontier_ok("approach3")]  # fmt: skip
        if bad:
            gap_json = {"skipped": "the Approach-3 multiplier curve needs both families' Approach 3 to pass "
                        f"its checks: {', '.join(bad)}"}  # fmt: skip
        else:
            allc = np.concatenate([fits[f_].budgets_6nd, fits[r_].budgets_6nd])
            c_eval = np.logspace(np.log10(allc.min()) - 0.5, np.log10(allc.max()) + 0.5, 41)
            sf = fits[f_].a3.samples["theta"] if fits[f_].a3.samples else None
            sr = fits[r_].a3.samples["theta"] if fits[r_].a3.samples else None
            kw = dict(family=f_, reference=r_, samples_f=sf, samples_r=sr, level=level)
            gap = compute_multiplier(fits[f_].a3.theta, fits[r_].a3.theta, c_eval, **kw)
            gap.sampled_f, gap.sampled_r = fits[f_].budgets_6nd, fits[r_].budgets_6nd
            if fits[f_].frontier_ok("approach2") and fits[r_].frontier_ok("approach2"):
                gap.empirical = empirical_multiplier(fits[f_].a2, fits[r_].a2)
                bf, b6 = fits[r_].budgets, fits[r_].budgets_6nd
                for e in gap.empirical:  # where the reference's budget lies in C = 6ND (the plot's axis)
                    e["C_6nd"] = float(b6[int(np.argmin(np.abs(np.log(bf / e["C"]))))])
            gap_json = gap.to_dict()
            at = compute_multiplier(fits[f_].a3.theta, fits[r_].a3.theta, fits[r_].budgets_6nd, **kw)
            at.sampled_f, at.sampled_r = fits[f_].budgets_6nd, fits[r_].budgets_6nd
            gap_json["at_budgets"] = [_row_status(r) for r in at.to_dict()["curve"]]
            if not any(r["status"] == "ok" for r in gap_json["at_budgets"]):
                gap = None  # nothing on the curve passes at the sampled budgets: no figure
    if "skipped" in gap_json:
        warnings_all.append(f"compute multiplier curve skipped: {gap_json['skipped']}")
    for k in ("multiplier", "nopt_ratio"):
        e = comparison.get(k)
        if e and e["status"] != "ok":
            warnings_all.append(f"comparison {k} not reported ({e['status']}): {'; '.join(e['reasons'])}")

    figures: list[str] = []
    if make_plots:
        progress("plots")
        figures = _write_plots(out, fits, gap, level, comparison)

    doc: dict[str, Any] = {
        "input": results.describe(),
        "settings": {
            "bootstrap": int(n_boot) if n_boot >= 2 else 0,
            "seed": int(seed),
            "level": level,
            "budget_rtol": budget_rtol,
            "approach3": {
                "delta": (a3_options or {}).get("delta", 1e-3),
                "grid": "Hoffmann et al. 2022 (4,500 starts)"
                if not (a3_options or {}).get("grid")
                else (a3_options or {}).get("grid"),
            },  # fmt: skip
            "allocation": "closed form under C = 6*N*D (Hoffmann et al. 2022, eq. 4)",
        },
        "checks": checks.THRESHOLDS,
        "families": fam_json,
        "comparison": comparison,
        "gap": gap_json,
        "figures": figures,
        "warnings": warnings_all,
    }
    write_json(out / "fit.json", doc)
    write_text(out / "report.md", render_markdown(doc))
    progress(f"wrote {out / 'report.md'} and {out / 'fit.json'}")
    return doc


def _row_status(r: dict[str, Any]) -> dict[str, Any]:
    """A multiplier-curve row with its status: extrapolation, flagged (interval) or ok."""
    if r.get("extrapolation"):
        return {**r, "status": "extrapolation", "reasons": ["outside the sampled budgets"]}
    ci = [r["lo"], r["hi"]] if "lo" in r else None
    reasons = checks.ratio_reasons(r["multiplier"], ci, "multiplier")
    return {**r, "status": "flagged" if reasons else "ok", "reasons": reasons}


def _write_plots(
    out: Path,
    fits: dict[str, FamilyFits],
    gap: GapResult | None,
    level: float,
    comparison: dict[str, Any] | None = None,
) -> list[str]:
    """Figures of what passed its checks; every family's runs always appear (isoFLOP, frontier)."""
    written: list[Path] = []
    a2 = {f: ff.a2 for f, ff in fits.items() if ff.a2 is not None and ff.ok("approach2")}
    a3 = {f: ff.a3 for f, ff in fits.items() if ff.a3 is not None and ff.ok("approach3")}
    f3 = {f: ff.a3 for f, ff in fits.items() if ff.a3 is not None and ff.frontier_ok("approach3")}
    f2 = {f: ff.a2 for f, ff in fits.items() if ff.a2 is not None and ff.frontier_ok("approach2")}
    notes = {f: _plot_note(ff, "approach2") for f, ff in fits.items()}
    written += plots.save(
        plots.plot_isoflop({f: (ff.df, ff.a2) for f, ff in fits.items()}, valid={f: f in a2 for f in fits},
                           notes=notes),
        out,
        "isoflop",
    )  # fmt: skip
    for f, ff in fits.items():
        if ff.a1 is not None and ff.history is not None and ff.ok("approach1"):
            written += plots.save(plots.plot_envelope(ff.history, ff.a1), out, f"envelope_{f}")
    left_out = [f for f in fits if f not in f3]
    note = f"no Approach-3 frontier for {', '.join(left_out)}: its fit is not usable" if left_out else ""
    written += plots.save(
        plots.plot_frontier({f: ff.df for f, ff in fits.items()}, f3, f2, level, note=note), out, "frontier"
    )
    if a2 or a3:
        allc = np.concatenate([ff.budgets for ff in fits.values()])
        written += plots.save(
            plots.plot_allocation(a3, a2, (allc.min(), allc.max()), level), out, "allocation"
        )
    for f, fit in a3.items():
        written += plots.save(
            plots.plot_contours(fits[f].df, fit, f"Fitted L(N, D) — {f}"), out, f"contours_{f}"
        )
    if gap is not None:
        head = (comparison or {}).get("multiplier")
        written += plots.save(plots.plot_gap(gap, headline=head), out, "multiplier")
    return [p.name for p in written]


def _plot_note(ff: FamilyFits, key: str) -> str:
    v = ff.verdicts.get(key)
    if v is None or v["status"] == "ok":
        return ""
    return f"Approach 2 {v['status']}: no parabolas"


def _approach_md(d: dict[str, Any], keys: Sequence[str]) -> list[str]:
    """An approach's section: skipped → the reason; flagged → the reasons and its parameters marked
    as diagnostics (allocation keys a, b, G withheld); ok → the parameter table."""
    if "skipped" in d:
        return [f"**Skipped:** {d['skipped']}", ""]
    if d.get("status", "ok") == "flagged":
        alloc = {"a", "b", "G", "a_plus_b"}
        shown = [k for k in keys if k not in alloc]
        out = ["**Flagged — not a result:** " + "; ".join(d.get("reasons") or []) + ".", ""]
        if d.get("frontier_usable"):
            out += ["Only the allocation exponents are undetermined: the fitted loss frontier is still used "
                    "for the comparison, whose numbers face their own checks.", ""]  # fmt: skip
        if shown:
            out += ["Fitted parameters, for diagnosis only (the allocation a, b, G is withheld):", ""]
            out += _param_table(d, shown) + [""]
        return out
    return _param_table(d, keys) + [""]


def _comparison_md(c: dict[str, Any], thresholds: dict[str, Any]) -> list[str]:
    """The headline table: multiplier and N_opt ratios, by method, values only where they passed."""
    L = ["## Comparison", ""]
    if c.get("status") == "skipped" or "family" not in c:
        return L + [f"**Skipped:** {'; '.join(c.get('reasons') or ['not computed'])}", ""]
    f, r = c["family"], c["reference"]
    L += [f"Definition: {c['definition']}. C_ref = {_g(c['C_reference']['flops'])} FLOPs (flops column), "
          f"{_g(c['C_reference']['6nd'])} in C = 6ND. Intervals: bootstrap over runs within each family. "
          f"A number is given only when the fits it rests on and the number itself pass the checks "
          f"(interval narrower than {_g(thresholds.get('max_ratio_interval_decades'))} decade(s), point inside its "
          "interval, no extrapolation beyond the sampled budgets).", ""]  # fmt: skip
    L += ["| quantity | method | value | 95% interval | status |", "|---|---|---|---|---|"]
    names = {
        "multiplier": f"compute multiplier of {f} vs {r}",
        "nopt_ratio": f"N_opt({r}) / N_opt({f}) at C_ref",
        "nopt_ratio_matched_loss": f"N_opt({r}) / N_opt({f}) at matched loss",
    }
    reasons: list[str] = []
    for key, label in names.items():
        for method in ("approach3", "approach2"):
            e = c["by_method"][method][key]
            ci = e.get("ci95")
            ci_s = f"[{_g(ci[0])}, {_g(ci[1])}]" if ci else "—"
            head = " (headline)" if c[key]["method"] == method else ""
            L.append(f"| {label}{head} | {method} | {_g(e['value'])} | {ci_s} | {e['status']} |")
            if e["status"] != "ok":
                reasons.append(f"{label}, {method}: {'; '.join(e['reasons'])}")
    L.append("")
    if reasons:
        L += ["Why numbers are withheld:", ""] + [f"- {x}" for x in dict.fromkeys(reasons)] + [""]
    return L


def render_markdown(doc: dict[str, Any]) -> str:
    """report.md from the fit.json content."""
    inp, st = doc["input"], doc["settings"]
    L = ["# Scaling-law report", ""]
    L.append(f"Input: `{inp['path']}` — {inp['n_rows']} runs, families: {', '.join(inp['families'])}.  ")
    L.append(f"Compute: {inp['compute']}. Allocation formulas: {st['allocation']}.  ")
    conv = inp.get("conventions") or {}
    shown = {k: v for k, v in conv.items() if not isinstance(v, (dict, list))}
    more = " (more in fit.json)" if len(shown) < len(conv) else ""
    L.append(
        "Conventions (companion JSON): "
        + (", ".join(f"{k} = {v}" for k, v in shown.items()) if shown else "none found")
        + f"{more}.  "
    )
    if st["bootstrap"]:
        L.append(f"Uncertainty: {st['bootstrap']} bootstrap resamples over runs (seed {st['seed']}), "
                 f"{int(100 * st['level'])}% percentile intervals.")  # fmt: skip
    else:
        L.append("Uncertainty: no bootstrap (point estimates only).")
    L.append("")
    L += _comparison_md(doc.get("comparison") or {}, doc.get("checks") or {})
    for fam, j in doc["families"].items():
        L += [f"## {fam} ({j['n_runs']} runs)", ""]
        a2, a3 = j["approach2"], j["approach3"]
        if "approach1" in j:
            L += ["### Approach 1 — lower envelope of training curves", ""]
            L += _approach_md(j["approach1"], ["a", "b", "G"])
        L += ["### Approach 2 — IsoFLOP parabolas", ""]
        L += _approach_md(a2, ["a", "b", "G", "a_plus_b"])
        if "budgets" in a2 and "skipped" not in a2:
            ok2 = a2.get("status", "ok") == "ok"
            L += ["| budget C | runs | N_opt | D_opt | D/N | L_min | flag |", "|---|---|---|---|---|---|---|"]
            for b in a2["budgets"]:
                flag = "; ".join(x for x in (b["note"], "" if b["used"] else "not used") if x)
                nn, dd, rr = (
                    (b["n_opt"], b["d_opt"], b["tokens_per_param"]) if ok2 and b["used"] else (None,) * 3
                )
                L.append(f"| {_g(b['budget'])} | {b['n_runs']} | {_g(nn)} | {_g(dd)} | "
                         f"{_g(rr)} | {_g(b['loss_min'], 4)} | {flag} |")  # fmt: skip
            L.append("")
            if "a_plus_b_expected" in a2 and ok2:
                L += [f"a + b = {_g(a2['a_plus_b'])}; the FLOP convention implies 1 + a(1 − s) = "
                      f"{_g(a2['a_plus_b_expected'])} (s = {_g(a2['flops_per_token_slope'])}, the slope of ln FLOPs "
                      "per token against ln N; s = 1 and a + b = 1 under C = 6ND).", ""]  # fmt: skip
        L += ["### Approach 3 — L(N, D) = E + A/N^α + B/D^β", ""]
        L += _approach_md(a3, ["E", "A", "B", "alpha", "beta", "a", "b", "G"])
        if "skipped" not in a3:
            L.append(f"Huber objective {_g(a3['objective'])} on {a3['n_points']} points; {a3['n_near_best']} of "
                     f"{a3['n_starts']} starts within 1% of the best.")  # fmt: skip
            L.append("")
        rows = [r for r in j["tokens_per_param"] if "a3_n_opt" in r or "a2_tokens_per_param" in r]
        if rows:
            L += ["### Compute-optimal allocation and tokens per parameter at the sampled budgets", ""]
            L += [
                "| C (flops column) | C = 6ND (A3's) | N_opt (A3) | D_opt (A3) | tokens/param D/N (A3) | D/N interval "
                "| D/N (A2) |",
                "|---|---|---|---|---|---|---|",
            ]
            for r in rows:
                L.append(f"| {_g(r['C'])} | {_g(r.get('C_6nd'))} | {_g(r.get('a3_n_opt'))} | {_g(r.get('a3_d_opt'))} | "
                         f"{_g(r.get('a3_tokens_per_param'))} | [{_g(r.get('a3_tokens_per_param_lo'))}, "
                         f"{_g(r.get('a3_tokens_per_param_hi'))}] | {_g(r.get('a2_tokens_per_param'))} |")  # fmt: skip
            L.append("")
    gap = doc["gap"]
    L += ["## Compute multiplier curve (Approach 3)", ""]
    if "skipped" in gap:
        L += [f"**Not shown:** {gap['skipped']}", ""]
    else:
        L += [
            f"M(C): {gap['definition']}. M > 1 means {gap['family']} needs more compute than {gap['reference']}. "
            f"Rows where {gap['family']}'s compute lies outside its sampled budgets are extrapolations: no value given.",
            "",
        ]
        L += ["| C | M(C) | interval | share of draws never reaching |", "|---|---|---|---|"]
        for r in gap.get("at_budgets") or []:
            if r.get("status", "ok") != "ok":
                L.append(f"| {_g(r['C'])} | — ({r['status']}: {'; '.join(r.get('reasons') or [])}) | — | — |")
                continue
            L.append(f"| {_g(r['C'])} | {_g(r['multiplier'])} | [{_g(r.get('lo'))}, {_g(r.get('hi'))}] | "
                     f"{_g(r.get('frac_unreachable'), 2)} |")  # fmt: skip
        emp = [e for e in gap.get("empirical_approach2") or [] if e["multiplier"] is not None
               and math.isfinite(e["multiplier"])]  # fmt: skip
        if emp:
            L += ["", "From the isoFLOP minima (Approach 2, interpolated, no extrapolation; C in the flops column): "
                  + ", ".join(f"C={_g(e['C'])}: {_g(e['multiplier'])}" for e in emp)]  # fmt: skip
        L.append("")
    if doc["figures"]:
        L += ["## Figures", ""]
        L += [f"![{p}]({p})" for p in doc["figures"] if p.endswith(".png")] + [""]
    if doc["warnings"]:
        L += ["## Warnings", ""] + [f"- {w}" for w in doc["warnings"]] + [""]
    return "\n".join(L)
