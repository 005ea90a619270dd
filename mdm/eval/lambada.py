"""LAMBADA last-word accuracy.

Each passage (OpenAI's detokenized jsonl, curly quotes straightened, stripped) is split at its last
space: context = everything before, target = " " + last word. Token ids: ``ctx = [BOS] + enc(context)``
and ``tgt = enc(context + target)[len(enc(context)):]`` (the target's tokens as they appear inside the
whole passage; BOS = EOS for tokenizers without one). A passage is correct when the model reproduces
every target token:

* AR (exact): greedy: argmax p(x_i | x_<i) equals the target token at each target position (teacher
  forcing, as in GPT-2 and lm-evaluation-harness).
* diffusion: the input is ``ctx + [MASK] * len(tgt)``; the masked positions are filled greedily, one per
  network call, most confident first (the highest max-probability among masked positions gets its
  argmax), until none is left; correct when the filled tokens equal the target. Needs the objective's
  ``denoiser_log_probs(model, z, t, key_mask=...)``; time-conditioned models get the t whose masking
  probability 1 - alpha_t equals the masked fraction.

The target's nats/token is reported too: exact for AR, for diffusion the conditional NELBO with K time
samples (:func:`mdm.eval.conditional.conditional_nll`).

Context longer than the model: the context is truncated from the left so that context + target fits in
``seq_len`` (BOS kept); the number of truncated passages is reported. Standard error: binomial,
sqrt(acc (1 - acc) / n).
"""

from __future__ import annotations

import math

import torch

from mdm.eval.bound import is_exact
from mdm.eval.conditional import conditional_nll, greedy_match, supports


def split_passage(text: str) -> tuple[str, str]:
    text = text.replace("\u201c", '"').replace("\u201d", '"').strip()
    if " " not in text:
        raise ValueError(f"LAMBADA passage has no space to split off a last word: {text[:60]!r}")
    context, word = text.rsplit(" ", 1)
    return context, " " + word


def lambada_examples(rows: list[str], tok, seq_len: int) -> tuple[list[tuple[list[int], list[int]]], int]:
    """(context ids, target ids) per passage, context left-truncated to fit ``seq_len``; + #truncated."""
    bos = tok.bos_id if tok.bos_id is not None else tok.eos_id
    pairs = [split_passage(r) for r in rows]
    ctx_enc = tok.encode_batch([c for c, _ in pairs])
    whole_enc = tok.encode_batch([c + w for c, w in pairs])
    fixed, truncated = [], 0
    for c, whole, (_, word) in zip(ctx_enc, whole_enc, pairs):
        ok = whole[: len(c)] == c and len(whole) > len(c)
        tgt = whole[len(c) :] if ok else tok.encode(word)  # boundary merged into one token: encode apart
        room = seq_len - len(tgt) - (1 if bos is not None else 0)
        if room < 1:
            raise ValueError(f"LAMBADA target {word!r} ({len(tgt)} tokens) does not fit seq_len={seq_len}")
        if len(c) > room:
            c = c[-room:]
            truncated += 1
        fixed.append(([bos] + c if bos is not None else c, tgt))
    return fixed, truncated


@torch.no_grad()
def lambada_accuracy(
    objective,
    model,
    examples: list[tuple[list[int], list[int]]],
    batch_size: int = 16,
    K: int = 1,
    seed: int = 1234,
    precision: str = "auto",
) -> dict:
    """Accuracy, its binomial SE, and the target's nats/token (exact for AR, a K-sample bound otherwise)."""
    exact = is_exact(objective)
    if not supports(objective) or not (exact or getattr(objective, "has_denoiser", False)):
        return {
            "lambada_acc": None,
            "lambada_method": f"objective {objective.registry_name!r} has no denoiser_log_probs: not computed",
        }
    hits = greedy_match(objective, model, examples, batch_size=batch_size, precision=precision)
    nll = conditional_nll(
        objective, model, examples, K=K, seed=seed, batch_size=batch_size, precision=precision
    )
    n = len(examples)
    acc = float(hits.mean()) if n else float("nan")
    ntok = sum(len(t) for _, t in examples)
    return {
        "lambada_acc": acc,
        "lambada_acc_se": math.sqrt(acc * (1 - acc) / n) if n else None,
        "lambada_n": n,
        "lambada_method": "greedy teacher-forced (AR, exact)"
        if exact
        else "masked target filled greedily, most confident first (diffusion)",
        "lambada_target_nats_per_token": float(nll.sum() / ntok),
        "lambada_target_ppl": math.exp(float(nll.sum() / ntok)),
        "lambada_target_exact": exact,
    }
