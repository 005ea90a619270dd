"""``mdm bench train``: bare step vs the full ``mdm train`` loop vs a minimal GPT, threads, precision.

    mdm bench gpu --json FILE [--device cpu --tiny] [--budget S] [--cap PHASE=S]  (see mdm/bench_gpu.py)
    mdm bench train [--widths 64,128] [--threads 1,2] [--steps 6] [--rounds 3] [--depth 2]
                    [--precision-widths 64,128,256] [--no-full] [--no-minimal] [--no-layout] [--compile]
                    [--json FILE]

Widths 256 and 384 (the earlier default) are ``--widths 64,128,256,384``. See mdm/bench.py for what
each row times; a benchmark prints figures and never asserts a speed.
"""

from __future__ import annotations

import argparse


def _ints(flag: str, text: str) -> tuple[int, ...]:
    try:
        vals = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise SystemExit(f"mdm bench: {flag} wants comma-separated integers, got {text!r}") from None
    if any(v <= 0 for v in vals):
        raise SystemExit(f"mdm bench: {flag} values must be positive, got {text!r}")
    return vals


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="benchmarks that print figures (never timed tests)")
    p.add_argument(
        "what",
        choices=["train", "gpu"],
        help="train: tokens/s, GFLOP/s and MFU at a few widths; gpu: the GPU check (mdm/bench_gpu.py)",
    )
    _train_args(p)
    # argparse hands everything after ``what`` to this list: gpu's own flags, or train's (re-parsed in run)
    p.add_argument("rest", nargs=argparse.REMAINDER, help="gpu: the flags of python -m mdm.bench_gpu")
    p.set_defaults(func=run)


def _train_args(p) -> None:
    p.add_argument("--widths", default="64,128", help="comma-separated model widths (e.g. 64,128,256,384)")
    p.add_argument("--threads", default="1,2", help="comma-separated torch thread counts to measure at")
    p.add_argument("--objective", default="mdlm", help="objective of the bare and full-loop rows")
    p.add_argument("--steps", type=int, default=6, help="optimizer steps per timed window")
    p.add_argument("--rounds", type=int, default=3, help="interleaved windows per row (best / median ratio)")
    p.add_argument("--depth", type=int, default=2)
    p.add_argument("--head-dim", type=int, default=32)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--batch", type=int, default=32, help="sequences per step")
    p.add_argument("--vocab", type=int, default=256, help="real tokens of the synthetic data")
    p.add_argument("--activation", default="gelu", choices=["gelu", "gelu_tanh"])
    p.add_argument(
        "--precision-widths", default="64,128,256", help="widths of the fp32-vs-bf16 rows ('' skips them)"
    )
    p.add_argument("--no-full", action="store_true", help="skip the full mdm train loop rows")
    p.add_argument("--no-minimal", action="store_true", help="skip the minimal-GPT comparison")
    p.add_argument("--no-layout", action="store_true", help="skip 2 processes x 1 thread vs 1 x 2 threads")
    p.add_argument(
        "--compile", action="store_true", help="also time eager vs torch.compile'd steps (train.compile)"
    )
    p.add_argument(
        "--work-dir", default=None, help="where the synthetic data and runs go (default: a temp dir)"
    )
    p.add_argument("--json", default=None, help="also write every figure to this JSON file")


def run(args) -> int:
    import json

    if args.what == "gpu":  # its own flags (mdm.bench_gpu); --json is shared
        from mdm.bench_gpu import main

        return main((["--json", args.json] if args.json else []) + list(args.rest))
    if args.rest:  # train's flags given after the word train
        q = argparse.ArgumentParser(prog="mdm bench train")
        _train_args(q)
        q.parse_args(args.rest, namespace=args)

    from mdm.bench import Shape, run_train_bench
    from mdm.io import atomic_write_text

    if args.steps < 1 or args.rounds < 1:
        raise SystemExit(f"mdm bench: --steps and --rounds must be >= 1, got {args.steps} and {args.rounds}")
    shape = Shape(
        depth=args.depth,
        head_dim=args.head_dim,
        seq_len=args.seq_len,
        batch=args.batch,
        vocab=args.vocab,
        activation=args.activation,
    )
    result = run_train_bench(
        widths=_ints("--widths", args.widths),
        objective=args.objective,
        steps=args.steps,
        rounds=args.rounds,
        threads=_ints("--threads", args.threads),
        shape=shape,
        full=not args.no_full,
        minimal=not args.no_minimal,
        layout=not args.no_layout,
        precision_widths=_ints("--precision-widths", args.precision_widths),
        compile=args.compile,
        work_dir=args.work_dir,
    )
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=1) + "\n")
    return 0
