"""The likelihood bounds of MDLM, RADD and SEDD against the true NLL, by enumeration (no Monte Carlo).

Setting: N = 3 real tokens, L = 4, a fixed random distribution p over all 81 sequences. The expectation over
masks is an exact sum over all 2^L masks; the integral over t uses Gauss-Legendre quadrature.

Why the absorbing bounds are checked to float precision: under the log-linear schedule with eps = 0
(alpha_t = 1 - t), for a time-agnostic model the integrand (1/t) sum_M t^|M| (1 - t)^(L - |M|) loss(M)
is a polynomial of degree L - 1 in t, so an n-node rule with 2n - 1 >= L - 1 is exact. The exact SEDD-absorb
scores are r(t) c(x), which makes its integrand the same polynomial. The only error left is float32
rounding of the log-probabilities (the objectives compute them in float32): TOL below.
"""

from __future__ import annotations

import math

import pytest
import torch

from tests.diffusion.exact import (
    Enum,
    ExactAbsorbScores,
    ExactUniformScores,
    TableModel,
    gauss_legendre,
    make_objective,
)

ENUM = Enum(N=3, L=4, seed=0)
ORACLE_TABLE = ENUM.conditionals().log()  # (S, L, N) exact log-conditionals
# float32 rounding: each bound sums <= L terms of size <= max NLL, each rounded at ~1e-7 relative, over
# a few quadrature nodes; 1e-4 leaves a margin of ~10x over L * max(nll) * 2^-23 * nodes.
TOL = 10 * ENUM.L * float(ENUM.nll.max()) * 2.0**-23 * 4
assert TOL < 1e-3


