"""The sweep report: Approaches 2 and 3 (with bootstrap intervals) per family, the two-family
compute multiplier, figures (PNG + SVG), ``report.md`` and ``fit.json`` in one directory.

Parts that the data cannot support (e.g. Approach 2 with a single budget, Approach 3 with fewer
points than parameters, the multiplier with one family) are skipped with a stated reason, never
a crash: the report says what was skipped and why.
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

from scaling import plots
from scaling.approach1 import Approach1Fit, fit_approach1
from scaling.approach2 import Approach2Fit, budget_labels, fit_approach2
from scaling.approach3 import Approach3Fit, fit_approach3
from scaling.atomic import write_json, write_text
from scaling.bootstrap import bootstrap_approach1, bootstrap_approach2, bootstrap_approach3
from scaling.errors import ScalingInputError
from scaling.gap import GapResult, compute_multiplier, empirical_multiplier
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


def _stderr(msg: str) -> None:
    print(f"[scaling] {msg}", file=sys.stderr, flush=True)


def sampled_budgets(df: pd.DataFrame, rtol: float = 0.25) -> np.ndarray:
    """Geometric-mean compute of each budget group, ascending."""
    lab = budget_labels(df, rtol)
    lc = np.log(df["flops"].to_numpy(float))
    return np.sort(np.array([np.exp(lc[lab == k].mean()) for k in np.unique(lab)]))


def fit_family(
    df: pd.DataFrame,
    family: str,
    *,
    n_boot: int = 200,
    seed: int = 0,
    budget_rtol: float = 0.25,
    a3_options: dict[str, Any] | None = None,
    runs_root: str | os.PathLike | None = None,
    progress: Callable[[str], None] = _stderr,
) -> FamilyFits:
    """Approaches 2 and 3 (+ bootstraps when n_boot ≥ 2) for one family; skips with reasons.
    With ``runs_root`` (run directories ``runs_root/<name>/``), Approach 1 too."""
    ff = FamilyFits(family=family, df=df, budgets=sampled_budgets(df, budget_rtol))
    progress(f"{family}: {len(df)} runs, {ff.budgets.size} budget(s)")
    if runs_root is not None:
        try:
            ff.history = load_run_histories([Path(runs_root) / n for n in df["name"]])
            ff.a1 = fit_approach1(ff.history, quiet=True, source=family)
            if n_boot >= 2:
                progress(f"{family}: Approach 1 bootstrap ({n_boot} resamples)")
                bootstrap_approach1(ff.a1, ff.history, n_boot=n_boot, seed=seed)
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
    """N_opt, D_opt and D/N at each sampled budget from Approach 3 (with intervals) and 2."""
    rows = []
    a2_by_c = {}
    if ff.a2 is not None:
        for b in ff.a2.budgets:
            if b.used:
                a2_by_c[b.budget] = b
    for c in ff.budgets if ff.budgets is not None else []:
        row: dict[str, Any] = {"C": float(c)}
        if ff.a3 is not None and ff.a3.params.alpha > 0 and ff.a3.params.beta > 0:
            p = ff.a3.params
            n_lo, n_hi, d_lo, d_hi, r_lo, r_hi = _iv_ratio(ff.a3, c, level)
            row.update(
                a3_n_opt=float(p.n_opt(c)),
                a3_d_opt=float(p.d_opt(c)),
                a3_tokens_per_param=float(p.tokens_per_param(c)),
                a3_tokens_per_param_lo=r_lo,
                a3_tokens_per_param_hi=r_hi,
            )
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
    progress: Callable[[str], None] = _stderr,
) -> dict[str, Any]:
    """Fit every family (or ``families``, in that order), compare the first two, write
    ``fit.json``, ``report.md`` and figures into ``out_dir``; returns the fit.json content.
    ``runs_root``: also fit Approach 1 from the runs' training curves (``runs_root/<name>/``)."""
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
                j[key] = fit.to_dict()
                warnings_all += [f"{fam}: {w}" for w in fit.warnings]
            else:
                j[key] = {"skipped": ff.skipped.get(key, "not run")}
                warnings_all.append(f"{fam}: {key} skipped: {ff.skipped.get(key)}")
        j["tokens_per_param"] = tokens_per_param_rows(ff, level)
        fam_json[fam] = j

    gap: GapResult | None = None
    gap_json: dict[str, Any]
    if len(fams) < 2:
        gap_json = {"skipped": f"needs two families; found {len(fams)} ({', '.join(fams)})"}
    else:
        f_, r_ = fams[0], fams[1]
        if fits[f_].a3 is None or fits[r_].a3 is None:
            gap_json = {"skipped": f"Approach 3 missing for {f_ if fits[f_].a3 is None else r_}"}
        else:
            allc = np.concatenate([fits[f_].budgets, fits[r_].budgets])
            c_eval = np.logspace(np.log10(allc.min()) - 0.5, np.log10(allc.max()) + 0.5, 41)
            sf = fits[f_].a3.samples["theta"] if fits[f_].a3.samples else None
            sr = fits[r_].a3.samples["theta"] if fits[r_].a3.samples else None
            progress(f"compute multiplier: {f_} vs {r_}")
            gap = compute_multiplier(
                fits[f_].a3.theta,
                fits[r_].a3.theta,
                c_eval,
                family=f_,
                reference=r_,
                samples_f=sf,
                samples_r=sr,
                level=level,
            )
            if fits[f_].a2 is not None and fits[r_].a2 is not None:
                gap.empirical = empirical_multiplier(fits[f_].a2, fits[r_].a2)
            gap_json = gap.to_dict()
            at = compute_multiplier(
                fits[f_].a3.theta,
                fits[r_].a3.theta,
                fits[r_].budgets,
                family=f_,
                reference=r_,
                samples_f=sf,
                samples_r=sr,
                level=level,
            )
            gap_json["at_budgets"] = at.to_dict()["curve"]
    if "skipped" in gap_json:
        warnings_all.append(f"compute multiplier skipped: {gap_json['skipped']}")

    figures: list[str] = []
    if make_plots:
        progress("plots")
        figures = _write_plots(out, fits, gap, level)

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
        "families": fam_json,
        "gap": gap_json,
        "figures": figures,
        "warnings": warnings_all,
    }
    write_json(out / "fit.json", doc)
    write_text(out / "report.md", render_markdown(doc))
    progress(f"wrote {out / 'report.md'} and {out / 'fit.json'}")
    return doc


