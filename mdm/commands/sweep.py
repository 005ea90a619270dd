"""``mdm sweep plan|run|status|collect SPEC``: isoFLOP and grid sweeps, locally or as a Slurm job array."""

from __future__ import annotations

import sys


def add_parser(sub) -> None:
    p = sub.add_parser("sweep", help="plan, run, watch and collect a sweep (configs/sweeps/*.yaml)")
    ss = p.add_subparsers(dest="sweep_command", required=True, metavar="ACTION")

    q = ss.add_parser("plan", help="print every run (name, params, tokens, C, tokens/param) without running")
    q.add_argument("spec")
    q.set_defaults(func=run)

    q = ss.add_parser(
        "run", help="start the runs not yet completed (re-run to resume; completed runs are skipped)"
    )
    q.add_argument("spec")
    q.add_argument("--launcher", choices=("local", "slurm"), default="local")
    q.add_argument(
        "--max-parallel", type=int, default=None, help="runs at a time (local) / array throttle (slurm)"
    )
    q.add_argument("--threads", type=int, default=None, help="local: torch threads per run")
    q.add_argument("--retry-failed", action="store_true", help="also restart runs whose summary says failed")
    q.add_argument(
        "--dry-run", action="store_true", help="write configs (and the sbatch script); start nothing"
    )
    q.set_defaults(func=run)

    q = ss.add_parser("status", help="table of runs: pending/queued/running/interrupted/completed/failed")
    q.add_argument("spec")
    q.set_defaults(func=run)

    q = ss.add_parser("collect", help="write results.csv (+ results.json) from the completed runs")
    q.add_argument("spec")
    q.add_argument("-o", "--out", default=None, help="CSV path (default <sweep_dir>/results.csv)")
    q.add_argument("--params", choices=("non_embedding", "total", "compute"), default="non_embedding")
    q.set_defaults(func=run)


def run(args) -> int:
    from mdm.sweep.plan import build_plan, format_plan
    from mdm.sweep.spec import SweepError, load_spec

    try:
        spec = load_spec(args.spec)
        plan = build_plan(spec)
        if args.sweep_command == "plan":
            print(format_plan(plan))
            return 0
        if args.sweep_command == "status":
            from mdm.sweep.status import format_status, sweep_states

            states = sweep_states(plan)
            print(format_status(plan, states))
            return 1 if any(s.status in ("failed", "corrupt") for s in states) else 0
        if args.sweep_command == "collect":
            from mdm.sweep.collect import collect

            out = args.out or str(spec.sweep_dir / "results.csv")
            rows, missing = collect(plan, out, params=args.params)
            print(f"[sweep] wrote {out} ({len(rows)} rows) and {out[:-4]}.json")
            if missing:
                kinds: dict[str, int] = {}
                for s in missing:
                    kinds[s.status] = kinds.get(s.status, 0) + 1
                print("[sweep] not collected: " + ", ".join(f"{n} {k}" for k, n in kinds.items()))
                for s in missing:
                    if s.status == "failed":
                        print(f"[sweep]   failed {s.name}: {(s.error or '').splitlines()[0][:300]}")
            return 0
        if args.launcher == "local":
            from mdm.sweep.local import run_local

            res = run_local(plan, args.max_parallel, args.threads, args.retry_failed, args.dry_run)
            return res.exit_code
        from mdm.sweep.slurm import submit

        submit(plan, args.max_parallel, args.retry_failed, args.dry_run)
        return 0
    except SweepError as e:
        print(f"mdm sweep: {e}", file=sys.stderr)
        return 2
