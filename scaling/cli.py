"""Command line: ``python -m scaling fit | report | synth``.

python -m scaling fit RESULTS.csv --approach 1|2|3 [--bootstrap N] [--json OUT] [--plot DIR]
python -m scaling fit RESULTS.csv --form data-constrained [--bootstrap N] [--json OUT] [--plot DIR]
python -m scaling report RESULTS.csv --out DIR [--bootstrap N] [--families mdlm,ar]
python -m scaling synth OUT.csv [--families mdlm,ar]     (a results file from known parameters)
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from scaling.errors import ScalingInputError, ScalingWarning

GRID_KEYS = ("alpha", "beta", "e", "a", "b")


def _parse_grid(specs: Sequence[str] | None) -> dict[str, list[float]] | None:
    """``KEY=start:stop:step`` or ``KEY=v1,v2,…`` for KEY in alpha, beta, e, a, b."""
    if not specs:
        return None
    out: dict[str, list[float]] = {}
    for s in specs:
        key, sep, val = s.partition("=")
        if not sep or key not in GRID_KEYS:
            raise ScalingInputError(
                f"--grid '{s}': expected KEY=start:stop:step or KEY=v1,v2 with KEY in {GRID_KEYS}"
            )
        try:
            if ":" in val:
                a, b, st = (float(x) for x in val.split(":"))
                if st <= 0:
                    raise ValueError("step must be > 0")
                out[key] = list(np.arange(a, b + 1e-9 * max(1.0, abs(b)), st))
            else:
                out[key] = [float(x) for x in val.split(",")]
        except ValueError as e:
            raise ScalingInputError(f"--grid '{s}': {e}") from e
    return out


def _companion_params(results: str) -> str:
    """The summary key the results file's ``params`` column holds, from its companion .json."""
    import json

    p = Path(results).with_suffix(".json")
    try:
        return str(json.loads(p.read_text()).get("params") or "params_non_embedding")
    except (OSError, ValueError):
        return "params_non_embedding"


def _smooth_arg(s: str) -> int | str:
    if s == "auto":
        return s
    try:
        w = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--smooth must be a whole number of points or 'auto', got {s!r}"
        ) from None
    if w < 0:
        raise argparse.ArgumentTypeError(f"--smooth must be >= 0, got {w}")
    return w


def _families(s: str | None) -> list[str] | None:
    return [f.strip() for f in s.split(",") if f.strip()] if s else None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m scaling", description="Compute-optimal scaling-law fits.")
    sub = p.add_subparsers(dest="command", required=True)

    f = sub.add_parser(
        "fit", help="fit one approach to RESULTS.csv, print a table, optionally write JSON/plots"
    )
    f.add_argument("results", help="CSV with params,tokens,loss (optional flops,family,name)")
    f.add_argument("--approach", type=int, choices=(1, 2, 3), help="1 | 2 | 3 (or --form)")
    f.add_argument(
        "--form",
        choices=("data-constrained",),
        help="data-constrained: R_D* of repeated data per family (scaling/data_constrained.py)",
    )
    f.add_argument(
        "--bootstrap",
        type=int,
        default=None,
        metavar="N",
        help="bootstrap resamples over runs (default 0: none; --form data-constrained: 200)",
    )
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--level", type=float, default=0.95, help="percentile-interval level")
    f.add_argument("--json", metavar="OUT", help="write the fit as JSON (atomically)")
    f.add_argument("--plot", metavar="DIR", help="write figures (PNG and SVG) here")
    f.add_argument("--family", help="which family to fit when the file holds several")
    f.add_argument("--delta", type=float, default=1e-3, help="Approach 3: Huber delta")
    f.add_argument("--optimizer", choices=("lbfgs", "scipy"), default="lbfgs", help="Approach 3 optimiser")
    f.add_argument(
        "--grid", action="append", metavar="KEY=SPEC", help="Approach 3 start grid override, repeatable"
    )
    f.add_argument(
        "--budget-rtol", type=float, default=0.25, help="Approach 2: runs within this factor share a budget"
    )
    f.add_argument(
        "--runs-root", metavar="DIR", help="Approach 1: run directories DIR/<name>/ (metrics.jsonl)"
    )
    f.add_argument(
        "--params-key", default="params_non_embedding", help="Approach 1: summary.json key used as N"
    )
    f.add_argument(
        "--smooth",
        type=_smooth_arg,
        default="auto",
        help="Approach 1: Savitzky-Golay window over logged points, 0 for none, or auto (a tenth of each curve)",
    )
    f.set_defaults(func=cmd_fit)

    r = sub.add_parser(
        "report", help="Approaches 2 and 3 with bootstrap, family multiplier, plots, report.md, fit.json"
    )
    r.add_argument("results")
    r.add_argument("--out", required=True, metavar="DIR")
    r.add_argument("--bootstrap", type=int, default=200, metavar="N")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--level", type=float, default=0.95)
    r.add_argument("--families", help="comma list, e.g. mdlm,ar: the first's multiplier against the second")
    r.add_argument("--budget-rtol", type=float, default=0.25)
    r.add_argument("--delta", type=float, default=1e-3)
    r.add_argument(
        "--grid", action="append", metavar="KEY=SPEC", help="Approach 3 start grid override, repeatable"
    )
    r.add_argument("--runs-root", metavar="DIR", help="also fit Approach 1 from DIR/<name>/metrics.jsonl")
    r.add_argument(
        "--params-key",
        default=None,
        help="Approach 1: summary.json key used as N (default: the 'params' named by the results' companion "
        ".json, else params_non_embedding; params_compute = flops_per_token / 6)",
    )
    r.add_argument("--no-plots", action="store_true")
    r.set_defaults(func=cmd_report)

    s = sub.add_parser("synth", help="write a results CSV (+ companion JSON) drawn from known parameters")
    s.add_argument("out")
    s.add_argument("--families", default="mdlm,ar")
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=cmd_synth)
    return p


