"""Synthetic sweeps drawn from known L(N, D) parameters: ground truth for tests, benchmarks, examples.

Noise is multiplicative (log-normal): log L_obs = log L(N, D) + σ ε, ε ~ N(0, 1), seeded.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from scaling.forms import LossParams

# Hoffmann et al. 2022, eq. (10): the Chinchilla fit (N total params, D tokens, L nats/token).
CHINCHILLA = LossParams(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)


def isoflop_sweep(
    params: LossParams,
    budgets: Sequence[float],
    sizes_per_budget: int = 5,
    span: float = 1.0,
    noise: float = 0.0,
    seed: int = 0,
    family: str | None = None,
    flops_per_param_token: float = 6.0,
) -> pd.DataFrame:
    """An isoFLOP sweep: at each budget C, ``sizes_per_budget`` model sizes log-spaced over
    N_opt(C)·10^[−span, +span] (centred on the true optimum), D = C/(6N).

    Returns a DataFrame with columns name, family, params, tokens, flops, loss.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for c in budgets:
        n_star = float(params.n_opt(c))
        for j, n in enumerate(n_star * np.logspace(-span, span, sizes_per_budget)):
            d = c / (flops_per_param_token * n)
            loss = float(params.loss(n, d)) * float(np.exp(noise * rng.standard_normal()))
            rows.append(
                {
                    "name": f"{family or 'run'}_C{c:.2e}_n{j}",
                    "family": family or "all",
                    "params": n,
                    "tokens": d,
                    "flops": c,
                    "loss": loss,
                }
            )
    return pd.DataFrame(rows)


def random_sweep(
    params: LossParams,
    n_points: int,
    n_range: tuple[float, float] = (1e7, 1e10),
    d_range: tuple[float, float] = (1e8, 1e12),
    noise: float = 0.0,
    seed: int = 0,
) -> pd.DataFrame:
    """Points scattered log-uniformly over (N, D): the shape of data Approach 3 sees in the wild."""
    rng = np.random.default_rng(seed)
    n = np.exp(rng.uniform(np.log(n_range[0]), np.log(n_range[1]), n_points))
    d = np.exp(rng.uniform(np.log(d_range[0]), np.log(d_range[1]), n_points))
    loss = params.loss(n, d) * np.exp(noise * rng.standard_normal(n_points))
    return pd.DataFrame(
        {
            "name": [f"run{i}" for i in range(n_points)],
            "family": "all",
            "params": n,
            "tokens": d,
            "flops": 6.0 * n * d,
            "loss": loss,
        }
    )


def training_curves(
    params: LossParams,
    sizes: Sequence[float],
    final_tokens: Sequence[float],
    points_per_run: int = 60,
    first_fraction: float = 0.01,
    noise: float = 0.0,
    seed: int = 0,
) -> pd.DataFrame:
    """Loss histories L(N, D_t) at log-spaced token counts D_t ∈ [first_fraction·D, D] per run.

    Long format (name, params, tokens, flops, loss): the input of Approach 1. (A real run's loss
    mid-schedule is above L(N, D_t); synthetic curves are the idealised envelope case.)
    """
    rng = np.random.default_rng(seed)
    frames = []
    for i, (n, dmax) in enumerate(zip(sizes, final_tokens)):
        t = np.logspace(np.log10(first_fraction * dmax), np.log10(dmax), points_per_run)
        loss = params.loss(n, t) * np.exp(noise * rng.standard_normal(t.size))
        frames.append(
            pd.DataFrame(
                {
                    "name": f"run{i}",
                    "params": float(n),
                    "tokens": t,
                    "flops": 6.0 * n * t,
                    "loss": loss,
                    "step": np.arange(t.size),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


# The example file shipped with the notebooks: two families at CPU-demo scale (N ~ 1e5–1e7).
EXAMPLE_FAMILIES: dict[str, LossParams] = {
    "mdlm": LossParams(E=2.1, A=60.0, B=320.0, alpha=0.35, beta=0.30),
    "ar": LossParams(E=2.0, A=60.0, B=200.0, alpha=0.35, beta=0.30),
}
EXAMPLE_BUDGETS = (1e12, 4e12, 1.6e13, 6.4e13)


def example_results(
    families: Sequence[str] = ("mdlm", "ar"), seed: int = 0, noise: float = 0.01
) -> pd.DataFrame:
    """The example sweep: 4 budgets × 5 sizes per family, 1% log-normal noise, seeded."""
    frames = []
    for i, fam in enumerate(families):
        p = EXAMPLE_FAMILIES.get(fam, EXAMPLE_FAMILIES["ar"])
        frames.append(
            isoflop_sweep(
                p, EXAMPLE_BUDGETS, sizes_per_budget=5, span=0.6, noise=noise, seed=seed + i, family=fam
            )
        )
    return pd.concat(frames, ignore_index=True)[["name", "family", "params", "tokens", "flops", "loss"]]


def write_example(path: str, families: Sequence[str] = ("mdlm", "ar"), seed: int = 0) -> None:
    """Write the example CSV and its companion JSON (conventions + the true parameters)."""
    from scaling.atomic import write_json, write_text
    from scaling.results import companion_json_path

    df = example_results(families, seed=seed)
    write_text(path, df.to_csv(index=False, float_format="%.10g"))
    write_json(
        companion_json_path(path),
        {
            "params": "synthetic N (stands for non-embedding parameters)",
            "flops": "6*N*D",
            "generated_by": f"python -m scaling synth {path} --families {','.join(families)} --seed {seed}",
            "true_parameters": {
                f: EXAMPLE_FAMILIES.get(f, EXAMPLE_FAMILIES["ar"]).as_dict() for f in families
            },
            "noise": "log-normal, sigma = 0.01",
        },
    )
