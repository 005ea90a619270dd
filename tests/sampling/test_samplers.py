"""Samplers against exact distributions on an enumerable setting (N = 3 real tokens, L = 3).

Each empirical distribution of M samples is compared with an exact one by total variation, with the
tolerance of :func:`tests.diffusion.exact.tv_tolerance` (expected TV of M samples plus a McDiarmid term at
failure probability 1e-6): it shrinks like 1/sqrt(M), so a wrong sampler fails.
"""

from __future__ import annotations

import math

import pytest
import torch

import mdm.sampling  # noqa: F401  (registers the samplers)
from mdm.config import ConfigError
from mdm.sampling.absorbing import unmask_probability
from mdm.sampling.base import SamplerMismatchError, check_fits, get_sampler, sample_categorical, top_p_filter
from tests.diffusion.exact import (
    Enum,
    ExactAbsorbScores,
    ExactUniformScores,
    TableModel,
    absorbing_step_probs,
    all_masked,
    ancestral_distribution,
    ao_distribution,
    clean_part,
    empirical,
    factorised_chain,
    make_objective,
    tv_tolerance,
)

ENUM = Enum(N=3, L=3, seed=5)
ORACLE = ENUM.conditionals().log()
M = 20_000


def random_table(seed: int = 0) -> torch.Tensor:
    """A time-agnostic model that is not the oracle (conditionals need not be consistent)."""
    g = torch.Generator().manual_seed(seed)
    return torch.log_softmax(torch.randn(ORACLE.shape, generator=g, dtype=torch.float64) * 1.5, -1)


def tv(p: torch.Tensor, q: torch.Tensor) -> float:
    return 0.5 * float((p - q).abs().sum())


def draw(sampler: str, obj, model, steps: int, seed: int = 0, n: int = M, **kw):
    g = torch.Generator().manual_seed(seed)
    return get_sampler(sampler)(obj, model, (n, ENUM.L), steps, g, **kw)


# ---- float64 categorical sampling ----------------------------------------------------------------------
def float32_gumbel_max_prob(delta: float) -> float:
    """Exact P(choose the small category) of float32 Gumbel-max as MDLM implements it -- argmax of
    p / E with E = 1e-10 - log(u + 1e-10), u = torch.rand float32 = k 2^-24 (k = 0 .. 2^24 - 1) -- for
    p = softmax(0, -delta), computed over the whole grid of (u0, u1) pairs (ties go to index 0).

    E equals -log(1 - k 2^-24) ~ k 2^-24 near 0: a grid with no value below 2^-24, so when p1/p0 is
    small the small category (it needs E1 < (p1/p0) E0) is drawn too rarely or never.
    """
    p = torch.softmax(torch.tensor([0.0, -delta], dtype=torch.float64), 0).float()
    u = torch.arange(2**24, dtype=torch.float32) * 2.0**-24
    e = 1e-10 - torch.log(u + 1e-10)  # float32, decreasing in k
    score0, score1 = p[0] / e, p[1] / e  # both increasing in k
    first = int(torch.searchsorted(score1, score0[:1], right=True))  # earlier u1 beat no u0
    below = torch.searchsorted(score0, score1[first:])  # number of u0 with score0 < score1
    return float(below.double().sum()) / 2.0**48


def float64_inverse_cdf_prob(p_small: float) -> float:
    """Exact P(sample_categorical picks index 1 of (1 - p, p)) over the float64 grid u = k 2^-53: the
    smallest k with u * cdf[-1] >= cdf[0], found by bisection with the same float64 operations."""
    probs = torch.tensor([1 - p_small, p_small], dtype=torch.float64)
    p = probs / probs.sum()
    cdf = p.cumsum(-1)
    lo, hi = 0, 2**53
    while lo < hi:
        k = (lo + hi) // 2
        u = torch.tensor(k * 2.0**-53, dtype=torch.float64)
        if int(torch.searchsorted(cdf, (u * cdf[-1:]), right=True)) >= 1:
            hi = k
        else:
            lo = k + 1
    return (2**53 - lo) / 2**53


def test_float32_gumbel_max_undersamples_small_probabilities_and_float64_does_not():
    for delta, max_ratio in [(16.0, 0.8), (18.0, 0.1), (20.0, 0.0)]:
        true = 1 / (1 + math.exp(delta))
        f32 = float32_gumbel_max_prob(delta)
        assert f32 <= max_ratio * true, (delta, f32 / true)  # Gumbel noise capped at -log(2^-24) = 16.6
        f64 = float64_inverse_cdf_prob(true)
        assert abs(f64 / true - 1) < 1e-6  # float64 inverse CDF: exact to the grid spacing 2^-53
    # for larger probabilities float32 is fine
    assert float32_gumbel_max_prob(8.0) == pytest.approx(1 / (1 + math.exp(8.0)), rel=1e-3)


