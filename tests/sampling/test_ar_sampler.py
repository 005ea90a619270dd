"""The AR sampler: the KV-cache path equals the uncached one, and both draw the model's exact distribution.

A tiny causal backbone in float64 over N = 3 real tokens, L = 4: its own p_theta(x^{2..L} | x^1) is computed
by enumerating all 27 continuations with full forward passes, and the samples are compared with it in total
variation (tolerance as in test_samplers.py), with temperature and nucleus filtering applied exactly.
"""

from __future__ import annotations

import itertools

import pytest
import torch

import mdm.sampling  # noqa: F401
from mdm.config import Config, ObjectiveConfig
from mdm.diffusion import build_objective
from mdm.sampling.autoregressive import next_token_probs
from mdm.sampling.base import get_sampler, top_p_filter
from mdm.sampling.condition import ConditionError
from mdm.sampling.kv_cache import KVCache
from mdm.vocab import Vocab
from tests.diffusion.exact import tv_tolerance

N, L, M = 3, 4, 20_000
VOCAB = Vocab(size=8, mask_id=N)


def tiny_ar(seed: int = 0, vocab: Vocab = VOCAB, seq_len: int = L, depth: int = 2):
    cfg = Config()
    cfg.objective = ObjectiveConfig(name="ar")
    cfg.model.depth, cfg.model.aspect_ratio, cfg.model.head_dim = depth, 16, 8
    cfg.model.seq_len, cfg.model.init_std = seq_len, 0.5  # large weights: far-from-uniform conditionals
    obj = build_objective(cfg, vocab)
    torch.manual_seed(seed)
    return obj, obj.build_model(cfg, vocab).double().eval()


def exact_distribution(model, first: int, temperature=1.0, top_p=None) -> torch.Tensor:
    """(N^(L-1),) probability of every continuation of [first], step by step with full forward passes."""
    conts = torch.tensor(list(itertools.product(range(N), repeat=L - 1)))
    x = torch.cat([torch.full((len(conts), 1), first), conts], 1)
    with torch.no_grad():
        logits = model(x)  # (K, L, V)
    p = torch.ones(len(conts), dtype=torch.float64)
    for pos in range(1, L):
        probs = next_token_probs(logits[:, pos - 1], N, temperature, top_p)  # (K, N)
        p *= probs.gather(-1, x[:, pos : pos + 1]).squeeze(-1)
    return p


def empirical(tokens: torch.Tensor) -> torch.Tensor:
    idx = (tokens[:, 1:] * N ** torch.arange(L - 2, -1, -1)).sum(-1)
    return torch.bincount(idx, minlength=N ** (L - 1)).double() / len(tokens)


def tv(p, q) -> float:
    return 0.5 * float((p - q).abs().sum())


def draw(obj, model, n=M, seed=0, prompt=(1,), **kw):
    g = torch.Generator().manual_seed(seed)
    template = torch.tensor(list(prompt) + [N] * (L - len(prompt)))
    return get_sampler("ar")(obj, model, (n, L), None, g, template=template, **kw)


def test_kv_cache_logits_equal_the_full_forward_pass():
    obj, model = tiny_ar(1, Vocab(size=16, mask_id=11), seq_len=12, depth=3)
    x = torch.randint(0, 11, (5, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        full = model(x)  # (B, L, V)
    cache = KVCache(model, 5, 12)
    got = [cache.prefill(x[:, :4])]
    for pos in range(4, 12):
        got.append(cache.step(x[:, pos]))
    got = torch.stack(got[:-1], 1)  # logits after positions 3..10
    torch.testing.assert_close(got, full[:, 3:11], rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="KV cache full"):
        cache.step(x[:, 0])


@pytest.mark.parametrize("temperature,top_p", [(1.0, None), (0.7, None), (1.3, 0.8)])
def test_cached_sampler_draws_the_exact_distribution_and_equals_the_uncached_one(temperature, top_p):
    obj, model = tiny_ar()
    exact = exact_distribution(model, 1, temperature, top_p)
    cached = draw(obj, model, temperature=temperature, top_p=top_p, seed=3)
    plain = draw(obj, model, temperature=temperature, top_p=top_p, seed=3, kv_cache=False)
    assert torch.equal(cached.tokens, plain.tokens)  # same generator: draw for draw
    assert (cached.tokens[:, 0] == 1).all() and cached.nfe == plain.nfe == L - 1
    assert tv(empirical(cached.tokens), exact) < tv_tolerance(exact, M)
    if top_p is not None:  # filtering really removes mass somewhere
        assert (exact == 0).any()
    assert cached.extra["tokens_per_s"] > 0 and cached.extra["generated_tokens"] == M * (L - 1)


def test_temperature_changes_the_distribution():
    obj, model = tiny_ar()
    cold, warm = exact_distribution(model, 0, 0.5), exact_distribution(model, 0, 2.0)
    ent = [float(-(p * p.clamp_min(1e-300).log()).sum()) for p in (cold, warm)]
    assert ent[0] < ent[1]
    res = draw(obj, model, prompt=(0,), temperature=0.5, seed=4)
    assert tv(empirical(res.tokens), cold) < tv_tolerance(cold, M)


def test_longer_prompt_and_bos_start():
    obj, model = tiny_ar()
    res = draw(obj, model, n=50, prompt=(2, 0, 1))
    assert (res.tokens[:, :3] == torch.tensor([2, 0, 1])).all() and res.nfe == 1
    obj_b, model_b = tiny_ar(vocab=Vocab(size=8, mask_id=N, bos_id=2, eos_id=2))
    g = torch.Generator().manual_seed(0)
    out = get_sampler("ar")(obj_b, model_b, (7, L), None, g)
    assert (out.tokens[:, 0] == 2).all() and (out.tokens < N).all()


def test_ar_sampler_refuses_what_it_cannot_do():
    obj, model = tiny_ar()
    g = torch.Generator().manual_seed(0)
    with pytest.raises(ConditionError, match="prefix only"):
        get_sampler("ar")(obj, model, (2, L), None, g, template=torch.tensor([N, N, 1, N]))
    with pytest.raises(ConditionError, match="no BOS or EOS"):
        get_sampler("ar")(obj, model, (2, L), None, g)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        draw(obj, model, n=2, temperature=0.0)
    with pytest.raises(ValueError, match="does not fit objective 'mdlm'"):
        mdlm = build_objective(Config(), VOCAB)
        get_sampler("ar")(mdlm, model, (2, L), None, g, template=torch.tensor([1, N, N, N]))


def test_next_token_probs_is_tempered_softmax_then_nucleus():
    logits = torch.tensor([[2.0, 0.0, -1.0, 5.0]])  # id 3 is the mask: ignored
    p = next_token_probs(logits, 3, temperature=2.0)
    want = torch.softmax(torch.tensor([1.0, 0.0, -0.5], dtype=torch.float64), -1)
    torch.testing.assert_close(p, want[None])
    torch.testing.assert_close(next_token_probs(logits, 3, 2.0, 0.5), top_p_filter(want[None], 0.5))