def perturbed_table(scale: float = 0.7, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(ORACLE_TABLE.shape, generator=g, dtype=torch.float64) * scale
    return torch.log_softmax(ORACLE_TABLE + noise, dim=-1)  # still a normalised (wrong) conditional


def absorbing_bound(obj, model, patch: str, prob_of_mask, nodes: int = 3) -> torch.Tensor:
    """E_t E_M[sequence_loss] for every x, with the objective's random masking replaced by an enumeration.

    ``patch`` names the method that draws the corruption; ``prob_of_mask(t, masks)`` gives each mask's prob.
    """
    x, masks, xi = ENUM.sequences_times_masks()
    z = torch.where(masks, ENUM.N, x)
    if patch == "mask_tokens":
        obj.mask_tokens = lambda x_, t_, valid=None, generator=None: (z, masks)
    elif patch == "corrupt":
        obj.corrupt = lambda x_, t_, valid=None, generator=None: (z, masks)
    elif patch == "graph":
        obj.graph.sample_forward = lambda x0, sb, valid=None, generator=None: z
    bound = torch.zeros(len(ENUM.X), dtype=torch.float64)
    ts, ws = gauss_legendre(nodes)
    for tq, wq in zip(ts, ws):
        t = torch.full((len(x),), float(tq))
        loss = obj.sequence_loss(model, {"input_ids": x}, t).double()
        bound.index_add_(0, xi, wq * prob_of_mask(float(tq), masks) * loss)
    return bound


def keep_prob(alpha):
    def prob(t, masks):
        a, k = alpha(t), masks.sum(-1).double()
        return a ** (ENUM.L - k) * (1 - a) ** k

    return prob


def any_order_prob(t, masks):
    k = masks.sum(-1)
    p = torch.zeros(len(masks), dtype=torch.float64)
    p[k > 0] = 1.0 / (
        ENUM.L * torch.tensor([math.comb(ENUM.L, int(j)) for j in k[k > 0]], dtype=torch.float64)
    )
    return p


CASES = {
    # name: (objective, fields, patched method, mask probabilities, integrate over t?)
    "mdlm": ("mdlm", {}, "mask_tokens", keep_prob(lambda t: 1 - t)),
    "radd_t_dce": ("radd", {"loss": "t_dce"}, "corrupt", keep_prob(lambda t: 1 - t)),
    "radd_lambda_dce": ("radd", {"loss": "lambda_dce"}, "corrupt", keep_prob(lambda t: 1 - t)),
    "radd_any_order": ("radd", {"loss": "any_order"}, "corrupt", any_order_prob),
}


@pytest.mark.parametrize("case", list(CASES))
def test_absorbing_bound_is_exact_with_the_oracle_and_larger_otherwise(case):
    name, fields, patch, prob = CASES[case]
    obj = make_objective(name, ENUM, schedule={"eps": 0.0}, **fields)
    nodes = 1 if case == "radd_any_order" else 3  # any-order: t only picks nothing (mask probs are exact)
    exact = absorbing_bound(obj, TableModel(ENUM, ORACLE_TABLE), patch, prob, nodes)
    torch.testing.assert_close(exact, ENUM.nll, atol=TOL, rtol=0)  # = -log p(x) for every x
    other = absorbing_bound(obj, TableModel(ENUM, perturbed_table()), patch, prob, nodes)
    gap = float(ENUM.p @ other) - ENUM.entropy  # expected bound minus the true entropy: a KL, > 0
    assert gap > 100 * TOL
    assert (other - ENUM.nll).abs().max() > 100 * TOL


def test_sedd_absorb_bound_is_exact_with_exact_scores():
    """Scores from enumerated marginals p_t(z^{l->v})/p_t(z) (not from the RADD identity)."""
    obj = make_objective("sedd", ENUM, graph="absorb", schedule={"eps": 0.0})
    assert obj.time_conditioned
    model = ExactAbsorbScores(ENUM)
    exact = absorbing_bound(obj, model, "graph", keep_prob(lambda t: 1 - t))
    torch.testing.assert_close(exact, ENUM.nll, atol=TOL, rtol=0)
    # any other (here: time-agnostic, normalised but wrong) scores give a larger expected bound
    other_model = TableModel(ENUM, perturbed_table(), offset=math.log(ENUM.N), time_conditioned=True)
    other = absorbing_bound(obj, other_model, "graph", keep_prob(lambda t: 1 - t))
    assert float(ENUM.p @ other) - ENUM.entropy > 100 * TOL
    # unnormalised scores cost more than their normalised version (DSE >= the normalised cross-entropy)
    scaled = TableModel(ENUM, ORACLE_TABLE + 0.3, offset=math.log(ENUM.N), time_conditioned=True)
    assert (absorbing_bound(obj, scaled, "graph", keep_prob(lambda t: 1 - t)) - ENUM.nll).min() > 100 * TOL


@pytest.mark.parametrize("t", [0.05, 0.5, 0.95])
def test_exact_absorb_scores_are_r_times_the_clean_conditional(t):
    """RADD Thm 1 on the enumeration: p_t(z^{l->v})/p_t(z) = e^{-sb}/(1 - e^{-sb}) p_0(x^l = v | z)."""
    sb = torch.tensor([-math.log(1 - t)], dtype=torch.float64)
    masked = ENUM.Z[(ENUM.Z == ENUM.N).any(-1)]
    h = ExactAbsorbScores(ENUM)(masked, sb.expand(len(masked)))[..., : ENUM.N]  # log s + log N - log r
    log_c = h - math.log(ENUM.N)
    cond = ORACLE_TABLE[ENUM.z_index(masked)]
    at_mask = (masked == ENUM.N).unsqueeze(-1).expand_as(cond)
    torch.testing.assert_close(log_c[at_mask], cond[at_mask], atol=1e-9, rtol=0)


def test_left_to_right_likelihood_is_exact_and_normalised():
    obj = make_objective("radd", ENUM)
    exact = obj.left_to_right_nll(TableModel(ENUM, ORACLE_TABLE), ENUM.X, max_rows=50)
    torch.testing.assert_close(exact, ENUM.nll, atol=TOL, rtol=0)
    # any model defines a proper distribution through its left-to-right factorisation
    other = obj.left_to_right_nll(TableModel(ENUM, perturbed_table()), ENUM.X)
    assert abs(float(torch.exp(-other).sum()) - 1) < 1e-5
    assert float(ENUM.p @ other) > ENUM.entropy + 100 * TOL


# ---- SEDD, uniform graph: not a polynomial in t, so the quadrature error is measured ---------------
UENUM = Enum(N=3, L=3, seed=2)
U_EPS = 1e-6  # log-linear: sigma_bar runs from 0 to -log(eps) ~ 13.8, where p_{1|0} is uniform to 1e-6


T_LOW = 1e-10  # the integral over [0, T_LOW] is left out: < T_LOW (C + log(1/T_LOW)), below 1e-8 here


def uniform_bound(model, nodes: int) -> torch.Tensor:
    """E_t E_{x_t}[DSE] + KL for every x0; x_t enumerated, t by Gauss-Legendre in log t on [T_LOW, 1].

    With full-support data the exact-score integrand grows like log(1/t) at t -> 0 (a state one token away
    from x0 is about as likely as x0, so s_{x0} = O(1) while rho_{x0} ~ 1/t); in log t it is smooth.
    """
    obj = make_objective("sedd", UENUM, graph="uniform", schedule={"eps": U_EPS})
    K = len(UENUM.X)
    x0 = UENUM.X.repeat_interleave(K, 0)  # (K*K, L): every (x0, x_t) pair
    xt = UENUM.X.repeat(K, 1)
    obj.graph.sample_forward = lambda x_, sb, valid=None, generator=None: xt
    bound = torch.zeros(K, dtype=torch.float64)
    us, ws = gauss_legendre(nodes, math.log(T_LOW), 0.0)
    for uq, wq in zip(us, ws):
        tq, wq = math.exp(uq), wq * math.exp(uq)  # dt = e^u du
        t = torch.full((len(x0),), tq, dtype=torch.float64)
        sb = float(obj.schedule.total_noise(t[:1]))
        kern = obj.graph.transition_probs(x0, t.new_full((len(x0),), sb))  # (K*K, L, N)
        pr = kern.gather(-1, xt.unsqueeze(-1)).squeeze(-1).prod(-1)  # p_{t|0}(x_t | x0)
        loss = obj.sequence_loss(model, {"input_ids": x0}, t).double()  # DSE + prior KL
        bound.index_add_(0, torch.arange(K).repeat_interleave(K), wq * pr * loss)
    return bound


def test_sedd_uniform_bound_is_tight_with_exact_scores_and_an_upper_bound():
    exact, finer = uniform_bound(ExactUniformScores(UENUM), 32), uniform_bound(ExactUniformScores(UENUM), 64)
    quad_err = float((exact - finer).abs().max())
    assert quad_err < 1e-5
    # with exact scores the gap is KL(p_{1|0}(.|x0)||pi) - KL(p_{1|0}(.|x0)||p_1) = O(eps): tight
    torch.testing.assert_close(finer, UENUM.nll, atol=10 * quad_err + 1e-5, rtol=0)
    # in expectation over data the gap is KL(p_1 || pi) >= 0: the bound is an upper bound
    left_out = T_LOW * (50 + math.log(1 / T_LOW))  # the integrand is below 50 + log(1/t) on [0, T_LOW]
    assert float(UENUM.p @ finer) >= UENUM.entropy - 10 * quad_err - left_out
    g = torch.Generator().manual_seed(3)
    wrong = ExactUniformScores(
        UENUM, perturb=0.5 * torch.randn(len(UENUM.X), UENUM.L, UENUM.N, generator=g).double()
    )
    other = uniform_bound(wrong, 32)
    assert float(UENUM.p @ other) - UENUM.entropy > 1e-2