def test_sample_categorical_draws_small_probabilities_at_their_rate():
    g = torch.Generator().manual_seed(0)
    probs = torch.tensor([1.0, 3e-4, 1e-3, 1e-5], dtype=torch.float64)
    n = 400_000
    counts = torch.bincount(sample_categorical(probs.expand(n, 4), g), minlength=4).double()
    p = probs / probs.sum()
    sd = torch.sqrt(n * p * (1 - p))
    assert ((counts - n * p).abs() <= 5 * sd + 1).all(), counts


def test_top_p_filter_keeps_the_smallest_nucleus():
    p = torch.tensor([[0.1, 0.5, 0.15, 0.25]], dtype=torch.float64)
    torch.testing.assert_close(
        top_p_filter(p, 0.7), torch.tensor([[0, 0.5, 0, 0.25]], dtype=torch.float64) / 0.75
    )
    torch.testing.assert_close(
        top_p_filter(p, 0.75), torch.tensor([[0, 0.5, 0, 0.25]], dtype=torch.float64) / 0.75
    )
    torch.testing.assert_close(top_p_filter(p, 1e-9), torch.tensor([[0, 1.0, 0, 0]], dtype=torch.float64))
    assert top_p_filter(p, None) is p
    with pytest.raises(ValueError, match="top_p"):
        top_p_filter(p, 1.5)


# ---- absorbing samplers against exact distributions ---------------------------------------------------
def test_first_hitting_is_any_order_autoregressive_sampling():
    obj = make_objective("radd", ENUM)
    for table, target in [(random_table(), None), (ORACLE, ENUM.p)]:
        exact = ao_distribution(ENUM, table)
        if target is not None:
            torch.testing.assert_close(exact, target)  # exact conditionals: any order gives p
        res = draw("first_hitting", obj, TableModel(ENUM, table), steps=0)
        assert res.nfe == ENUM.L
        assert tv(empirical(ENUM, res.tokens), exact) < tv_tolerance(exact, M)


@pytest.mark.parametrize("sampler", ["ancestral", "cached"])
def test_ancestral_and_cached_match_the_exact_chain(sampler):
    obj = make_objective("radd", ENUM)  # log-linear, eps = 1e-3
    steps, table = 3, random_table(1)
    alphas = [
        float(obj.schedule.alpha(torch.tensor(1 - j / steps, dtype=torch.float64))) for j in range(steps + 1)
    ]
    exact = ancestral_distribution(ENUM, table, alphas)
    res = draw(sampler, obj, TableModel(ENUM, table), steps)
    assert tv(empirical(ENUM, res.tokens), exact) < tv_tolerance(exact, M)


def test_cached_reproduces_ancestral_draw_for_draw_with_fewer_calls():
    """Same generator, time-agnostic model: the cache changes the cost, never a token."""
    obj = make_objective("radd", ENUM)
    model = TableModel(ENUM, random_table(2))
    anc = draw("ancestral", obj, model, 64, seed=3, n=500)
    calls_before = model.calls
    cac = draw("cached", obj, model, 64, seed=3, n=500)
    assert torch.equal(anc.tokens, cac.tokens)
    assert cac.nfe == model.calls - calls_before and cac.extra["nfe_per_sequence"] < anc.nfe


def test_ancestral_and_first_hitting_draw_from_the_same_distribution():
    """With exact conditionals first-hitting draws exactly p; ancestral's discretisation error (two tokens
    unmasked in one step are drawn independently) vanishes as steps grow -- computed exactly by the chain."""
    obj = make_objective("mdlm", ENUM)
    steps = 64
    alphas = [
        float(obj.schedule.alpha(torch.tensor(1 - j / steps, dtype=torch.float64))) for j in range(steps + 1)
    ]
    disc = tv(ancestral_distribution(ENUM, ORACLE, alphas), ENUM.p)
    assert disc < 0.01  # 0.008 at 64 steps, about halving as steps double
    fh = empirical(ENUM, draw("first_hitting", obj, TableModel(ENUM, ORACLE), steps, seed=1).tokens)
    anc = empirical(ENUM, draw("ancestral", obj, TableModel(ENUM, ORACLE), steps, seed=2).tokens)
    tol = tv_tolerance(ENUM.p, M)
    assert tv(fh, ENUM.p) < tol and tv(anc, ENUM.p) < tol + disc
    assert tv(fh, anc) < 2 * tol + disc


