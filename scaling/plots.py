"""Figures (matplotlib's object API, no pyplot state): each function returns a Figure; ``save``
writes it as PNG and SVG. In a notebook, display a returned figure with IPython's ``display``."""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from scaling.approach1 import Approach1Fit
from scaling.approach2 import Approach2Fit
from scaling.approach3 import Approach3Fit
from scaling.gap import GapResult

FAMILY_COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown")


def _color(i: int) -> str:
    return FAMILY_COLORS[i % len(FAMILY_COLORS)]


def _count_label(v: float, _pos: object = None) -> str:
    for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if v >= div:
            return f"{v / div:g}{unit}"
    return f"{v:g}"


def _log_count_xaxis(ax) -> None:
    """A log x axis of counts labelled 1, 2, 5 per decade (3k, 10k, 20k, ...), without minor labels: a
    span under a decade otherwise gets every minor tick labelled in scientific notation, overlapping."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(_count_label))
    ax.xaxis.set_minor_formatter(NullFormatter())


def save(fig: Figure, out_dir: str | os.PathLike, stem: str) -> list[Path]:
    """Write ``stem``.png and ``stem``.svg into ``out_dir`` (each via a temporary file + os.replace)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext in ("png", "svg"):
        p = out / f"{stem}.{ext}"
        tmp = out / f".{stem}.tmp.{ext}"
        fig.savefig(tmp, dpi=120, bbox_inches="tight", format=ext)
        os.replace(tmp, p)
        paths.append(p)
    return paths


