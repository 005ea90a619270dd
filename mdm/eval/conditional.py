"""Conditional likelihoods -log p(continuation | context) and greedy completion, for any objective.

Used by LAMBADA accuracy and the lm-evaluation-harness adapter. Inputs are (context ids, continuation
ids) pairs; the context should start with BOS (the callers add it) and context + continuation must fit
the model's ``seq_len`` (callers truncate the context from the left).

* AR (exact): teacher forcing, sum of -log p(x_i | x_<i) over the continuation; greedy = every
  continuation token is the argmax.
* absorbing diffusion (any objective with ``denoiser_log_probs(model, z, t, key_mask=...)`` and a
  schedule: MDLM, RADD): the conditional continuous-time NELBO, with only the continuation noised and
  the context kept clean (docs/MATH.md "MDLM" restricted to the continuation positions):

      -log p(c | x) <= E_t [ -alpha'_t / (1 - alpha_t) * sum_{l in c, z_t^l = m} -log p_theta(c^l | z_t) ]

  estimated with K stratified time samples (see :mod:`mdm.eval.bound`); greedy = the masked
  continuation filled one token per call, most confident position first, reproduces the continuation.
* SEDD (both graphs): its denoising score entropy with only the continuation diffused, plus the prior
  KL of the continuation positions (SEDD's bound restricted to the continuation).
* an objective may provide its own ``conditional_sequence_loss(model, batch, t, target_mask, generator)
  -> (B,)``; it is used when present. Otherwise an objective with neither raises
  :class:`NotImplementedError` naming it (EDLM, for now).
"""

from __future__ import annotations

import numpy as np
import torch

from mdm.eval.bound import _autocast, is_exact, stratified_block_times

Pair = tuple[list[int], list[int]]


