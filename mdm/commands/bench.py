"""``mdm bench train``: matmul peak, training tokens/s and MFU of the tiny default configs."""

from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="benchmarks that print figures (never timed tests)")
    p.add_argument("what", choices=["train"], help="train: tokens/s and MFU at a few widths")
    p.add_argument("--widths", default="128,256,384", help="comma-separated model widths")
    p.add_argument("--objective", default="mdlm")
    p.add_argument("--steps", type=int, default=10)
    p.set_defaults(func=run)


def run(args) -> int:
    from mdm.bench import run_train_bench

    widths = tuple(int(w) for w in args.widths.split(","))
    run_train_bench(widths, args.objective, args.steps)
    return 0