def _band(samples: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    q = (1.0 - level) / 2.0
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns
        return np.nanquantile(samples, q, axis=0), np.nanquantile(samples, 1.0 - q, axis=0)


FAMILY_CMAPS = ("Blues", "Oranges", "Greens", "Reds", "Purples", "Greys")


def plot_isoflop(
    fits: Mapping[str, tuple[pd.DataFrame, Approach2Fit | None]],
    valid: Mapping[str, bool] | None = None,
    notes: Mapping[str, str] | None = None,
    budget_rtol: float = 0.25,
) -> Figure:
    """Loss against N per budget, one panel per family, each family in its own colour (shades:
    budgets). Every family's runs are drawn; the fitted parabolas and their vertices only where
    the family's Approach 2 exists and is ``valid`` (default: when it exists), and only for the
    budgets it used. Hollow vertices are flagged (edge of the sampled sizes or flat)."""
    from matplotlib import colormaps

    from scaling.approach2 import budget_labels

    k = max(len(fits), 1)
    fig = Figure(figsize=(5.2 * k, 4.0), layout="constrained")
    axes = fig.subplots(1, k, squeeze=False)[0]
    for i, (ax, (fam, (df, fit))) in enumerate(zip(axes, fits.items())):
        ok = fit is not None and (valid is None or bool(valid.get(fam, True)))
        cmap = colormaps[FAMILY_CMAPS[i % len(FAMILY_CMAPS)]]
        lab = budget_labels(df, budget_rtol)
        groups = np.unique(lab)
        lf = np.log(df["flops"].to_numpy(float))
        groups = groups[np.argsort([lf[lab == g].mean() for g in groups])]
        n_all, l_all = df["params"].to_numpy(float), df["loss"].to_numpy(float)
        for j, g in enumerate(groups):
            m = lab == g
            col = cmap(0.4 + 0.5 * (j / max(groups.size - 1, 1)))
            c = float(np.exp(lf[m].mean()))
            b = None
            if ok:
                b = min(fit.budgets, key=lambda bb: abs(np.log(bb.budget / c)))
            used = b is not None and b.used
            ax.scatter(n_all[m], l_all[m], color=col, s=18, edgecolors="k", linewidths=0.3,
                       label=f"C={c:.2g}" + ("" if not ok or used else " (not used)"))  # fmt: skip
            if used:
                ns = n_all[m]
                grid = np.exp(np.linspace(np.log(ns.min()) - 0.3, np.log(ns.max()) + 0.3, 100))
                ax.plot(grid, b.parabola(grid), color=col, lw=1)
                face = "none" if (b.edge or b.flat) else col
                ax.scatter(
                    [b.n_opt], [b.loss_min], marker="D", s=50, facecolors=face, edgecolors="k", zorder=5
                )
        _log_count_xaxis(ax)
        ax.set_xlabel("parameters N")
        ax.set_ylabel("loss (nats/token)")
        note = (notes or {}).get(fam) or ("" if ok else "Approach 2 not fitted: runs only")
        ax.set_title(f"IsoFLOP profiles — {fam}" + (f"\n({note})" if note else ""), fontsize=10)
        ax.legend(fontsize=7)
    return fig


def _cm(i: int, n: int) -> tuple[float, float, float, float]:
    from matplotlib import colormaps

    return colormaps["viridis"](0.1 + 0.8 * (i / max(n - 1, 1)))


def plot_frontier(
    data: Mapping[str, pd.DataFrame],
    a3: Mapping[str, Approach3Fit],
    a2: Mapping[str, Approach2Fit] | None = None,
    level: float = 0.95,
    note: str = "",
) -> Figure:
    """Loss against compute: every run, the Approach-3 compute-optimal frontier L*(C) (band:
    bootstrap) of the families in ``a3``, and the Approach-2 isoFLOP minima of those in ``a2``.
    ``note``: a line under the title (e.g. which families' fits were left out and why)."""
    from scaling.forms import optimal_loss_arrays

    fig = Figure(figsize=(6.4, 4.4), layout="constrained")
    ax = fig.subplots()
    allc = np.concatenate([d["flops"].to_numpy(float) for d in data.values()])
    cg = np.logspace(np.log10(allc.min()) - 0.3, np.log10(allc.max()) + 0.5, 120)
    for i, (fam, df) in enumerate(data.items()):
        col = _color(i)
        ax.scatter(df["flops"], df["loss"], color=col, s=12, alpha=0.5, label=f"{fam} runs")
        if fam in a3:
            f = a3[fam]
            ax.plot(cg, f.params.optimal_loss(cg), color=col, lw=1.5, label=f"{fam} L*(C), Approach 3")
            if f.samples is not None:
                th = f.samples["theta"]
                th = th[np.isfinite(th).all(axis=1)]
                if len(th) >= 2:
                    lo, hi = _band(optimal_loss_arrays(th, cg), level)
                    ax.fill_between(cg, lo, hi, color=col, alpha=0.15, lw=0)
        if a2 and fam in a2:
            bs = [b for b in a2[fam].budgets if b.used]
            ax.scatter([b.budget for b in bs], [b.loss_min for b in bs], marker="D", color=col, edgecolors="k", s=40,
                       zorder=5, label=f"{fam} isoFLOP minima")  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel("compute C (FLOPs)")
    ax.set_ylabel("loss (nats/token)")
    ax.set_title("Loss–compute frontier" + (f"\n({note})" if note else ""), fontsize=10)
    ax.legend(fontsize=7)
    return fig


def _inside_solid(ax, x: np.ndarray, y: np.ndarray, inside: np.ndarray, **kw) -> None:
    """``y(x)`` drawn as asked where ``inside`` (the sampled range), thin and dotted elsewhere (unlabelled)."""
    ax.plot(x[inside], y[inside], **kw)
    if not inside.all():
        kw.pop("label", None)
        ax.plot(x, np.where(inside, np.nan, y), **{**kw, "ls": ":", "lw": 1})


def plot_allocation(
    a3: Mapping[str, Approach3Fit],
    a2: Mapping[str, Approach2Fit] | None = None,
    c_range: tuple[float, float] | None = None,
    level: float = 0.95,
) -> Figure:
    """N_opt(C) and D_opt(C): Approach-2 vertices (error bars: bootstrap) and power law (band),
    Approach-3 closed form (band). Where a family has Approach-2 budgets, its laws are drawn solid with
    their bands only over those budgets, and dotted beyond them (an extrapolation)."""
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    ax_n, ax_d = fig.subplots(1, 2)
    cs = []
    for f in (a2 or {}).values():
        cs += [b.budget for b in f.budgets if b.used]
    if c_range is None:
        c_range = (min(cs), max(cs)) if cs else (1e15, 1e20)
    cg = np.logspace(np.log10(c_range[0]) - 0.5, np.log10(c_range[1]) + 0.5, 100)
    fams = list(dict.fromkeys(list(a3) + list(a2 or {})))
    for i, fam in enumerate(fams):
        col = _color(i)
        inside = np.ones(cg.size, bool)  # the family's sampled budgets (all of cg without Approach 2)
        if a2 and fam in a2 and any(b.used for b in a2[fam].budgets):
            c_used = [b.budget for b in a2[fam].budgets if b.used]
            inside = (cg >= min(c_used)) & (cg <= max(c_used))

        if a2 and fam in a2:
            f2 = a2[fam]
            used = [j for j, b in enumerate(f2.budgets) if b.used]
            c_b = np.array([f2.budgets[j].budget for j in used])
            for ax, key, law in ((ax_n, "n_opt", f2.n_law), (ax_d, "d_opt", f2.d_law)):
                y = np.array([getattr(f2.budgets[j], key) for j in used])
                yerr = None
                if f2.budget_intervals is not None:
                    iv = np.array(f2.budget_intervals[key])[used]  # (k, 2)
                    yerr = np.abs(np.stack([y - iv[:, 0], iv[:, 1] - y]))
                    yerr = np.where(np.isfinite(yerr), yerr, 0.0)
                ax.errorbar(
                    c_b,
                    y,
                    yerr=yerr,
                    fmt="D",
                    color=col,
                    mec="k",
                    ms=5,
                    capsize=2,
                    label=f"{fam} isoFLOP vertices",
                )
                _inside_solid(
                    ax,
                    cg,
                    law(cg),
                    inside,
                    color=col,
                    ls="--",
                    lw=1,
                    label=f"{fam} Approach 2: ∝ C^{law.exponent:.2f}",
                )
                if f2.samples is not None:
                    coef = f2.samples["k_N" if key == "n_opt" else "k_D"]
                    ex = f2.samples["a" if key == "n_opt" else "b"]
                    ok = np.isfinite(coef) & np.isfinite(ex)
                    if ok.sum() >= 2:
                        with np.errstate(all="ignore"):
                            vals = coef[ok, None] * cg[None, :] ** ex[ok, None]
                        lo, hi = _band(vals, level)
                        ax.fill_between(cg, lo, hi, where=inside, color=col, alpha=0.08, lw=0)
        if fam in a3:
            f3 = a3[fam]
            for ax, fn, ex in ((ax_n, f3.params.n_opt, f3.params.a), (ax_d, f3.params.d_opt, f3.params.b)):
                _inside_solid(
                    ax, cg, fn(cg), inside, color=col, lw=1.5, label=f"{fam} Approach 3: ∝ C^{ex:.2f}"
                )
            if f3.samples is not None:
                th = f3.samples["theta"]
                th = th[np.isfinite(th).all(axis=1) & (th[:, 3] > 0) & (th[:, 4] > 0)]
                if len(th) >= 2:
                    from scaling.forms import allocation_arrays

                    with np.errstate(all="ignore"):  # extreme bootstrap draws overflow to inf
                        A, B, E = np.exp(th[:, 0]), np.exp(th[:, 1]), np.exp(th[:, 2])
                        a, b, G = allocation_arrays(E, A, B, th[:, 3], th[:, 4])
                        c6 = cg[None, :] / 6.0
                        bands = ((ax_n, G[:, None] * c6 ** a[:, None]), (ax_d, c6 ** b[:, None] / G[:, None]))
                    for ax, vals in bands:
                        lo, hi = _band(vals, level)
                        ax.fill_between(cg, lo, hi, where=inside, color=col, alpha=0.15, lw=0)
    for ax, lab in ((ax_n, "N_opt (parameters)"), (ax_d, "D_opt (tokens)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("compute C (FLOPs)")
        ax.set_ylabel(lab)
        ax.legend(fontsize=7)
    note = (
        " (dotted: beyond the sampled budgets)" if any(ln.get_linestyle() == ":" for ln in ax_n.lines) else ""
    )
    ax_n.set_title("Compute-optimal model size" + note, fontsize=10)
    ax_d.set_title("Compute-optimal tokens" + note, fontsize=10)
    return fig


def plot_contours(df: pd.DataFrame, fit: Approach3Fit, title: str = "") -> Figure:
    """Contours of the fitted L(N, D) over the data's (N, D) range, with the runs, iso-compute lines
    (dotted) and the compute-optimal path N_opt(C), D_opt(C)."""
    fig = Figure(figsize=(6.0, 4.8), layout="constrained")
    ax = fig.subplots()
    n, d = df["params"].to_numpy(float), df["tokens"].to_numpy(float)
    ln = np.linspace(np.log10(n.min()) - 0.5, np.log10(n.max()) + 0.5, 160)
    ld = np.linspace(np.log10(d.min()) - 0.5, np.log10(d.max()) + 0.5, 160)
    NN, DD = np.meshgrid(10**ln, 10**ld)
    L = fit.params.loss(NN, DD)
    cs = ax.contour(NN, DD, L, levels=14, cmap="viridis", linewidths=0.8)
    ax.clabel(cs, fontsize=6, fmt="%.2f")
    sc = ax.scatter(n, d, c=df["loss"], cmap="viridis", edgecolors="k", s=22, zorder=5)
    fig.colorbar(sc, ax=ax, label="observed loss")
    cmin, cmax = 6 * NN.min() * DD.min(), 6 * NN.max() * DD.max()
    for lc in np.arange(np.ceil(np.log10(cmin)), np.floor(np.log10(cmax)) + 1):
        nn = 10**ln
        ax.plot(nn, 10**lc / (6 * nn), ls=":", color="grey", lw=0.6)
    if fit.params.alpha > 0 and fit.params.beta > 0:
        cg = np.logspace(np.log10(cmin), np.log10(cmax), 100)
        ax.plot(
            fit.params.n_opt(cg),
            fit.params.d_opt(cg),
            color="crimson",
            lw=1.5,
            label="compute-optimal (C = 6ND)",
        )
        ax.legend(fontsize=7, loc="upper left")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(10 ** ln[0], 10 ** ln[-1])
    ax.set_ylim(10 ** ld[0], 10 ** ld[-1])
    ax.set_xlabel("parameters N")
    ax.set_ylabel("tokens D")
    ax.set_title(title or "Fitted L(N, D) (Approach 3)")
    return fig


def plot_gap(gap: GapResult, headline: Mapping | None = None) -> Figure:
    """The compute multiplier M(C) of ``gap.family`` against ``gap.reference`` with its band.
    Where f's compute C·M(C) lies outside its sampled budgets (``gap.sampled_f``) the curve is
    dashed and the band left out: extrapolation. ``headline``: the report's comparison entry (a
    dict with value, ci95, C_reference, status), drawn as a point with its interval when ok."""
    fig = Figure(figsize=(6.0, 4.0), layout="constrained")
    ax = fig.subplots()
    ext = gap.extrapolated()
    inside = np.where(~ext, gap.multiplier, np.nan)
    ax.plot(gap.c, inside, color="k", lw=1.5, label="Approach 3 (point fit)")
    if ext.any():
        ax.plot(gap.c, np.where(ext, gap.multiplier, np.nan), color="k", lw=1, ls=":",
                label="extrapolation (outside the sampled budgets)")  # fmt: skip
    if gap.lo is not None and gap.hi is not None:
        lo = np.where(np.isfinite(gap.lo) & ~ext, gap.lo, np.nan)
        hi = np.where(np.isfinite(gap.hi) & ~ext, gap.hi, np.nan)
        if np.isfinite(lo).any() and np.isfinite(hi).any():
            ax.fill_between(gap.c, lo, hi, color="tab:blue", alpha=0.2, lw=0,
                            label=f"{int(100 * (gap.level or 0))}% bootstrap")  # fmt: skip
    emp = [e for e in gap.empirical if np.isfinite(e["multiplier"])]
    if emp:
        ax.scatter([e.get("C_6nd", e["C"]) for e in emp], [e["multiplier"] for e in emp], marker="D", color="tab:orange", edgecolors="k",
                   zorder=5, label="Approach 2 (isoFLOP minima)")  # fmt: skip
    if headline and headline.get("status") == "ok" and headline.get("method") == "approach3":
        ci = headline.get("ci95") or [headline["value"]] * 2
        v = headline["value"]
        ax.errorbar([headline["C_reference"]], [v], yerr=[[v - ci[0]], [ci[1] - v]], fmt="o", color="crimson",
                    capsize=3, zorder=6, label=f"at {gap.reference}'s smallest budget ({headline['method']})")  # fmt: skip
    ax.axhline(1.0, color="grey", lw=0.8, ls="--")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(f"compute C of {gap.reference} (FLOPs, C = 6ND)")
    ax.set_ylabel(f"compute multiplier of {gap.family}")
    ax.set_title(f"{gap.family} needs M(C)× the compute of {gap.reference} for the same loss")
    ax.legend(fontsize=7)
    return fig


def plot_envelope(history: pd.DataFrame, fit: Approach1Fit) -> Figure:
    """Training curves (loss against compute) and their lower envelope (Approach 1)."""
    fig = Figure(figsize=(6.4, 4.4), layout="constrained")
    ax = fig.subplots()
    sizes = np.sort(history["params"].unique())
    for _name, g in history.groupby("name", sort=False):
        j = int(np.searchsorted(sizes, g["params"].iloc[0]))
        ax.plot(g["flops"], g["loss"], color=_cm(j, sizes.size), lw=0.8, alpha=0.8)
    ax.plot(fit.grid, fit.envelope_loss, color="k", lw=2, label="lower envelope")
    ax.set_xscale("log")
    ax.set_xlabel("compute C (FLOPs)")
    ax.set_ylabel("loss (nats/token)")
    ax.set_title(f"Approach 1: N_opt ∝ C^{fit.a:.2f}, D_opt ∝ C^{fit.b:.2f}")
    ax.legend(fontsize=7)
    return fig