def pad_batch(seqs: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad to one (B, T) tensor; returns (ids, valid mask)."""
    T = max(len(s) for s in seqs)
    x = torch.full((len(seqs), T), pad, dtype=torch.long)
    m = torch.zeros((len(seqs), T), dtype=torch.bool)
    for i, s in enumerate(seqs):
        x[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        m[i, : len(s)] = True
    return x, m


def _pad_id(objective) -> int:
    v = objective.vocab
    return v.pad_id if v.pad_id is not None else (v.eos_id if v.eos_id is not None else 0)


def supports(objective) -> bool:
    return (
        is_exact(objective)
        or getattr(objective, "has_conditional_loss", False)
        or (getattr(objective, "has_denoiser", False) and getattr(objective, "schedule", None) is not None)
    )


def _check(objective) -> None:
    if not supports(objective):
        raise NotImplementedError(
            f"objective {objective.registry_name!r} exposes neither denoiser_log_probs nor "
            "conditional_sequence_loss: conditional likelihoods are not available for it"
        )


def time_for_masked_fraction(objective, frac: torch.Tensor) -> torch.Tensor:
    """t with 1 - alpha_t = frac (bisection; alpha_t decreases in t)."""
    lo, hi = torch.zeros_like(frac), torch.ones_like(frac)
    for _ in range(40):
        mid = (lo + hi) / 2
        below = (1 - objective.schedule.alpha(mid)) < frac
        lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
    return (lo + hi) / 2


@torch.no_grad()
def conditional_nll(
    objective,
    model,
    pairs: list[Pair],
    K: int = 1,
    seed: int = 1234,
    batch_size: int = 16,
    precision: str = "auto",
) -> np.ndarray:
    """(N,) -log p(continuation | context) in nats: exact for AR, else a K-sample bound (module doc)."""
    _check(objective)
    device = next(model.parameters()).device
    pad = _pad_id(objective)
    exact = is_exact(objective)
    K = 1 if exact else K
    g_time = torch.Generator().manual_seed(seed)
    g_mask = torch.Generator(device=device).manual_seed(seed + 1)
    t_min = float(objective.ocfg.t_min)
    times = stratified_block_times(len(pairs), K, t_min, g_time)  # (N, K)
    out = np.zeros(len(pairs))
    per = max(1, batch_size // K)
    for s in range(0, len(pairs), per):
        chunk = pairs[s : s + per]
        with _autocast(device, precision):
            if exact:
                out[s : s + len(chunk)] = _ar_nll(objective, model, chunk, pad, device)[0]
            else:
                seqs = [c + t for c, t in chunk for _ in range(K)]
                x, valid = pad_batch(seqs, pad)
                target = torch.zeros_like(valid)
                for i, (c, t) in enumerate(p for p in chunk for _ in range(K)):
                    target[i, len(c) : len(c) + len(t)] = True
                x, valid, target = x.to(device), valid.to(device), target.to(device)
                t = times[s : s + len(chunk)].reshape(-1).to(device)
                per_seq = _conditional_bound(objective, model, x, valid, target, t, g_mask)  # (b*K,)
                out[s : s + len(chunk)] = per_seq.double().reshape(len(chunk), K).mean(1).cpu().numpy()
    return out


def _conditional_bound(objective, model, x, valid, target, t, generator) -> torch.Tensor:
    """One estimate per row of the bound on -log p(x[target] | x[~target]): (B,)."""
    if getattr(objective, "has_conditional_loss", False):
        batch = {"input_ids": x, "attention_mask": valid}
        return objective.conditional_sequence_loss(model, batch, t, target, generator)
    if getattr(objective, "has_scores", False):
        # SEDD: denoising score entropy with only the continuation diffused, + its prior KL term.
        sb, rate = objective.schedule.total_noise(t), objective.schedule.rate(t)  # (B,)
        xt = objective.graph.sample_forward(x, sb, target, generator)  # (B, T)
        log_s = objective.log_scores(model, xt, t, key_mask=valid)  # (B, T, N)
        per_pos = objective.graph.score_entropy(log_s, x, xt, sb, rate)  # (B, T)
        per_pos = torch.where(target, per_pos, torch.zeros_like(per_pos))
        return per_pos.sum(-1) + objective.prior_term(x, target).to(per_pos.dtype)
    z, masked = objective.mask_tokens(x, t, target, generator)  # absorbing: only the continuation is masked
    logp = objective.denoiser_log_probs(model, z, t, key_mask=valid)  # (B, T, V)
    nll = -logp.gather(-1, x.unsqueeze(-1)).squeeze(-1)  # (B, T)
    nll = torch.where(masked, nll, torch.zeros_like(nll))
    return objective.schedule.mask_weight(t) * nll.sum(-1)  # (B,)


def _ar_nll(objective, model, chunk: list[Pair], pad: int, device) -> tuple[np.ndarray, np.ndarray]:
    x, _ = pad_batch([c + t for c, t in chunk], pad)
    x = x.to(device)
    logp = objective.log_probs(model, x[:, :-1])  # (B, T-1, V): position i predicts x[i+1]
    nll, greedy = np.zeros(len(chunk)), np.zeros(len(chunk), dtype=bool)
    for i, (c, t) in enumerate(chunk):
        pos = torch.arange(len(c) - 1, len(c) + len(t) - 1, device=device)
        tgt = torch.tensor(t, device=device)
        lp = logp[i, pos]  # (n, V)
        nll[i] = float(-lp.gather(-1, tgt[:, None]).sum())
        greedy[i] = bool((lp.argmax(-1) == tgt).all())
    return nll, greedy


@torch.no_grad()
def greedy_match(
    objective, model, pairs: list[Pair], batch_size: int = 16, precision: str = "auto"
) -> np.ndarray:
    """(N,) bool: does greedy decoding reproduce the continuation? (AR: teacher-forced argmax; diffusion:
    the masked continuation filled one token per call, most confident position first.)"""
    device = next(model.parameters()).device
    pad = _pad_id(objective)
    out = np.zeros(len(pairs), dtype=bool)
    if not is_exact(objective) and not getattr(objective, "has_denoiser", False):
        raise NotImplementedError(
            f"objective {objective.registry_name!r} has no denoiser_log_probs: no greedy decoding"
        )
    for s in range(0, len(pairs), batch_size):
        chunk = pairs[s : s + batch_size]
        with _autocast(device, precision):
            if is_exact(objective):
                out[s : s + len(chunk)] = _ar_nll(objective, model, chunk, pad, device)[1]
            else:
                out[s : s + len(chunk)] = _fill(objective, model, chunk, pad, device)
    return out


def _fill(objective, model, chunk: list[Pair], pad: int, device) -> np.ndarray:
    mask_id = objective.vocab.mask_id
    z, key_mask = pad_batch([c + [mask_id] * len(t) for c, t in chunk], pad)
    z, key_mask = z.to(device), key_mask.to(device)
    lengths = key_mask.sum(1).float()
    for _ in range(max(len(t) for _, t in chunk)):
        masked = z == mask_id  # (B, T)
        if not masked.any():
            break
        frac = masked.sum(1).float() / lengths
        t = time_for_masked_fraction(objective, frac) if objective.time_conditioned else frac
        logp = objective.denoiser_log_probs(model, z, t, key_mask=key_mask)  # (B, T, V)
        conf, best = logp.max(-1)  # (B, T)
        conf = torch.where(masked, conf, torch.full_like(conf, float("-inf")))
        pos = conf.argmax(-1)  # (B,)
        rows = masked.any(1).nonzero().squeeze(1)
        z[rows, pos[rows]] = best[rows, pos[rows]]
    return np.array([z[i, len(c) : len(c) + len(t)].tolist() == t for i, (c, t) in enumerate(chunk)])