def test_semi_ar_with_one_token_blocks_is_left_to_right_sampling():
    obj = make_objective("radd", ENUM)
    res = draw("semi_ar", obj, TableModel(ENUM, ORACLE), steps=2 * ENUM.L, block_size=1)
    assert res.extra["steps_per_block"] == 2
    assert tv(empirical(ENUM, res.tokens), ENUM.p) < tv_tolerance(ENUM.p, M)
    wide = draw("semi_ar", obj, TableModel(ENUM, ORACLE), steps=6, block_size=2, n=64)
    assert (wide.tokens < ENUM.N).all() and wide.nfe <= 6


def test_top_p_restricts_samples_to_the_nucleus():
    obj = make_objective("radd", ENUM)
    table = torch.log(torch.tensor([0.6, 0.3, 0.1], dtype=torch.float64)).expand(ORACLE.shape).clone()
    res = draw("ancestral", obj, TableModel(ENUM, table), steps=4, top_p=0.7)
    counts = torch.bincount(res.tokens.flatten(), minlength=3).double()
    assert counts[2] == 0
    n = counts.sum()
    assert abs(counts[0] / n - 2 / 3) < 5 * math.sqrt(2 / 9 / n)


# ---- NFE -----------------------------------------------------------------------------------------------
class UniformLogits(torch.nn.Module):
    """Time-agnostic network with uniform outputs (only the NFE bookkeeping matters)."""

    def __init__(self, vocab_size: int):
        super().__init__()
        self.v = vocab_size

    def forward(self, x, sigma=None, extra=None, key_mask=None, return_hidden=False):
        return torch.zeros(*x.shape, self.v)


def test_cached_nfe_matches_the_expected_number_of_distinct_steps():
    """Each token's unmasking step is uniform over n steps, so a row's calls = occupied steps of L balls in n
    boxes: mean n(1 - q^L), q = 1 - 1/n; variance from E[X^2] = mean + n(n-1)(1 - 2 q^L + (1 - 2/n)^L)."""
    from mdm.vocab import Vocab

    n, L, R = 16, 16, 3000
    vocab = Vocab(size=5, mask_id=4)
    from mdm.config import Config, ObjectiveConfig
    from mdm.diffusion import build_objective

    cfg = Config()
    cfg.objective = ObjectiveConfig(name="radd")
    cfg.model.seq_len = L
    obj = build_objective(cfg, vocab)
    g = torch.Generator().manual_seed(0)
    res = get_sampler("cached")(obj, UniformLogits(5), (R, L), n, g)
    q = 1 - 1 / n
    mean = n * (1 - q**L)
    var = mean + n * (n - 1) * (1 - 2 * q**L + (1 - 2 / n) ** L) - mean**2
    assert abs(res.extra["nfe_per_sequence"] - mean) < 5 * math.sqrt(var / R)
    assert res.nfe <= n and (res.tokens < 4).all()
    assert get_sampler("ancestral")(obj, UniformLogits(5), (4, L), n, g).nfe == n
    assert get_sampler("first_hitting")(obj, UniformLogits(5), (4, L), n, g).nfe == L


# ---- SEDD samplers -------------------------------------------------------------------------------------
def test_sedd_absorb_analytic_with_exact_scores_is_the_ancestral_chain():
    obj = make_objective("sedd", ENUM, graph="absorb")
    steps = 3
    alphas = [
        float(obj.schedule.alpha(torch.tensor(1 - j / steps, dtype=torch.float64))) for j in range(steps + 1)
    ]
    exact = ancestral_distribution(ENUM, ORACLE, alphas)
    res = draw("analytic", obj, ExactAbsorbScores(ENUM), steps)
    assert res.nfe == steps
    assert tv(empirical(ENUM, res.tokens), exact) < tv_tolerance(exact, M)


def _absorb_euler_chain(obj, steps):
    """Exact output distribution of SEDD's Euler step with exact absorbing scores (r(t) times the oracle)."""
    out = []
    for j in range(steps):
        t, s = 1 - j / steps, 1 - (j + 1) / steps
        tt = torch.tensor(t, dtype=torch.float64)
        move = float(obj.schedule.rate(tt) / torch.expm1(obj.schedule.total_noise(tt))) * (t - s)
        out.append(absorbing_step_probs(ENUM, ORACLE.exp(), 1.0 if j == steps - 1 else min(move, 1.0)))
    return out


