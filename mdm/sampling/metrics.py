"""Token-level sample metrics: unigram entropy of each sample and generative perplexity under an AR model.

Generative perplexity alone rewards low-entropy (repetitive) text -- float32 Gumbel-max lowers it by
lowering the effective temperature (Zheng et al. 2024) -- so it is always reported beside the unigram
entropy of the samples (docs/MATH.md "Samplers").

Units: nats. ``unigram_entropy`` of a sample is H = -sum_v f_v log f_v over the empirical frequencies f_v of
its tokens (at most log L for L tokens). Generative perplexity = exp(sum of per-token NLL / number of scored
tokens) over all samples, in the evaluator's tokens; an AR model scores tokens 2..L of each sample (the
first is its context), as in training.
"""

from __future__ import annotations

import math

import torch


def unigram_entropy(tokens: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Entropy (nats) of the empirical token distribution of each row: tokens (n, L) -> (n,) float64."""
    out = torch.empty(tokens.shape[0], dtype=torch.float64)
    for i, row in enumerate(tokens):
        if valid is not None:
            row = row[valid[i]]
        if row.numel() == 0:
            out[i] = 0.0
            continue
        counts = torch.unique(row, return_counts=True)[1].double()
        f = counts / counts.sum()
        out[i] = float(-(f * f.log()).sum())
    return out


@torch.no_grad()
def ar_nll(objective, model, tokens: torch.Tensor, batch_size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample NLL sum (nats) and scored-token count under an autoregressive model: two (n,) tensors.

    ``objective`` is the evaluator's :class:`mdm.diffusion.ar.Autoregressive`; ``model`` its causal network.
    """
    if not hasattr(objective, "log_probs") or not getattr(objective, "causal", False):
        raise ValueError(
            f"the evaluator must be an autoregressive run (objective 'ar'), got {getattr(objective, 'registry_name', '?')!r}"
        )
    n, L = tokens.shape
    ctx = getattr(getattr(model, "dims", None), "seq_len", None)
    if ctx is not None and L > ctx:
        raise ValueError(f"samples of length {L} exceed the evaluator's context model.seq_len={ctx}")
    if int(tokens.max()) >= objective.vocab.mask_id:
        raise ValueError(
            f"sample token ids reach {int(tokens.max())} but the evaluator has {objective.vocab.mask_id} real tokens"
        )
    device = next(model.parameters()).device
    sums, counts = torch.zeros(n, dtype=torch.float64), torch.zeros(n, dtype=torch.float64)
    for i in range(0, n, batch_size):
        x = tokens[i : i + batch_size].to(device)
        seq = objective.sequence_loss(model, {"input_ids": x})  # (b,) nats
        sums[i : i + len(x)] = seq.double().cpu()
        counts[i : i + len(x)] = float(L - 1)
    return sums, counts


def generative_perplexity(nll_sums: torch.Tensor, counts: torch.Tensor) -> float:
    """exp(total NLL / total scored tokens)."""
    total = float(counts.sum())
    return math.exp(float(nll_sums.sum()) / total) if total > 0 else float("nan")
