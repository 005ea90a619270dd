"""Evaluation throughput (printed, never asserted): tokens/s of the K = 1 likelihood-bound evaluation
against the training forward pass of the same model on the same batch.

For each objective and model size, on random token blocks of the model's length:

* train fwd    ``objective.loss(model, batch)`` with autograd on (the training forward, no backward);
* train step   forward + backward + AdamW step (what `mdm bench` times);
* eval K=1     :func:`mdm.eval.bound.estimate_bound` (no autograd, fixed-seed times and masks, per-block
               bookkeeping included), tokens scored per second;
* eval K=4     the same with four time samples per block (scored tokens/s; ~1/4 of K = 1 if the
               forward dominates).

Best of ``--repeats`` timing windows (the figure least disturbed by other processes on shared cores).

.venv/bin/python bench/bench_eval.py [--objectives mdlm,ar] [--depths 2,4] [--seq-len 128] [--batch 16] [--threads N]
"""

from __future__ import annotations

import argparse
import time

import torch

from mdm.config import load
from mdm.diffusion import build_objective
from mdm.eval.bound import estimate_bound
from mdm.flops import count
from mdm.module import build_model
from mdm.vocab import Vocab


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def best_rate(fn, tokens: int, device: torch.device, repeats: int, iters: int) -> float:
    fn()  # warm-up
    best = 0.0
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(iters):
            fn()
        _sync(device)
        best = max(best, iters * tokens / (time.perf_counter() - t0))
    return best


def bench_one(
    objective_name: str, depth: int, seq_len: int, batch: int, device, repeats: int, iters: int
) -> dict:
    cfg = load([], [f"objective.name={objective_name}", f"model.depth={depth}", f"model.seq_len={seq_len}"])
    vocab = Vocab(size=cfg.data.vocab_size, mask_id=cfg.data.vocab_size - 1, eos_id=0, bos_id=0, pad_id=0)
    obj = build_objective(cfg, vocab)
    model = build_model(cfg, obj, vocab).to(device)
    x = torch.randint(1, vocab.mask_id, (batch, seq_len), device=device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    n = batch * seq_len

    def fwd():
        obj.loss(model, {"input_ids": x})

    def step():
        out = obj.loss(model, {"input_ids": x})
        (out.sum / out.count).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    def ev(K):
        return lambda: estimate_bound(obj, model, x, K=K, seed=0, batch_size=batch * K, precision="fp32")

    model.train()
    r_fwd = best_rate(fwd, n, device, repeats, iters)
    r_step = best_rate(step, n, device, repeats, iters)
    model.eval()
    r_e1 = best_rate(ev(1), n, device, repeats, iters)
    r_e4 = best_rate(ev(4), n, device, repeats, max(1, iters // 2))
    c = count(model)
    return dict(
        objective=objective_name, depth=depth, d_model=c.d_model, params=c.params_total,
        fwd=r_fwd, step=r_step, eval1=r_e1, eval4=r_e4,
    )  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--objectives", default="mdlm,ar")
    ap.add_argument("--depths", default="2,4")
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--iters", type=int, default=4)
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    print(
        f"device={device} threads={torch.get_num_threads()} seq_len={a.seq_len} batch={a.batch} (tokens/s, best of {a.repeats})"
    )
    rows = [
        bench_one(o, int(d), a.seq_len, a.batch, device, a.repeats, a.iters)
        for o in a.objectives.split(",")
        for d in a.depths.split(",")
    ]
    head = f"{'objective':>9} {'depth':>5} {'d_model':>7} {'params':>10} {'train fwd':>10} {'train step':>10} {'eval K=1':>9} {'K=1/fwd':>7} {'eval K=4':>9}"
    print(head)
    for r in rows:
        print(
            f"{r['objective']:>9} {r['depth']:>5} {r['d_model']:>7} {r['params']:>10,} {r['fwd']:>10.0f} {r['step']:>10.0f} "
            f"{r['eval1']:>9.0f} {r['eval1'] / r['fwd']:>7.2f} {r['eval4']:>9.0f}"
        )


if __name__ == "__main__":
    main()