def test_sedd_absorb_euler_converges_to_the_data_distribution():
    obj = make_objective("sedd", ENUM, graph="absorb")
    errs = [
        tv(clean_part(ENUM, factorised_chain(ENUM.Z, all_masked(ENUM), _absorb_euler_chain(obj, n))), ENUM.p)
        for n in (8, 64, 512)
    ]
    assert errs[0] > errs[1] > errs[2] and errs[2] < 0.01
    res = draw("euler", obj, ExactAbsorbScores(ENUM), 8)
    exact = clean_part(ENUM, factorised_chain(ENUM.Z, all_masked(ENUM), _absorb_euler_chain(obj, 8)))
    assert tv(empirical(ENUM, res.tokens), exact) < tv_tolerance(exact, M)


def _uniform_chain(obj, kind: str, steps: int) -> torch.Tensor:
    """Exact output distribution of the uniform-graph sampler with exact scores, via the graph's own step."""
    model = ExactUniformScores(ENUM)
    X, K = ENUM.X, len(ENUM.X)
    sched, graph = obj.schedule, obj.graph
    probs = []
    for j in range(steps):
        t, s = 1 - j / steps, 1 - (j + 1) / steps
        tt, ss = torch.full((K,), t, dtype=torch.float64), torch.full((K,), s, dtype=torch.float64)
        log_s = obj.log_scores(model, X, tt)
        if kind == "euler":
            probs.append(graph.euler_probs(log_s, X, sched.rate(tt), t - s))
        else:
            probs.append(graph.analytic_probs(log_s, X, sched.total_noise(tt), sched.total_noise(ss)))
    return factorised_chain(X, torch.full((K,), 1.0 / K, dtype=torch.float64), probs)


@pytest.mark.parametrize("kind", ["analytic", "euler"])
def test_sedd_uniform_samplers_match_their_chain_and_converge_to_the_data(kind):
    obj = make_objective(
        "sedd", ENUM, graph="uniform", schedule={"name": "geometric", "sigma_min": 1e-4, "sigma_max": 20.0}
    )
    coarse, fine = _uniform_chain(obj, kind, 16), _uniform_chain(obj, kind, 256)
    assert tv(fine, ENUM.p) < tv(coarse, ENUM.p) and tv(fine, ENUM.p) < 0.03
    res = draw(kind, obj, ExactUniformScores(ENUM), 16)
    assert res.nfe == 16
    assert tv(empirical(ENUM, res.tokens), coarse) < tv_tolerance(coarse, M)


def test_unmask_probability_is_the_ancestral_rule():
    obj = make_objective("mdlm", ENUM, schedule={"eps": 0.0})
    assert unmask_probability(obj.schedule, 0.5, 0.25) == pytest.approx(0.5)  # (t - s)/t under log-linear
    assert unmask_probability(obj.schedule, 0.5, 0.0) == 1.0


# ---- bad input -----------------------------------------------------------------------------------------
def test_unknown_sampler_lists_the_valid_ones():
    with pytest.raises(KeyError, match="unknown sampler 'nope'.*ancestral.*first_hitting"):
        get_sampler("nope")


def test_unknown_graph_lists_the_valid_ones():
    with pytest.raises(ConfigError, match="objective.graph='ring'.*absorb, uniform"):
        make_objective("sedd", ENUM, graph="ring")


def test_samplers_that_do_not_fit_the_objective_say_which_do():
    sedd_absorb = make_objective("sedd", ENUM, graph="absorb")
    with pytest.raises(SamplerMismatchError, match="time-agnostic network.*samplers that fit: .*ancestral"):
        draw("cached", sedd_absorb, ExactAbsorbScores(ENUM), 4, n=2)
    sedd_uniform = make_objective("sedd", ENUM, graph="uniform")
    with pytest.raises(SamplerMismatchError, match="absorbing.*samplers that fit: analytic, euler"):
        check_fits("ancestral", sedd_uniform)
    with pytest.raises(SamplerMismatchError, match="score-based.*samplers that fit: .*first_hitting"):
        check_fits("euler", make_objective("mdlm", ENUM))
    with pytest.raises(SamplerMismatchError, match="samplers that fit: ar$"):
        check_fits("ancestral", make_objective("ar", ENUM))
    with pytest.raises(ValueError, match="top_p"):
        draw("euler", sedd_uniform, ExactUniformScores(ENUM), 4, n=2, top_p=0.9)
    with pytest.raises(ValueError, match="steps must be >= 1"):
        draw("ancestral", make_objective("radd", ENUM), TableModel(ENUM, ORACLE), 0, n=2)
