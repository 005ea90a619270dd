"""Training throughput and MFU against a matmul peak measured in the same run.

MFU = tokens/s x training FLOPs/token (mdm.flops) / peak FLOP/s, where the peak is the best rate of a
large square matmul in the same dtype on the same device, measured a moment before. The training step
timed is exactly the module's: objective loss (sum / count), backward, gradient clipping, AdamW step.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from mdm.config import Config, load
from mdm.diffusion import build_objective
from mdm.flops import count
from mdm.module import build_model
from mdm.optim import build_optimizer
from mdm.vocab import Vocab


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int = 2048, seconds: float = 2.0) -> float:
    """Best observed FLOP/s of an (n x n) @ (n x n) matmul (2 n^3 FLOPs)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    _sync(device)
    best, spent = 0.0, 0.0
    while spent < seconds:
        t0 = time.perf_counter()
        a @ b
        _sync(device)
        dt = time.perf_counter() - t0
        spent += dt
        best = max(best, 2 * n**3 / dt)
    return best


@dataclass
class TrainBench:
    width: int
    depth: int
    params_total: int
    flops_per_token: float
    tokens_per_s: float
    mfu: float


def bench_train_step(
    cfg: Config,
    device: torch.device,
    peak: float,
    steps: int = 10,
    warmup: int = 3,
    autocast: torch.dtype | None = None,
    repeats: int = 3,
) -> TrainBench:
    vocab = Vocab(size=cfg.data.vocab_size + 64, mask_id=cfg.data.vocab_size)
    objective = build_objective(cfg, vocab)
    model = build_model(cfg, objective, vocab).to(device)
    opt = build_optimizer(model, cfg.optim)
    B, L = cfg.train.global_batch, cfg.model.seq_len
    x = torch.randint(0, vocab.mask_id, (B, L), device=device)
    batch = {"input_ids": x}

    def step():
        with torch.autocast(device.type, dtype=autocast, enabled=autocast is not None):
            out = objective.loss(model, batch)
            loss = out.sum / out.count
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(warmup):
        step()
    tps = 0.0
    for _ in range(repeats):  # best of a few windows: the figure least disturbed by other processes
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        _sync(device)
        tps = max(tps, steps * B * L / (time.perf_counter() - t0))
    c = count(model)
    return TrainBench(
        c.d_model, c.n_layer, c.params_total, c.flops_per_token, tps, tps * c.flops_per_token / peak
    )


def run_train_bench(
    widths: tuple[int, ...] = (128, 256, 384), objective: str = "mdlm", steps: int = 10
) -> list[dict]:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype_peaks = {"fp32": matmul_peak(device, torch.float32)}
    if device.type == "cuda" or _cpu_bf16_ok():
        dtype_peaks["bf16"] = matmul_peak(device, torch.bfloat16)
    print(f"device={device} threads={torch.get_num_threads()}")
    for k, v in dtype_peaks.items():
        print(f"measured {k} matmul peak: {v / 1e9:.1f} GFLOP/s")
    rows = []
    precisions = ["bf16"] if device.type == "cuda" else list(dtype_peaks)
    for prec in precisions:
        peak = dtype_peaks[prec]
        autocast = torch.bfloat16 if prec == "bf16" else None
        for w in widths:
            depth = max(1, w // 64)
            cfg = load([], [f"objective.name={objective}", f"model.depth={depth}", f"model.d_model={w}"])
            r = bench_train_step(cfg, device, peak, steps=steps, autocast=autocast)
            rows.append({"precision": prec, **r.__dict__})
    print(f"{'prec':>5} {'width':>5} {'depth':>5} {'params':>10} {'FLOP/tok':>10} {'tok/s':>9} {'MFU':>6}")
    for r in rows:
        print(
            f"{r['precision']:>5} {r['width']:>5} {r['depth']:>5} {r['params_total']:>10,} "
            f"{r['flops_per_token']:>10.3g} {r['tokens_per_s']:>9.0f} {100 * r['mfu']:>5.1f}%"
        )
    return rows


def _cpu_bf16_ok() -> bool:
    try:
        a = torch.randn(64, 64, dtype=torch.bfloat16)
        (a @ a).sum().item()
        return True
    except RuntimeError:
        return False
