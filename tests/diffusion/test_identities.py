"""Identities between the objectives, the literal DSE formula, and the estimators' randomness.

* MDLM's NELBO, RADD's t-DCE and SEDD-absorb's DSE are one function of the normalised outputs and masks.
* The stable DSE of graphs.py equals the literal sum over neighbours of s - rho log s + K(rho) (float64).
* lambda-DCE and the any-order AR estimator have the same expectation (RADD Thm 2), per sequence.
* Each ``sequence_loss`` (real random corruption) is unbiased for the exact bound: a z-test.
"""

from __future__ import annotations

import math

import pytest
import torch

from mdm.diffusion.graphs import build_graph
from mdm.vocab import Vocab
from tests.diffusion.exact import Enum, TableModel, gauss_legendre, make_objective
from tests.diffusion.test_bounds_exact import absorbing_bound, any_order_prob, keep_prob

N, L, B = 5, 8, 64
VOCAB_ENUM = Enum(N=N, L=1)  # only its vocabulary: N real tokens + mask
SCHEDULES = [{"name": "loglinear", "eps": 1e-3}, {"name": "geometric", "sigma_min": 1e-4, "sigma_max": 20.0}]


class Fixed(torch.nn.Module):
    """Returns the same logits whatever the input; checks the time-conditioning contract."""

    def __init__(self, logits: torch.Tensor, time_conditioned: bool):
        super().__init__()
        self.logits, self.time_conditioned = logits, time_conditioned

    def forward(self, x, sigma=None, extra=None, key_mask=None, return_hidden=False):
        assert (sigma is not None) == self.time_conditioned
        return self.logits.clone()


