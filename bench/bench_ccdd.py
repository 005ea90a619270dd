"""CCDD against MDLM at equal training FLOPs on tiny CPU models (synthetic Markov data): prints a table.

    .venv/bin/python bench/bench_ccdd.py [--flops 3e11] [--seq-len 64] [--samples 64] [--runs-dir runs/bench_ccdd]

Trains (or reuses: runs are idempotent) three runs of the same backbone on the synthetic source:

* ``mdlm``: the baseline; it is also CCDD's frozen encoder (its token-embedding table, PCA to d_c);
* ``ccdd``: CCDD with that encoder, the same FLOP budget C (``train.flops``; FLOPs per token from
  mdm/flops.py, which counts CCDD's extra z projection and continuous head);
* ``ar``: the autoregressive evaluator for generative perplexity, trained with 2C.

Reports, per row, nats/token on the validation split (K stratified time samples per sequence, fixed seed):

* MDLM: its NELBO (an upper bound on -log p(x));
* CCDD ``z_blind``: the discrete NELBO with the continuous input at pure noise: an upper bound on -log p(x)
  comparable with MDLM's;
* CCDD ``discrete``: the discrete term of the joint NELBO with z from the forward process. It sees noisy
  copies of the masked tokens' embeddings and is NOT a bound on -log p(x): compare it with the exact data
  entropy printed on the first line;

and for samples (MDLM ancestral; CCDD z-blind token-only, joint, joint + guidance; float64 categorical draws,
``--steps`` steps): gen-PPL under the AR checkpoint, the exact NLL per token under the true Markov chain,
and the mean unigram entropy of a sample (nats), which must be read beside gen-PPL (a low-entropy sampler
has a flattering gen-PPL).
The encoder's own training compute is not charged to CCDD.
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
from mdm.data.datamodule import build_loader  # noqa: E402
from mdm.data.synthetic import make_chain  # noqa: E402
from mdm.loading import load_run  # noqa: E402
from mdm.rundir import RunDir  # noqa: E402
from mdm.sampling.base import get_sampler  # noqa: E402
from mdm.sampling.metrics import ar_nll, generative_perplexity, unigram_entropy  # noqa: E402
from mdm.train import prepare_run, train  # noqa: E402


def base_overrides(args) -> list[str]:
    return [
        "data.name=synthetic",
        f"data.synthetic.num_tokens={args.data_tokens}",
        "data.synthetic.eval_tokens=50000",
        "model.depth=2",
        "model.aspect_ratio=32",
        "model.head_dim=32",
        "model.cond_dim=32",
        f"model.seq_len={args.seq_len}",
        "train.global_batch=16",
        "train.max_steps=null",
        "train.val_every=100000",
        "train.ckpt_every=100000",
        "train.val_batches=4",
        "eval.batch_size=32",
        "optim.lr=3e-3",
        "logging.progress_bar=false",
        f"train.runs_dir={args.runs_dir}",
        f"train.threads={args.threads}",
    ]


def run_cfg(args, name: str, *extra: str):
    return load([], [*base_overrides(args), *extra])  # run dirs named by config hash: idempotent


@torch.no_grad()
def likelihood(objective, model, cfg, batches: int, time_samples: int, seed: int = 1234) -> float:
    """Nats/token of objective.sequence_loss over the first ``batches`` validation batches."""
    loader = build_loader(
        cfg.data, "validation", cfg.model.seq_len, cfg.eval.batch_size, seed=0, train=False, progress=False
    )
    gen = torch.Generator().manual_seed(seed)
    total, count = 0.0, 0.0
    for i, batch in enumerate(loader):
        if i >= batches:
            break
        B = batch["input_ids"].shape[0]
        for _ in range(time_samples):
            t = objective.sample_times(B, "cpu", generator=gen) if objective.uses_schedule else None
            total += float(objective.sequence_loss(model, batch, t, gen).sum())
            count += float(objective.scored_tokens(batch))
    return total / count


def chain_nll(chain, samples: np.ndarray) -> tuple[float, float]:
    """(nats/token under the true chain over samples that only use its symbols, fraction of other samples)."""
    V, k = chain.vocab, chain.order
    ok = (samples < V).all(1)
    tot, n = 0.0, 0
    for row in samples[ok]:
        s = 0
        for x in row[:k]:
            s = s * V + int(x)
        tot -= math.log(chain.stationary[s])
        for x in row[k:]:
            tot -= math.log(chain.transition[s, int(x)])
            s = (s * V + int(x)) % chain.num_states
        n += len(row)
    return (tot / n if n else float("nan")), float(1 - ok.mean())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flops", type=float, default=3e11, help="training FLOP budget C of MDLM and CCDD")
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--data-tokens", type=int, default=400_000)
    ap.add_argument("--d-cont", type=int, default=8)
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--steps", type=int, default=64, help="sampling steps")
    ap.add_argument("--guidance", type=float, default=1.0, help="an extra CCDD sampling row with this scale")
    ap.add_argument("--eval-batches", type=int, default=16)
    ap.add_argument("--time-samples", type=int, default=4)
    ap.add_argument("--runs-dir", default=str(REPO / "runs" / "bench_ccdd"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--ccdd", action="append", default=[], metavar="KEY=VALUE", help="extra overrides of the CCDD run"
    )
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    C = args.flops
    mdlm_cfg = run_cfg(args, "mdlm", "objective.name=mdlm", f"train.flops={C}")
    ar_cfg = run_cfg(args, "ar", "objective.name=ar", f"train.flops={2 * C}")
    summaries = {"mdlm": train(mdlm_cfg), "ar": train(ar_cfg)}
    enc = RunDir.for_config(mdlm_cfg).path
    ccdd_cfg = run_cfg(
        args,
        "ccdd",
        "objective.name=ccdd",
        f"train.flops={C}",
        f"objective.ccdd.encoder_run={enc}",
        f"objective.ccdd.d_cont={args.d_cont}",
        "objective.ccdd.bound=z_blind",
        *args.ccdd,
    )
    summaries["ccdd"] = train(ccdd_cfg)

    meta = prepare_run(mdlm_cfg)["meta"]
    syn = mdlm_cfg.data.synthetic
    chain = make_chain(syn.vocab, syn.order, syn.concentration, syn.seed)
    cfgs = {"ar": ar_cfg, "mdlm": mdlm_cfg, "ccdd": ccdd_cfg}
    runs = {k: load_run(RunDir.for_config(c).path) for k, c in cfgs.items()}
    L, N = args.seq_len, args.samples

    def bound(key: str, mode: str | None = None) -> float:
        r = runs[key]
        if mode is not None:
            r.objective.ccfg.bound = mode
        return likelihood(r.objective, r.model, r.cfg, args.eval_batches, args.time_samples)

    def size(key: str) -> dict:
        s = summaries[key]
        return {
            "params": s["params_non_embedding"],
            "fpt": s["flops_per_token"],
            "steps": s["steps"],
            "flops": s["flops"],
        }

    h, h_block = meta.entropy_per_token, meta.block_entropy(L)
    lik = [
        {"row": "data", "nats": h_block, "what": f"exact entropy of a block per token (rate h = {h:.4f})"},
        {"row": "ar", **size("ar"), "nats": bound("ar"), "what": "exact NLL of tokens 2..L (floor: h)"},
        {"row": "mdlm", **size("mdlm"), "nats": bound("mdlm"), "what": "NELBO: upper bound on -log p(x)"},
        {
            "row": "ccdd",
            **size("ccdd"),
            "nats": bound("ccdd", "z_blind"),
            "what": "z-blind NELBO: upper bound on -log p(x)",
        },
        {
            "row": "ccdd",
            **size("ccdd"),
            "nats": bound("ccdd", "discrete"),
            "what": "discrete term of joint NELBO: NOT a bound",
        },
    ]

    gen = [
        {
            "row": "data",
            "how": "true chain",
            **score(runs["ar"], chain, torch.from_numpy(_chain_samples(chain, N, L))),
        }
    ]
    plan = [
        ("mdlm", "ccdd", None, "ancestral"),
        ("ccdd", "ancestral", None, "z-blind, tokens only"),
        ("ccdd", "ccdd", 0.0, "joint (tokens + z ODE)"),
        ("ccdd", "ccdd", args.guidance, "joint, guided"),
    ]
    for key, name, w, how in plan:
        r = runs[key]
        opts = {} if name == "ancestral" else {"guidance_scale": w}
        res = get_sampler(name)(
            r.objective, r.model, (N, L), args.steps, torch.Generator().manual_seed(0), **opts
        )
        gen.append(
            {"row": key, "how": how, "guid": w, "nfe": res.nfe, **score(runs["ar"], chain, res.tokens)}
        )
    _print(args, lik, gen)
    return 0


def score(ar, chain, samples: torch.Tensor) -> dict:
    """gen-PPL under the AR run, exact chain NLL, mean unigram entropy (mdm/sampling/metrics.py)."""
    nll, bad = chain_nll(chain, samples.numpy())
    gen_ppl = generative_perplexity(*ar_nll(ar.objective, ar.model, samples))
    return {
        "gen_ppl": gen_ppl,
        "chain_nll": nll,
        "bad": bad,
        "entropy": float(unigram_entropy(samples).mean()),
    }


def _chain_samples(chain, N: int, L: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.stack([chain.sample(L, rng) for _ in range(N)])


def _cell(r: dict, key: str, fmt: str, width: int) -> str:
    v = r.get(key)
    return f"{'':>{width}}" if v is None else f"{v:>{width}{fmt}}"


def _print(args, lik: list[dict], gen: list[dict]) -> None:
    print(
        f"\nCCDD vs MDLM at equal training FLOPs C = {args.flops:.3g} (AR evaluator: 2C); synthetic order-1 Markov "
        f"data, L = {args.seq_len}, d_c = {args.d_cont} {' '.join(args.ccdd)}; {args.eval_batches} validation batches x "
        f"{args.time_samples} time samples per sequence"
    )
    head = f"{'row':<6}{'non-emb':>9}{'FLOPs/tok':>11}{'steps':>7}{'train FLOPs':>13}{'nats/tok':>10}  what"
    print(head + "\n" + "-" * 100)
    for r in lik:
        print(
            f"{r['row']:<6}{_cell(r, 'params', ',', 9)}{_cell(r, 'fpt', '.3g', 11)}{_cell(r, 'steps', 'd', 7)}"
            f"{_cell(r, 'flops', '.3g', 13)}{_cell(r, 'nats', '.4f', 10)}  {r['what']}"
        )
    print(
        f"\nSamples: N = {args.samples}, {args.steps} steps, float64 categorical draws. ancestral: MDLM's rule "
        f"(the ccdd sampler without z); z-blind: the ancestral sampler on CCDD's z-blind denoiser; joint: the ccdd "
        f"sampler (tokens + deterministic ODE steps on z), guidance scale w"
    )
    head = f"{'row':<6}{'sampler':<24}{'w':>5}{'NFE':>5}{'gen-PPL(AR)':>13}{'chain NLL':>11}{'off-chain':>11}{'uni-H':>8}"
    print(head + "\n" + "-" * len(head))
    for r in gen:
        print(
            f"{r['row']:<6}{r['how']:<24}{_cell(r, 'guid', '.1f', 5)}{_cell(r, 'nfe', 'd', 5)}{_cell(r, 'gen_ppl', '.3f', 13)}"
            f"{_cell(r, 'chain_nll', '.4f', 11)}{_cell(r, 'bad', '.2f', 11)}{_cell(r, 'entropy', '.3f', 8)}"
        )
    print(
        "gen-PPL(AR): perplexity of the samples under the AR run; chain NLL: exact nats/token under the true chain "
        "(over samples using only chain symbols); off-chain: fraction of samples containing a token the chain never "
        "emits (e.g. EOS); uni-H: mean unigram entropy of one sample in nats (read beside gen-PPL)."
    )


if __name__ == "__main__":
    sys.exit(main())
