"""Left-to-right sampling from the autoregressive baseline, with or without a key/value cache.

x^1 is the prompt's first token, or BOS (EOS for tokenizers without one: the start of a document in the
packed training stream). Then for l = n+1..L: x^l ~ p_theta(. | x^{<l}) with temperature T and nucleus
``top_p``: p ∝ exp(log p_theta / T) over real tokens, in float64, drawn by inverse CDF
(:func:`mdm.sampling.base.sample_categorical`), like every sampler here.

* ``kv_cache=True`` (default): one prefill over the prompt, then one single-token step per generated token
  (:class:`mdm.sampling.kv_cache.KVCache`): L - n network calls, each O(l) attention.
* ``kv_cache=False``: a full forward pass over x^{<l} per token (the reference; same calls, O(l^2) work).

Both draw the same tokens from the same generator up to the rounding of the logits (equal in float64; test).
A template (:mod:`mdm.sampling.condition`) must be a prefix: an AR model cannot condition on later tokens.
"""

from __future__ import annotations

import time

import torch

from mdm.sampling.base import SampleResult, model_device, register_sampler, sample_categorical, top_p_filter
from mdm.sampling.condition import ConditionError, prefix_length
from mdm.sampling.kv_cache import KVCache


def fits_ar(objective) -> str | None:
    if not getattr(objective, "causal", False):
        return (
            "it needs the autoregressive baseline (objective 'ar'); diffusion runs use the absorbing samplers"
        )
    return None


def next_token_probs(
    logits: torch.Tensor, n_real: int, temperature: float = 1.0, top_p: float | None = None
) -> torch.Tensor:
    """(B, V) logits -> (B, n_real) float64 probabilities with temperature and nucleus filtering."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    logp = torch.log_softmax(logits[..., :n_real].double() / temperature, dim=-1)
    return top_p_filter(logp.exp(), top_p)


def start_token(vocab) -> int:
    for tok in (vocab.bos_id, vocab.eos_id):
        if tok is not None:
            return int(tok)
    raise ConditionError("this vocabulary has no BOS or EOS to start an AR sample from: give a prompt")


@register_sampler("ar", fits=fits_ar)
def ar_sample(
    objective,
    model,
    shape: tuple[int, int],
    steps: int | None = None,
    generator: torch.Generator | None = None,
    top_p: float | None = None,
    temperature: float = 1.0,
    kv_cache: bool = True,
    device=None,
    template: torch.Tensor | None = None,
    **_options,
) -> SampleResult:
    """Draw ``shape = (B, L)`` sequences left to right (``steps`` unused: one call per generated token)."""
    started = time.perf_counter()  # its own clock: tokens_per_s below
    device = device or model_device(model)
    B, L = shape
    mask_id = objective.vocab.mask_id
    x = torch.full((B, L), mask_id, dtype=torch.long, device=device)
    n = prefix_length(template, mask_id) if template is not None else 0
    if template is not None:
        x[:, :n] = torch.as_tensor(template).reshape(-1, L)[0, :n].to(device)
    if n == 0:
        x[:, 0] = start_token(objective.vocab)
        n = 1
    temperature = float(temperature)
    nfe = 0
    cache = KVCache(model, B, L) if kv_cache and n < L else None
    logits = cache.prefill(x[:, :n]) if cache is not None else None
    for pos in range(n, L):
        if cache is None:
            logits = model(x[:, :pos])[:, -1]  # (B, V)
        elif pos > n:
            logits = cache.step(x[:, pos - 1])
        nfe += 1
        x[:, pos] = sample_categorical(next_token_probs(logits, mask_id, temperature, top_p), generator)
    wall = time.perf_counter() - started
    generated = B * (L - n)
    extra = {
        "kv_cache": bool(kv_cache),
        "temperature": temperature,
        "prompt_tokens": n,
        "generated_tokens": generated,
        "tokens_per_s": generated / wall if wall > 0 else float("nan"),
    }
    return SampleResult(x, nfe, wall, extra)
