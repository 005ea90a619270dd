"""EDLM against its base model at the same number of denoising steps (printed, never asserted).

For each step count: the base masked diffusion model (ancestral sampling = EDLM with window 0), EDLM with
the AR energy and, when trained, EDLM with the NCE energy, at each importance-sampling window. Columns:

* gen-PPL: exp(mean NLL per token) of the samples under a *judge* AR checkpoint of this project (tokens
  2..L given the first, as the AR objective scores them). The judge is a different AR run from the one in
  the AR energy (another seed and longer training), else EDLM-AR would be graded by its own energy.
* true PPL (synthetic data only): the same figure under the data-generating Markov chain (exact).
* entropy: mean over samples of the entropy (nats) of each sample's unigram histogram; falling entropy
  with falling gen-PPL flags degenerate, repetitive samples (docs/MATH.md "Samplers").
* NFE: denoiser calls + batched energy calls; "scored" = candidate sequences the energy evaluated.
* wall: seconds for the whole batch of samples on this machine's CPU threads (fastest of --repeats runs
  with the same seed, so every repeat draws the same samples).

Reference rows "data" give the same statistics for real validation blocks. With --bound-steps n, a second
table gives the n-step NELBO per token of EDLM and of its base on the same Monte Carlo draws
(mdm/eval/edlm.py: what is estimated, and how log Z is handled).

Without --base/--ar/--judge/--nce, tiny models are trained (or reused: runs are idempotent) on the
synthetic Markov source under --runs-dir: an MDLM base, an AR for the energy, a judge AR (seed 1, 2x the
steps) and the NCE energy on the base. --preset demo uses configs/mdlm.yaml / configs/ar.yaml instead
(the default corpus and model size; slow on CPU).

    .venv/bin/python bench/bench_edlm.py [--steps 4 8 16] [--samples 64] [--k 16] [--windows 0.2 1.0]
        [--preset synthetic|demo] [--base RUN --ar RUN --judge RUN --nce RUN] [--out results.json]
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mdm.config import load  # noqa: E402
from mdm.diffusion.edlm import check_same_tokenizer  # noqa: E402
from mdm.io import atomic_write_json  # noqa: E402
from mdm.loading import load_energy, load_run  # noqa: E402
from mdm.rundir import RunDir  # noqa: E402
from mdm.sampling.importance import edlm_generate  # noqa: E402

PRESETS = {
    # tiny: 2 layers x 64 wide, 32 tokens, order-1 Markov chain over 16 symbols
    "synthetic": {
        "files": ["configs/debug.yaml"],
        "common": [
            "train.global_batch=32",
            "train.val_every=100",
            "train.ckpt_every=100",
            "logging.progress_bar=false",
        ],
        "base": ["objective.name=mdlm", "train.max_steps=400"],
        "ar": ["objective.name=ar", "train.max_steps=400"],
        "judge": ["objective.name=ar", "train.max_steps=800", "train.seed=1"],
        "nce": ["train.max_steps=200", "optim.lr=1e-3"],
    },
    "demo": {
        "files": [],
        "common": ["logging.progress_bar=false"],
        "base": ["objective.name=mdlm"],
        "ar": ["objective.name=ar"],
        "judge": ["objective.name=ar", "train.seed=1", "train.max_steps=400"],
        "nce": ["train.max_steps=100", "optim.lr=3e-4"],
    },
}


def _train(files: list[str], overrides: list[str]) -> Path:
    from mdm.train import train

    cfg = load([REPO / f for f in files], overrides)
    summary = train(cfg)
    if summary.get("status") != "completed":
        raise RuntimeError(f"training {RunDir.for_config(cfg).path} did not complete")
    return RunDir.for_config(cfg).path


def train_models(preset: str, runs_dir: str, need_nce: bool) -> dict[str, Path]:
    p = PRESETS[preset]
    common = [f"train.runs_dir={runs_dir}", *p["common"]]
    out = {k: _train(p["files"], [*common, *p[k]]) for k in ("base", "ar", "judge")}
    if need_nce:
        out["nce"] = _train(
            [*p["files"], "configs/edlm_nce.yaml"],
            [*common, *p["nce"], f"objective.edlm.base_run={out['base']}"],
        )
    return out


@torch.no_grad()
def judge_nll(judge, tokens: torch.Tensor) -> tuple[float, int]:
    """Sum of -log p_judge(x^l | x^{<l}) over l >= 2 and the number of scored tokens."""
    logp = judge.objective.log_probs(judge.model, tokens[:, :-1])  # (N, L-1, V)
    nll = -logp.gather(-1, tokens[:, 1:].unsqueeze(-1)).squeeze(-1).double()
    return float(nll.sum()), nll.numel()


def true_nll(cfg, tokens: torch.Tensor) -> float | None:
    """Per-token NLL of tokens 2..L under the synthetic chain (order 1), or None for other data.

    A token the chain never emits (EOS, id = vocab) is charged the chain's probability floor 1e-6.
    """
    if cfg.data.name != "synthetic" or cfg.data.synthetic.order != 1:
        return None
    from mdm.data.synthetic import make_chain

    s = cfg.data.synthetic
    V = s.vocab
    P = torch.full((V + 1, V + 1), 1e-6, dtype=torch.float64)
    P[:V, :V] = torch.tensor(make_chain(V, s.order, s.concentration, s.seed).transition)
    x = tokens.cpu().clamp(max=V)
    return float(-P[x[:, :-1], x[:, 1:]].log().mean())


def unigram_entropy(tokens: torch.Tensor) -> float:
    """Mean over sequences of the entropy (nats) of the sequence's token histogram."""
    ents = []
    for row in tokens.cpu().numpy():
        _, c = np.unique(row, return_counts=True)
        q = c / c.sum()
        ents.append(float(-(q * np.log(q)).sum()))
    return float(np.mean(ents))