@pytest.mark.parametrize("sched", SCHEDULES, ids=lambda s: s["name"])
def test_mdlm_radd_sedd_absorb_agree_for_the_same_outputs_and_masks(sched):
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, N, (B, L), generator=g)
    masked = torch.rand(B, L, generator=g) < 0.5
    z = torch.where(masked, N, x)
    logp = torch.log_softmax(torch.randn(B, L, N, generator=g, dtype=torch.float64) * 2, -1)  # normalised c
    logits = torch.cat([logp, torch.zeros(B, L, 1, dtype=torch.float64)], -1)
    t = torch.linspace(0.01, 1.0, B, dtype=torch.float64)[torch.randperm(B, generator=g)]
    batch = {"input_ids": x}

    mdlm = make_objective("mdlm", VOCAB_ENUM, schedule=sched)
    mdlm.mask_tokens = lambda *a, **k: (z, masked)
    radd = make_objective("radd", VOCAB_ENUM, schedule=sched, loss="t_dce")
    radd.corrupt = lambda *a, **k: (z, masked)
    sedd = make_objective("sedd", VOCAB_ENUM, schedule=sched, graph="absorb")
    sedd.graph.sample_forward = lambda *a, **k: z

    a = mdlm.sequence_loss(Fixed(logits, False), batch, t).double()
    b = radd.sequence_loss(Fixed(logits, False), batch, t).double()
    # SEDD's network output h maps to c = exp(h - log N): the same normalised c is h = log c + log N
    c = sedd.dse(Fixed(logits + math.log(N), True), x, z, t)
    expected = mdlm.schedule.mask_weight(t) * (-logp.gather(-1, x[..., None])[..., 0] * masked).sum(-1)
    torch.testing.assert_close(a, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(b, a, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(c, a, rtol=1e-6, atol=1e-6)


def literal_dse(graph, log_s, x0, xt, sigma_bar, rate):
    """sum over positions l and neighbours y (x_t with l set to b) of w(y->x_t) [s - rho log s + K(rho)], float64,
    with rho_y = p_{t|0}(y^l | x0^l) / p_{t|0}(x_t^l | x0^l) from the graph's forward kernel."""
    kern = graph.transition_probs(x0, sigma_bar)  # (B, L, S)
    s = log_s.double().exp()
    out = torch.zeros(x0.shape, dtype=torch.float64)
    for i in range(x0.shape[0]):
        for l in range(x0.shape[1]):
            a = int(xt[i, l])
            for b in range(graph.N):
                if b == a:
                    continue
                if graph.absorbing:
                    if a != graph.mask:
                        continue  # no forward jump from a real token to another real token
                    w = float(rate[i])
                else:
                    w = float(rate[i]) / graph.N
                rho = float(kern[i, l, b] / kern[i, l, a])
                K = rho * (math.log(rho) - 1) if rho > 0 else 0.0
                sb = float(s[i, l, b])
                out[i, l] += w * (sb - rho * math.log(sb) + K)
    return out


@pytest.mark.parametrize("graph_name", ["absorb", "uniform"])
def test_stable_dse_equals_the_literal_formula(graph_name):
    graph = build_graph(graph_name, N)
    g = torch.Generator().manual_seed(1)
    b, l = 6, 5
    x0 = torch.randint(0, N, (b, l), generator=g)
    sigma_bar = torch.tensor([1e-3, 0.05, 0.5, 2.0, 8.0, 15.0], dtype=torch.float64)
    # enough corruption to see every case of rho
    xt = graph.sample_forward(x0, sigma_bar.clamp(min=0.5), generator=g)
    rate = torch.rand(b, generator=g, dtype=torch.float64) * 3
    log_s = torch.randn(b, l, N, generator=g, dtype=torch.float64)  # unnormalised, arbitrary scores
    stable = graph.score_entropy(log_s, x0, xt, sigma_bar, rate)
    torch.testing.assert_close(
        stable, literal_dse(graph, log_s, x0, xt, sigma_bar, rate), rtol=1e-9, atol=1e-9
    )
    if graph_name == "uniform":
        assert (xt != x0).any() and (xt == x0).any()


def test_dse_collapses_to_cross_entropy_with_normalised_absorbing_scores():
    """s_v = r c_v with sum c = 1: sigma [sum s - r log s_x0 + K(r)] = sigma r (-log c_x0)  (docs/MATH.md)."""
    graph = build_graph("absorb", N)
    g = torch.Generator().manual_seed(2)
    x0 = torch.randint(0, N, (4, 3), generator=g)
    xt = torch.full_like(x0, N)
    sb = torch.tensor([0.01, 0.3, 3.0, 12.0], dtype=torch.float64)
    log_c = torch.log_softmax(torch.randn(4, 3, N, generator=g, dtype=torch.float64), -1)
    log_r = -torch.log(torch.expm1(sb))
    rate = torch.ones(4, dtype=torch.float64)
    dse = graph.score_entropy(log_c + log_r[:, None, None], x0, xt, sb, rate)
    ce = -log_c.gather(-1, x0[..., None])[..., 0] * torch.exp(log_r)[:, None]
    torch.testing.assert_close(dse, ce, rtol=1e-10, atol=1e-12)


# ---- lambda-DCE and any-order AR ---------------------------------------------------------------------
ENUM = Enum(N=3, L=4, seed=0)


def wrong_table(seed=4):
    g = torch.Generator().manual_seed(seed)
    table = ENUM.conditionals().log() + torch.randn(
        len(ENUM.Z), ENUM.L, ENUM.N, generator=g, dtype=torch.float64
    )
    return torch.log_softmax(table, -1)


def test_lambda_dce_and_any_order_agree_in_expectation_for_any_model():
    model = TableModel(ENUM, wrong_table())
    lam = absorbing_bound(
        make_objective("radd", ENUM, loss="lambda_dce"), model, "corrupt", keep_prob(lambda t: 1 - t)
    )
    ao = absorbing_bound(
        make_objective("radd", ENUM, loss="any_order"), model, "corrupt", any_order_prob, nodes=1
    )
    torch.testing.assert_close(lam, ao, rtol=0, atol=1e-4)  # per sequence, not just on average
    assert float(ENUM.p @ lam) > ENUM.entropy + 0.01  # and both exceed the entropy for this wrong model


@pytest.mark.parametrize(
    "name,fields",
    [
        ("mdlm", {}),
        ("radd", {"loss": "t_dce"}),
        ("radd", {"loss": "lambda_dce"}),
        ("radd", {"loss": "any_order"}),
        ("sedd", {"graph": "absorb"}),
    ],
)
def test_sequence_loss_is_unbiased_for_the_exact_bound(name, fields):
    """The real random corruption (stratified t, masks, k-subsets) against the enumerated expectation."""
    sedd = name == "sedd"
    model = TableModel(ENUM, wrong_table(), offset=math.log(ENUM.N) if sedd else 0.0, time_conditioned=sedd)
    obj = make_objective(name, ENUM, schedule={"eps": 0.0}, t_min=0.0, **fields)
    x_idx = torch.arange(len(ENUM.X)).repeat(200)  # every sequence, 200 draws each
    x = ENUM.X[x_idx]
    g = torch.Generator().manual_seed(7)
    t = obj.sample_times(len(x), "cpu", generator=g)
    draws = obj.sequence_loss(model, {"input_ids": x}, t, generator=g).double()
    patch = {"mdlm": "mask_tokens", "radd": "corrupt", "sedd": "graph"}[name]
    prob = any_order_prob if fields.get("loss") == "any_order" else keep_prob(lambda t: 1 - t)
    exact = absorbing_bound(make_objective(name, ENUM, schedule={"eps": 0.0}, **fields), model, patch, prob)
    se = float(draws.std()) / math.sqrt(len(draws))
    assert abs(float(draws.mean()) - float(exact[x_idx].mean())) < 5 * se


def test_any_order_masks_exactly_k_uniform_positions_and_respects_padding():
    vocab = Vocab(size=8, mask_id=7)
    from mdm.config import Config, ObjectiveConfig
    from mdm.diffusion import build_objective

    cfg = Config()
    cfg.objective = ObjectiveConfig(name="radd", loss="any_order", t_min=0.0)
    obj = build_objective(cfg, vocab)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 7, (4000, 10), generator=g)
    valid = torch.ones_like(x, dtype=torch.bool)
    valid[:, 6:] = False  # 6 valid positions
    t = torch.rand(4000, generator=g)
    z, masked = obj.corrupt(x, t, valid, g)
    k = masked.sum(-1)
    assert not masked[:, 6:].any() and (z[masked] == 7).all()
    torch.testing.assert_close(k, torch.ceil(t.double() * 6).long().clamp(min=1))
    counts = torch.bincount(k, minlength=7)[1:].double()  # k uniform on 1..6
    assert ((counts - 4000 / 6).abs() < 5 * math.sqrt(4000 * (1 / 6) * (5 / 6))).all()
    per_pos = masked[:, :6].double().mean(0)  # every valid position equally likely
    assert (per_pos - per_pos.mean()).abs().max() < 0.05
    torch.testing.assert_close(obj.weight(t, masked, valid), 6.0 / k.float())


def test_gauss_legendre_is_exact_for_the_absorbing_polynomial_degree():
    ts, ws = gauss_legendre(3)
    for d in range(6):  # degree <= 2n - 1 = 5
        assert abs(sum(w * t**d for t, w in zip(ts, ws)) - 1 / (d + 1)) < 1e-14


@pytest.mark.parametrize("graph_name", ["absorb", "uniform"])
def test_forward_sampling_matches_the_transition_kernel(graph_name):
    graph = build_graph(graph_name, N)
    g = torch.Generator().manual_seed(3)
    n = 20000
    x0 = torch.randint(0, N, (1, 1), generator=g).expand(n, 1)
    sb = torch.full((n,), 0.7, dtype=torch.float64)
    xt = graph.sample_forward(x0, sb, generator=g)
    freq = torch.bincount(xt.flatten(), minlength=graph.n_states).double() / n
    p = graph.transition_probs(x0[:1], sb[:1])[0, 0]
    assert ((freq - p).abs() <= 5 * torch.sqrt(p * (1 - p) / n) + 1e-12).all()
