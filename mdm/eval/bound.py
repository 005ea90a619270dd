"""The likelihood bound of any objective on fixed blocks, with K stratified Monte Carlo time samples per
sequence and a standard error.

Estimator. For block b and k = 0..K-1 the time is stratified within the block (MDLM's antithetic rule
applied per sequence; docs/MATH.md "MDLM"):

    t_bk = t_min + (1 - t_min) * ((u_b + k / K) mod 1),      u_b ~ U[0, 1) from a generator seeded with ``seed``

and ``objective.sequence_loss(model, batch, t, generator)`` gives one unbiased estimate l_bk of block b's
bound in nats (the masks come from a second generator seeded with ``seed + 1``). The block's estimate is
l_b = mean_k l_bk. An objective with an exact likelihood (AR; ``exact_likelihood = True``) is run once
(K = 1) and its estimate has no Monte Carlo noise. Any objective works, since only ``sequence_loss`` and
``scored_tokens`` are used (EDLM: :func:`mdm.eval.edlm.edlm_bound` when it exists, see ``bound_fn``).

Corpus figures are ratios of sums over blocks (never means of per-block ratios):

    nats/token  R = sum_b l_b / sum_b n_b          (n_b = scored tokens of block b)
    PPL bound   exp(R)                              bits/byte = sum_b l_b / (ln 2 * sum_b y_b)  (y_b = bytes)

Standard error: the ratio (delta-method) estimator over blocks,

    SE(R) = sqrt( B / (B - 1) * sum_b (l_b - R n_b)^2 ) / sum_b n_b,

which treats blocks as exchangeable draws and so includes both the text-to-text variation and the Monte
Carlo noise of the time/mask samples (consecutive blocks of one document are correlated, so it is
somewhat optimistic). ``se_mc`` is the Monte Carlo part alone, sqrt(sum_b s_b^2 / K) / sum_b n_b with s_b^2
the sample variance of block b's K estimates (K >= 2; conservative, since stratified samples vary less
than independent ones). The 95% interval of the perplexity is exp(R +- 1.96 SE).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

SE_METHOD = (
    "ratio (delta-method) estimator over blocks: SE = sqrt(B/(B-1) * sum_b (l_b - R n_b)^2) / sum_b n_b, "
    "l_b = block bound averaged over K stratified time samples; includes text and Monte Carlo variation"
)


def is_exact(objective) -> bool:
    """Whether ``sequence_loss`` is the exact NLL (no time, no noise): the objective declares it
    (``exact_likelihood``, e.g. AR)."""
    return bool(getattr(objective, "exact_likelihood", False))


def stratified_block_times(n: int, K: int, t_min: float, generator: torch.Generator) -> torch.Tensor:
    """(n, K) times, stratified within each row: t_bk = t_min + (1 - t_min)((u_b + k/K) mod 1). float32."""
    u = torch.rand(n, generator=generator, dtype=torch.float64)  # (n,)
    k = torch.arange(K, dtype=torch.float64) / K  # (K,)
    return (t_min + (1 - t_min) * torch.remainder(u[:, None] + k[None, :], 1.0)).float()


@dataclass
class BoundResult:
    nats_k: np.ndarray  # (B, K) estimates of each block's bound, nats
    tokens: np.ndarray  # (B,) scored tokens per block
    bytes: np.ndarray  # (B,) UTF-8 bytes per block (may be all zero: no bpb)
    exact: bool
    seconds: float

    @property
    def K(self) -> int:
        return int(self.nats_k.shape[1])

    def summary(self) -> dict:
        return summarize(self.nats_k, self.tokens, self.bytes, self.exact, self.seconds)


def ratio_se(num: np.ndarray, den: np.ndarray) -> float | None:
    """SE of sum(num)/sum(den) by the delta method over items; None with fewer than two items."""
    B = len(num)
    if B < 2 or den.sum() <= 0:
        return None
    R = num.sum() / den.sum()
    resid = num - R * den
    return float(math.sqrt(B / (B - 1) * float((resid**2).sum())) / den.sum())


def summarize(
    nats_k: np.ndarray, tokens: np.ndarray, nbytes: np.ndarray, exact: bool, seconds: float
) -> dict:
    nats_k = np.asarray(nats_k, dtype=np.float64)
    l_b = nats_k.mean(1)  # (B,)
    n = float(tokens.sum())
    R = float(l_b.sum() / n)
    se = ratio_se(l_b, tokens.astype(np.float64))
    K = nats_k.shape[1]
    se_mc = 0.0 if exact else (float(math.sqrt((nats_k.var(1, ddof=1) / K).sum()) / n) if K >= 2 else None)
    total_bytes = float(nbytes.sum())
    bpb = float(l_b.sum() / math.log(2) / total_bytes) if total_bytes > 0 else None
    bpb_se = ratio_se(l_b / math.log(2), nbytes.astype(np.float64)) if total_bytes > 0 else None
    out = {
        "nats_per_token": R,
        "se": se,
        "se_mc": se_mc,
        "ppl_bound": math.exp(R),
        "ppl_ci95": [math.exp(R - 1.96 * se), math.exp(R + 1.96 * se)] if se is not None else None,
        "bits_per_byte": bpb,
        "bits_per_byte_se": bpb_se,
        "tokens_scored": int(n),
        "bytes": total_bytes,
        "blocks": int(len(l_b)),
        "time_samples": 1 if exact else int(K),
        "exact": bool(exact),
        "seconds": seconds,
        "tokens_per_s": (n * (1 if exact else K)) / seconds if seconds > 0 else None,
    }
    return out


# the likelihood estimators objectives may declare as their own (``Objective.bound_estimator``)
OWN_BOUNDS = {"edlm": ("mdm.eval.edlm", "edlm_bound")}


def default_bound_fn(objective) -> Callable:
    """``(model, batch, t, generator) -> (B,)``: the objective's own estimator when it declares one
    (``bound_estimator``, :data:`OWN_BOUNDS`), else its ``sequence_loss``."""
    own = getattr(objective, "bound_estimator", None)
    if own is not None:
        import importlib

        module, name = OWN_BOUNDS[own]
        fn = getattr(importlib.import_module(module), name)
        return lambda model, batch, t, g: fn(objective, model, batch, t, g)
    return lambda model, batch, t, g: objective.sequence_loss(model, batch, t, generator=g)


def _autocast(device: torch.device, precision: str):
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" else "fp32"
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision == "fp32":
        return torch.autocast(device.type, enabled=False)
    raise ValueError(f"precision={precision!r} is not valid; choose one of: auto, fp32, bf16")


@torch.no_grad()
def estimate_bound(
    objective,
    model,
    tokens: torch.Tensor,
    K: int = 1,
    seed: int = 1234,
    batch_size: int = 16,
    nbytes: np.ndarray | None = None,
    attention_mask: torch.Tensor | None = None,
    precision: str = "auto",
    bound_fn: Callable | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> BoundResult:
    """Estimate every block's bound (see module docstring). tokens: (B, L) ids of real tokens.

    ``batch_size`` counts sequences per forward (a block's K copies included). Results are deterministic
    for a given (seed, batch_size, device).
    """
    if K < 1:
        raise ValueError(f"time_samples must be >= 1, got {K}")
    exact = is_exact(objective)
    if exact:
        K = 1
    device = next(model.parameters()).device
    bound_fn = bound_fn or default_bound_fn(objective)
    B = tokens.shape[0]
    g_time = torch.Generator().manual_seed(seed)
    g_mask = torch.Generator(device=device).manual_seed(seed + 1)
    t_min = float(getattr(getattr(objective, "ocfg", None), "t_min", 0.0) or 0.0)
    times = stratified_block_times(B, K, t_min, g_time)  # (B, K)
    per_block = max(1, batch_size // K)
    nats = np.zeros((B, K), dtype=np.float64)
    counts = np.zeros(B, dtype=np.float64)
    model.eval()
    started = time.perf_counter()
    for s in range(0, B, per_block):
        e = min(B, s + per_block)
        x = tokens[s:e].to(device).repeat_interleave(K, dim=0)  # (b*K, L)
        batch = {"input_ids": x}
        if attention_mask is not None:
            batch["attention_mask"] = attention_mask[s:e].to(device).repeat_interleave(K, dim=0)
        t = times[s:e].reshape(-1).to(device)  # (b*K,)
        with _autocast(device, precision):
            per_seq = bound_fn(model, batch, t, g_mask)  # (b*K,)
        nats[s:e] = per_seq.double().reshape(e - s, K).cpu().numpy()
        for i in range(s, e):
            one = {"input_ids": tokens[i : i + 1]}
            if attention_mask is not None:
                one["attention_mask"] = attention_mask[i : i + 1]
            counts[i] = float(objective.scored_tokens(one))
        if progress is not None:
            progress(e, B)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    if not np.isfinite(nats).all():
        raise FloatingPointError("non-finite bound estimate (check the checkpoint and the token ids)")
    nb = np.zeros(B) if nbytes is None else np.asarray(nbytes, dtype=np.float64)
    return BoundResult(nats, counts, nb, exact, seconds)
