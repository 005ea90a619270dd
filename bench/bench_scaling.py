"""Benchmark (prints figures, asserts nothing): Approach-3 fit with the full 4,500-start grid on
250 synthetic points, and the bootstrap with 1,000 resamples.

    .venv/bin/python bench/bench_scaling.py [--points 250] [--resamples 1000] [--repeats 3]

Wall time is what a user waits; CPU time (this process, all threads) is less sensitive to other
jobs on a shared machine. The load average at the start is printed so a reader can judge.
"""

from __future__ import annotations

import os

# The batched fit uses no BLAS; scipy's L-BFGS-B (the comparison, and the final polish) does,
# and OpenBLAS's spinning threads slow its tiny calls ~25x when the 2 cores are busy.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402


def _timed(fn):
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w0, time.process_time() - c0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--points", type=int, default=250)
    p.add_argument("--resamples", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--noise", type=float, default=0.01)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--scipy-starts", type=int, default=150, help="starts for the scipy per-start comparison")
    p.add_argument("--full-grid-resamples", type=int, default=2, help="resamples timed with the full grid")
    args = p.parse_args()
    warnings.simplefilter("ignore")

    from scaling.approach3 import fit_approach3, init_grid
    from scaling.bootstrap import bootstrap_approach3
    from scaling.synthetic import CHINCHILLA, random_sweep

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"machine: {platform.processor() or platform.machine()}, {cores} usable cores, load average {load:.2f}"
    )
    print(
        f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}; numpy {np.__version__}; data: {args.points} points from Chinchilla's L(N, D), {args.noise:.0%} noise"
    )
    df = random_sweep(CHINCHILLA, args.points, noise=args.noise, seed=args.seed)
    n, d, loss = df["params"].to_numpy(), df["tokens"].to_numpy(), df["loss"].to_numpy()

    walls, cpus = [], []
    fit = None
    for _ in range(args.repeats):
        fit, w, c = _timed(lambda: fit_approach3(n, d, loss, quiet=True))
        walls.append(w)
        cpus.append(c)
    assert fit is not None
    print(
        f"Approach 3, full grid ({fit.n_starts} starts) x {args.points} points, batched L-BFGS: "
        f"wall {min(walls):.2f} s (min of {args.repeats}; median {np.median(walls):.2f} s), "
        f"CPU {min(cpus):.2f} s; stop reasons {fit.status_counts}; best objective {fit.objective:.6g}; "
        f"alpha={fit.params.alpha:.4f} beta={fit.params.beta:.4f}"
    )

    k = min(args.scipy_starts, 4500)
    sub = init_grid()[np.random.default_rng(0).choice(4500, k, replace=False)]
    _, w, c = _timed(lambda: fit_approach3(n, d, loss, starts=sub, optimizer="scipy", polish=0, quiet=True))
    print(
        f"  for comparison, scipy L-BFGS-B once per start: {k} starts took wall {w:.2f} s, CPU {c:.2f} s "
        f"-> about {w * 4500 / k:.0f} s wall / {c * 4500 / k:.0f} s CPU for the full grid (extrapolated)"
    )

    _, w, c = _timed(lambda: bootstrap_approach3(fit, n, d, loss, n_boot=args.resamples, seed=0))
    print(
        f"Bootstrap, {args.resamples} resamples, reduced starts ({fit.bootstrap['starts']}), all resamples in one "
        f"batched L-BFGS: wall {w:.2f} s, CPU {c:.2f} s; resamples whose best start was not the full fit's "
        f"optimum: {fit.bootstrap['n_switched']}; failed: {fit.bootstrap['n_failed']}"
    )
    r = args.full_grid_resamples
    if r >= 2:
        _, w, c = _timed(lambda: bootstrap_approach3(fit, n, d, loss, n_boot=r, seed=0, starts="full"))
        print(
            f"  full grid per resample: {r} resamples took wall {w:.2f} s, CPU {c:.2f} s -> about "
            f"{w / r * args.resamples / 60:.0f} min wall / {c / r * args.resamples / 60:.0f} min CPU for "
            f"{args.resamples} (extrapolated)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