def _table(d: dict[str, Any], keys: Sequence[str]) -> str:
    iv = d.get("intervals") or {}
    rows = [("param", "estimate", "SE", "lo", "hi")]
    for k in keys:
        v = iv.get(k, {})
        rows.append((k, _fmt(d.get(k)), _fmt(v.get("se")), _fmt(v.get("lo")), _fmt(v.get("hi"))))
    w = [max(len(r[i]) for r in rows) for i in range(5)]
    return "\n".join("  ".join(c.rjust(w[i]) if i else c.ljust(w[i]) for i, c in enumerate(r)) for r in rows)


def _fmt(x: Any) -> str:
    if x is None:
        return "-"
    if isinstance(x, float) and not np.isfinite(x):
        return "nan"
    return f"{x:.5g}"


def cmd_fit(args: argparse.Namespace) -> int:
    from scaling import plots
    from scaling.approach1 import fit_approach1
    from scaling.approach2 import fit_approach2
    from scaling.approach3 import fit_approach3
    from scaling.atomic import write_json
    from scaling.bootstrap import bootstrap_approach1, bootstrap_approach2, bootstrap_approach3
    from scaling.results import load_results, load_run_histories

    if args.form == "data-constrained":
        from scaling.data_constrained import run_fit

        n_boot = 200 if args.bootstrap is None else args.bootstrap
        run_fit(args.results, args.json, args.plot, n_boot, args.seed, args.level, args.family)
        return 0
    if args.approach is None:
        raise ScalingInputError("fit needs --approach 1|2|3 or --form data-constrained")
    args.bootstrap = args.bootstrap or 0
    res = load_results(args.results)
    fams = res.families
    if args.family:
        df = res.family(args.family)
        fam = args.family
    elif len(fams) > 1:
        raise ScalingInputError(
            f"{args.results} holds {len(fams)} families ({', '.join(fams)}); choose one with --family, "
            "or run `python -m scaling report` to fit each and compare them"
        )
    else:
        df, fam = res.df, fams[0]
    figs = []
    if args.approach == 3:
        fit = fit_approach3(
            df["params"], df["tokens"], df["loss"], delta=args.delta, grid=_parse_grid(args.grid),
            optimizer=args.optimizer, quiet=True,
        )  # fmt: skip
        if args.bootstrap:
            bootstrap_approach3(fit, df["params"], df["tokens"], df["loss"], n_boot=args.bootstrap, seed=args.seed,
                                level=args.level)  # fmt: skip
        keys = ["E", "A", "B", "alpha", "beta", "a", "b", "G"]
        if args.plot:
            figs += [
                plots.plot_contours(df, fit, f"Fitted L(N, D) — {fam}"),
                plots.plot_frontier({fam: df}, {fam: fit}),
            ]
            names = ["contours", "frontier"]
    elif args.approach == 2:
        fit = fit_approach2(df, budget_rtol=args.budget_rtol, quiet=True, source=args.results)
        if args.bootstrap:
            bootstrap_approach2(fit, df, n_boot=args.bootstrap, seed=args.seed, level=args.level,
                                budget_rtol=args.budget_rtol)  # fmt: skip
        keys = ["a", "b", "G"]
        if args.plot:
            figs += [plots.plot_isoflop({fam: (df, fit)}), plots.plot_allocation({}, {fam: fit})]
            names = ["isoflop", "allocation"]
    else:
        if args.runs_root:
            dirs = [Path(args.runs_root) / n for n in df["name"]]
            hist = load_run_histories(dirs, params_key=args.params_key)
        else:
            hist = df
        fit = fit_approach1(hist, smooth=args.smooth, quiet=True, source=args.results)
        if args.bootstrap:
            bootstrap_approach1(
                fit, hist, n_boot=args.bootstrap, seed=args.seed, level=args.level, smooth=args.smooth
            )
        keys = ["a", "b", "G"]
        if args.plot:
            figs += [plots.plot_envelope(hist, fit)]
            names = ["envelope"]
    from scaling import checks
    from scaling.report import sampled_budgets

    if args.approach == 3:
        b6 = sampled_budgets(df, args.budget_rtol, "6nd")
        reasons = checks.check_approach3(fit, b6, float(df["loss"].min()))
    else:
        reasons = checks.check_allocation_fit(fit, sampled_budgets(df, args.budget_rtol))
    d = {**fit.to_dict(), **checks.verdict(reasons)}
    d["family"] = fam
    d["input"] = res.describe()
    print(f"Approach {args.approach} — {fam} — {d['n_points']} points — compute: {res.compute}")
    if args.approach == 2:
        print(fit.budget_table().to_string(index=False))
    print(_table(d, keys))
    print(f"objective = {_fmt(d['objective'])}")
    if reasons:
        print(f"status: FLAGGED, not a result ({'; '.join(reasons)})")
    else:
        print("status: ok (passed the checks of scaling.checks)")
    for w in fit.warnings:
        print(f"WARNING: {w}", file=sys.stderr)
    if args.json:
        write_json(args.json, d)
        print(f"wrote {args.json}")
    for fig, name in zip(figs, names if figs else []):
        for p in plots.save(fig, args.plot, name):
            print(f"wrote {p}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from scaling.report import make_report
    from scaling.results import load_results

    res = load_results(args.results)
    doc = make_report(
        res,
        args.out,
        n_boot=args.bootstrap,
        seed=args.seed,
        families=_families(args.families),
        level=args.level,
        budget_rtol=args.budget_rtol,
        a3_options={"delta": args.delta, "grid": _parse_grid(args.grid)},
        runs_root=args.runs_root,
        make_plots=not args.no_plots,
        params_key=args.params_key or _companion_params(args.results),
    )
    for fam, j in doc["families"].items():
        for key in [k for k in ("approach1", "approach2", "approach3") if k in j]:
            v = j[key]
            if "skipped" in v:
                print(f"{fam} {key}: SKIPPED ({v['skipped']})")
            elif v.get("status") == "flagged":
                print(f"{fam} {key}: FLAGGED, not a result ({'; '.join(v['reasons'])})")
            else:
                iv = (v.get("intervals") or {}).get("a", {})
                ci = f" [{_fmt(iv.get('lo'))}, {_fmt(iv.get('hi'))}]" if iv else ""
                print(f"{fam} {key}: a = {_fmt(v['a'])}{ci}, b = {_fmt(v['b'])}")
    comp = doc.get("comparison") or {}
    if "family" not in comp:
        print(f"comparison: SKIPPED ({'; '.join(comp.get('reasons') or ['not computed'])})")
    else:
        c_ref = comp["C_reference"]["flops"]
        for key, what in (("multiplier", f"multiplier {comp['family']} vs {comp['reference']}"),
                          ("nopt_ratio", f"N_opt({comp['reference']})/N_opt({comp['family']})")):  # fmt: skip
            e = comp[key]
            if e["status"] == "ok":
                ci = e.get("ci95")
                ci_s = f" [{_fmt(ci[0])}, {_fmt(ci[1])}]" if ci else ""
                print(f"{what} at C={c_ref:.3g}: {_fmt(e['value'])}{ci_s} ({e['method']})")
            else:
                print(f"{what} at C={c_ref:.3g}: NOT REPORTED ({e['status']}: {e['reasons'][0]})")
    for w in doc["warnings"]:
        print(f"WARNING: {w}", file=sys.stderr)
    print(f"wrote {Path(args.out) / 'report.md'}")
    fitted = [
        (fam, k)
        for fam, j in doc["families"].items()
        for k in ("approach1", "approach2", "approach3")
        if k in j and "skipped" not in j[k]
    ]
    if not fitted:
        first = next(iter(doc["families"].values()))
        why = first.get("approach3", {}).get("skipped") or first.get("approach2", {}).get("skipped")
        print(f"error: every fit was skipped ({why})", file=sys.stderr)
        return 2
    return 0


def cmd_synth(args: argparse.Namespace) -> int:
    from scaling.synthetic import write_example

    fams = _families(args.families) or ["mdlm", "ar"]
    write_example(args.out, families=fams, seed=args.seed)
    print(f"wrote {args.out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ScalingWarning)  # the CLI prints them itself
            return int(args.func(args))
    except ScalingInputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
