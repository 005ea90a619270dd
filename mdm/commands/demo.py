"""``mdm demo`` (``make demo``): the main job, a CPU-sized isoFLOP study of MDLM against AR.

1. prepare the embedded ``books`` corpus (character level, so tiny models spend their FLOPs on the
   transformer rather than on a 4096-way output head);
2. plan the sweep ``configs/sweeps/demo.yaml`` (per family: its budgets, 5 sizes placed around a
   stated N_opt guess at each budget) and print it, with tokens/param, steps and any warnings;
3. train it with the local launcher (two runs at a time, one thread each), progress shown;
4. collect ``demo_out/results.csv`` (N = compute-equivalent parameters, FLOPs per token / 6, so that
   C = 6ND is the compute actually spent);
5. fit and report with the scaling package: ``python -m scaling report`` (Approaches 2 and 3 with
   bootstrap intervals, the MDLM/AR compute multiplier at AR's smallest budget and the ratio of
   compute-optimal sizes, plots, ``report.md``, ``fit.json``), then print the headline numbers, or
   why a number is withheld.

Re-running skips finished runs and resumes interrupted ones (Ctrl-C checkpoints them first).
"""

from __future__ import annotations

import resource
import subprocess
import sys
import time
from pathlib import Path

from mdm.sweep.spec import REPO_ROOT

DEFAULT_SPEC = "configs/sweeps/demo.yaml"


def add_parser(sub) -> None:
    p = sub.add_parser(
        "demo", help="the main job: a CPU-sized isoFLOP sweep of MDLM vs AR, fitted and reported"
    )
    p.add_argument("--spec", default=DEFAULT_SPEC, help=f"sweep spec (default {DEFAULT_SPEC})")
    p.add_argument("--max-parallel", type=int, default=2, help="runs at a time (default 2)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run (default 1)")
    p.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamples for the intervals")
    p.add_argument(
        "--families", default="mdlm,ar", help="the first family's compute multiplier against the second"
    )
    p.add_argument(
        "--params",
        choices=("compute", "non_embedding", "total"),
        default="compute",
        help="N in the fits (default compute: FLOPs per token / 6)",
    )
    p.set_defaults(func=run)


def _spec_path(s: str) -> Path:
    p = Path(s)
    if not p.is_file() and not p.is_absolute() and (REPO_ROOT / p).is_file():
        return REPO_ROOT / p
    return p


def _cpu_children() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run(args) -> int:
    from mdm.data.datamodule import ensure_prepared
    from mdm.sweep.collect import collect
    from mdm.sweep.local import run_local
    from mdm.sweep.plan import build_plan, format_plan
    from mdm.sweep.spec import SweepError, load_spec

    t0 = time.monotonic()

    def stage(i: int, what: str) -> None:
        print(f"\n[demo {time.monotonic() - t0:6.0f}s] ({i}/5) {what}", flush=True)

    try:
        spec = load_spec(_spec_path(args.spec))
        out = spec.sweep_dir
        stage(1, "preparing the embedded books corpus")
        from mdm.config import load

        base = load(spec.base.files, spec.base.overrides)
        print(f"[demo] data in {ensure_prepared(base.data)}")
        stage(2, f"planning the sweep {spec.path}")
        plan = build_plan(spec)
        print(format_plan(plan), flush=True)
        stage(3, f"training {len(plan.runs)} runs ({args.max_parallel} at a time; finished runs are skipped)")
        res = run_local(plan, max_parallel=args.max_parallel, threads=args.threads)
        if res.interrupted or res.not_started:
            print("[demo] interrupted: run `make demo` again to resume where it stopped")
            return 130
        stage(4, "collecting results")
        results = out / "results.csv"
        rows, missing = collect(plan, results, params=args.params)
        print(f"[demo] {results}: {len(rows)} runs" + (f" ({len(missing)} not completed)" if missing else ""))
    except SweepError as e:
        print(f"mdm demo: {e}", file=sys.stderr)
        return 2
    stage(5, "fitting scaling laws (Approaches 2 and 3, bootstrap) and writing the report")
    report = out / "report"
    cmd = [sys.executable, "-m", "scaling", "report", str(results), "--out", str(report),
           "--bootstrap", str(args.bootstrap), "--families", args.families, "--runs-root", str(spec.runs_dir)]  # fmt: skip
    print("[demo] " + " ".join(cmd), flush=True)
    rc = subprocess.run(cmd).returncode
    wall = time.monotonic() - t0
    print(
        f"\n[demo] done in {wall / 60:.1f} min ({_cpu_children() / 60:.1f} CPU-min in training and fitting processes)"
    )
    print(f"[demo] runs:    {spec.runs_dir}   (mdm sweep status {spec.path})")
    print(f"[demo] results: {results} (+ {results.with_suffix('.json').name})")
    if rc != 0:
        print(
            f"[demo] the scaling report failed (exit {rc}); the results file above is complete",
            file=sys.stderr,
        )
        return rc
    print(f"[demo] report:  {report / 'report.md'}")
    for line in headline(report / "fit.json"):
        print(f"[demo] {line}")
    figs = sorted(p.name for p in report.glob("*.png"))
    if figs:
        print(f"[demo] figures: {report}/ {' '.join(figs)}")
    return 1 if res.failed else 0


def headline(fit_json: Path) -> list[str]:
    """The comparison's numbers as the report states them: a value with its interval when it passed
    every check, else its status and reasons (never a withheld number)."""
    import json

    try:
        comp = json.loads(fit_json.read_text()).get("comparison") or {}
    except (OSError, ValueError):
        return [f"no comparison: {fit_json} unreadable"]
    if not comp or "multiplier" not in comp:
        return ["no comparison of the two families (see the report)"]
    names = {
        "multiplier": f"compute multiplier {comp.get('family')}/{comp.get('reference')}",
        "nopt_ratio": f"N_opt({comp.get('reference')}) / N_opt({comp.get('family')}) at equal compute",
        "nopt_ratio_matched_loss": f"N_opt({comp.get('reference')}) / N_opt({comp.get('family')}) at equal loss",
    }
    c_ref = (comp.get("C_reference") or {}).get("flops")
    out = [f"at {comp.get('reference')}'s smallest budget C = {c_ref:.3g} FLOPs:" if c_ref else "comparison:"]
    for k, name in names.items():
        e = comp.get(k)
        if not e:
            continue
        if e.get("status") == "ok" and e.get("ci95"):
            lo, hi = e["ci95"]
            out.append(f"  {name}: {e['value']:.3g} [{lo:.3g}, {hi:.3g}] (95%, {e.get('method', '')})")
        else:
            out.append(f"  {name}: not reported ({e.get('status')}: {'; '.join(e.get('reasons') or [])})")
    return out