def validation_blocks(cfg, n: int) -> torch.Tensor:
    from mdm.data.datamodule import build_loader

    loader = build_loader(
        cfg.data, "validation", cfg.model.seq_len, n, cfg.train.seed, train=False, progress=False
    )
    return next(iter(loader))["input_ids"][:n]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", choices=sorted(PRESETS), default="synthetic")
    ap.add_argument("--runs-dir", default="runs/bench_edlm")
    ap.add_argument("--base"), ap.add_argument("--ar"), ap.add_argument("--judge"), ap.add_argument("--nce")
    ap.add_argument("--no-nce", action="store_true", help="skip the NCE energy (no training of it)")
    ap.add_argument("--steps", type=int, nargs="+", default=[4, 8, 16])
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--k", type=int, default=16)
    ap.add_argument("--windows", type=float, nargs="+", default=[0.2, 1.0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument(
        "--repeats", type=int, default=3, help="time each configuration this many times; report the fastest"
    )
    ap.add_argument(
        "--bound-steps", type=int, default=0, help="also estimate the likelihood bound (n steps; 0: skip)"
    )
    ap.add_argument("--bound-samples", type=int, default=16, help="K importance samples for log Z and A_S")
    ap.add_argument("--bound-repeats", type=int, default=4, help="Monte Carlo draws (step, x_t, S) per block")
    ap.add_argument("--out", help="also write the rows as JSON (atomically)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    paths = {k: getattr(args, k) for k in ("base", "ar", "judge", "nce")}
    if not all(paths[k] for k in ("base", "ar", "judge")):
        trained = train_models(args.preset, args.runs_dir, need_nce=not args.no_nce and not paths["nce"])
        paths = {k: paths[k] or trained.get(k) for k in paths}
    judge = load_run(paths["judge"])
    base_run = load_run(paths["base"])
    if judge.objective.registry_name != "ar":
        raise SystemExit(
            f"--judge {paths['judge']} is not an AR run (objective {judge.objective.registry_name!r})"
        )
    check_same_tokenizer(
        judge.cfg, judge.vocab, "the judge AR run", base_run.cfg, base_run.vocab, "the base run"
    )
    energies = {"EDLM-AR": load_energy(paths["base"], ar_run=paths["ar"])}
    if paths["nce"] and not args.no_nce:
        energies["EDLM-NCE"] = load_energy(paths["nce"])
    L = base_run.cfg.model.seq_len
    N = args.samples

    rows = []

    def add(method, steps, k, window, tokens, nfe, scored, wall):
        s, n = judge_nll(judge, tokens)
        tn = true_nll(base_run.cfg, tokens)
        rows.append(
            {
                "method": method,
                "steps": steps,
                "k": k,
                "window": window,
                "gen_ppl": math.exp(s / n),
                "true_ppl": None if tn is None else math.exp(tn),
                "entropy": unigram_entropy(tokens),
                "nfe": nfe,
                "scored": scored,
                "wall_s": wall,
            }
        )

    data = validation_blocks(base_run.cfg, N)
    add("data", None, None, None, data, None, None, None)
    any_energy = next(iter(energies.values()))

    def run(energy, steps, k, w):
        results = [
            edlm_generate(energy, (N, L), steps, k, w, torch.Generator().manual_seed(args.seed))
            for _ in range(max(1, args.repeats))
        ]
        return results[0], min(r.wall_s for r in results)

    for steps in args.steps:
        r, wall = run(any_energy, steps, 1, 0.0)
        add(f"base ({base_run.cfg.objective.name})", steps, 1, 0.0, r.tokens, r.nfe, 0, wall)
        for name, energy in energies.items():
            for w in args.windows:
                r, wall = run(energy, steps, args.k, w)
                add(name, steps, args.k, w, r.tokens, r.nfe, r.extra["candidates_scored"], wall)

    print(
        f"\nEDLM vs base: {N} samples of {L} tokens; judge = {paths['judge']}; torch threads = {torch.get_num_threads()}"
    )
    has_true = any(r["true_ppl"] is not None for r in rows)
    head = f"{'method':<14} {'steps':>5} {'k':>3} {'window':>6} {'gen-PPL':>8}"
    head += f" {'true PPL':>8}" if has_true else ""
    head += f" {'entropy':>7} {'NFE':>5} {'scored':>7} {'wall s':>7}"
    print(head)
    print("-" * len(head))
    fmt = lambda v, f: "-" if v is None else format(v, f)  # noqa: E731
    for r in rows:
        line = (
            f"{r['method']:<14} {fmt(r['steps'], 'd'):>5} {fmt(r['k'], 'd'):>3} {fmt(r['window'], '.1f'):>6}"
        )
        line += f" {r['gen_ppl']:>8.3f}" + (f" {fmt(r['true_ppl'], '.3f'):>8}" if has_true else "")
        line += f" {r['entropy']:>7.3f} {fmt(r['nfe'], 'd'):>5} {fmt(r['scored'], 'd'):>7} {fmt(r['wall_s'], '.2f'):>7}"
        print(line)
    bounds = []
    if args.bound_steps:
        bounds = likelihood_table(energies, data, args)
    if args.out:
        atomic_write_json(
            args.out,
            {"rows": rows, "bounds": bounds, "runs": {k: str(v) for k, v in paths.items()}, "samples": N},
        )
    return 0


def likelihood_table(energies: dict, data: torch.Tensor, args) -> list[dict]:
    """The n-step NELBO (mdm/eval/edlm.py) per token on validation blocks: EDLM and its base on the same draws
    (same seed: the same step, x_t and revealed set for every row), with a standard error over blocks, the
    optimistic plain-IS companion estimate ("plain IS") and the mean (data-augmented) log Ẑ in the window. "AR exact" is -log p_AR(x0) / L of the AR energy's model (first token
    from the base's all-mask marginal), the likelihood EDLM-AR's process approaches as k -> inf, w = 1."""
    from mdm.eval.edlm import edlm_bound_terms

    n, K, R = args.bound_steps, args.bound_samples, args.bound_repeats
    x = data.repeat(R, 1)  # R Monte Carlo draws per block
    B, L = data.shape

    def row(method, window, v, plain=None, log_z=None):
        per_block = v.view(R, B).mean(0) / L  # nats/token per block
        lz = None if log_z is None else log_z[~log_z.isnan()]
        return {
            "method": method,
            "steps": n,
            "window": window,
            "K": K,
            "nats_per_token": float(per_block.mean()),
            "se": float(per_block.std() / math.sqrt(B)),
            "plain_nats_per_token": None if plain is None else float(plain.view(R, B).mean(0).mean() / L),
            "mean_log_z": float(lz.mean()) if lz is not None and len(lz) else None,
        }

    rows = []
    for name, energy in energies.items():
        if (
            energy.kind == "ar"
        ):  # the k -> infinity, w = 1 limit's own likelihood: -log p_AR(x0), pi_1 included
            with torch.no_grad():
                nll = -energy.log_p_ar(data) / L  # (B,) exact
            rows.append(
                {
                    "method": "AR exact",
                    "steps": None,
                    "window": None,
                    "K": None,
                    "nats_per_token": float(nll.mean()),
                    "se": float(nll.std() / math.sqrt(B)),
                    "plain_nats_per_token": None,
                    "mean_log_z": None,
                }
            )
        for w in args.windows:
            res = edlm_bound_terms(
                energy, {"input_ids": x}, n, w, K, generator=torch.Generator().manual_seed(args.seed)
            )
            if not any(r["method"] == "base" for r in rows):
                rows.insert(0, row("base", None, res.base_nll))
            rows.append(row(name, w, res.nll, res.nll_plain, res.log_z))
    print(
        f"\nLikelihood: {n}-step NELBO on {B} validation blocks x {R} draws, K = {K} (nats/token, SE over blocks)"
    )
    print(f"{'estimate':<10} {'window':>6} {'nats/tok':>9} {'SE':>7} {'plain IS':>9} {'mean log Z':>10}")
    for r in rows:
        w = "-" if r["window"] is None else f"{r['window']:.1f}"
        lz = "-" if r["mean_log_z"] is None else f"{r['mean_log_z']:.3f}"
        pl = "-" if r["plain_nats_per_token"] is None else f"{r['plain_nats_per_token']:.4f}"
        print(f"{r['method']:<10} {w:>6} {r['nats_per_token']:>9.4f} {r['se']:>7.4f} {pl:>9} {lz:>10}")
    return rows


if __name__ == "__main__":
    sys.exit(main())