def _write_plots(out: Path, fits: dict[str, FamilyFits], gap: GapResult | None, level: float) -> list[str]:
    written: list[Path] = []
    a2 = {f: ff.a2 for f, ff in fits.items() if ff.a2 is not None}
    a3 = {f: ff.a3 for f, ff in fits.items() if ff.a3 is not None}
    if a2:
        written += plots.save(plots.plot_isoflop({f: (fits[f].df, a2[f]) for f in a2}), out, "isoflop")
    for f, ff in fits.items():
        if ff.a1 is not None and ff.history is not None:
            written += plots.save(plots.plot_envelope(ff.history, ff.a1), out, f"envelope_{f}")
    written += plots.save(
        plots.plot_frontier({f: ff.df for f, ff in fits.items()}, a3, a2, level), out, "frontier"
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
        written += plots.save(plots.plot_gap(gap), out, "multiplier")
    return [p.name for p in written]


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
    for fam, j in doc["families"].items():
        L += [f"## {fam} ({j['n_runs']} runs)", ""]
        a2, a3 = j["approach2"], j["approach3"]
        if "approach1" in j:
            a1 = j["approach1"]
            L += ["### Approach 1 — lower envelope of training curves", ""]
            if "skipped" in a1:
                L += [f"**Skipped:** {a1['skipped']}", ""]
            else:
                L += _param_table(a1, ["a", "b", "G"]) + [""]
        L += ["### Approach 2 — IsoFLOP parabolas", ""]
        if "skipped" in a2:
            L += [f"**Skipped:** {a2['skipped']}", ""]
        else:
            L += _param_table(a2, ["a", "b", "G"]) + [""]
            L += ["| budget C | runs | N_opt | D_opt | D/N | L_min | flag |", "|---|---|---|---|---|---|---|"]
            for b in a2["budgets"]:
                flag = "; ".join(x for x in (b["note"], "" if b["used"] else "not used") if x)
                L.append(f"| {_g(b['budget'])} | {b['n_runs']} | {_g(b['n_opt'])} | {_g(b['d_opt'])} | "
                         f"{_g(b['tokens_per_param'])} | {_g(b['loss_min'], 4)} | {flag} |")  # fmt: skip
            L.append("")
        L += ["### Approach 3 — L(N, D) = E + A/N^α + B/D^β", ""]
        if "skipped" in a3:
            L += [f"**Skipped:** {a3['skipped']}", ""]
        else:
            L += _param_table(a3, ["E", "A", "B", "alpha", "beta", "a", "b", "G"]) + [""]
            L.append(f"Huber objective {_g(a3['objective'])} on {a3['n_points']} points; {a3['n_near_best']} of "
                     f"{a3['n_starts']} starts within 1% of the best.")  # fmt: skip
            L.append("")
        rows = j["tokens_per_param"]
        if rows:
            L += ["### Compute-optimal allocation and tokens per parameter at the sampled budgets", ""]
            L += [
                "| C | N_opt (A3) | D_opt (A3) | tokens/param D/N (A3) | D/N interval | D/N (A2) |",
                "|---|---|---|---|---|---|",
            ]
            for r in rows:
                L.append(f"| {_g(r['C'])} | {_g(r.get('a3_n_opt'))} | {_g(r.get('a3_d_opt'))} | "
                         f"{_g(r.get('a3_tokens_per_param'))} | [{_g(r.get('a3_tokens_per_param_lo'))}, "
                         f"{_g(r.get('a3_tokens_per_param_hi'))}] | {_g(r.get('a2_tokens_per_param'))} |")  # fmt: skip
            L.append("")
    gap = doc["gap"]
    L += ["## Compute multiplier", ""]
    if "skipped" in gap:
        L += [f"**Skipped:** {gap['skipped']}", ""]
    else:
        L += [
            f"M(C): {gap['definition']}. M > 1 means {gap['family']} needs more compute than {gap['reference']}.",
            "",
        ]
        L += ["| C | M(C) | interval | share of draws never reaching |", "|---|---|---|---|"]
        for r in gap.get("at_budgets") or []:
            L.append(f"| {_g(r['C'])} | {_g(r['multiplier'])} | [{_g(r.get('lo'))}, {_g(r.get('hi'))}] | "
                     f"{_g(r.get('frac_unreachable'), 2)} |")  # fmt: skip
        emp = [e for e in gap.get("empirical_approach2") or [] if e["multiplier"] is not None]
        if emp:
            L += ["", "From the isoFLOP minima (Approach 2, interpolated, no extrapolation): "
                  + ", ".join(f"C={_g(e['C'])}: {_g(e['multiplier'])}" for e in emp)]  # fmt: skip
        L.append("")
    if doc["figures"]:
        L += ["## Figures", ""]
        L += [f"![{p}]({p})" for p in doc["figures"] if p.endswith(".png")] + [""]
    if doc["warnings"]:
        L += ["## Warnings", ""] + [f"- {w}" for w in doc["warnings"]] + [""]
    return "\n".join(L)
