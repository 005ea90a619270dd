"""EDLM maths against exact answers on an enumerable setting (tests/edlm/toy.py)."""

from __future__ import annotations

import math

import pytest
import torch

from mdm.diffusion.edlm import (
    ArEnergy,
    effective_sample_size,
    importance_log_weights,
    nce_negative_term,
    nce_positive_term,
    sample_from_log_probs,
    sequence_log_prob,
)
from mdm.eval.edlm import edlm_bound_terms, step_of_time, subset_log_prob
from tests.edlm.toy import ExactAR, FactorisedOracle, Toy, objective


@pytest.fixture(scope="module")
def toy():
    return Toy(N=3, L=3, seed=0)


def _ar_energy(toy, noise=0.0):
    return ArEnergy(
        objective("mdlm", toy), FactorisedOracle(toy, noise=noise), objective("ar", toy), ExactAR(toy)
    )


def _corrected(energy, toy, z):
    """The energy-corrected denoiser mu exp(-E) / Z over all K sequences, for every row of z: (B, K)."""
    B, K = len(z), len(toy.X)
    t = torch.ones(B)
    logp = energy.denoiser_log_probs(z, t)  # (B, L, V)
    cons = toy.consistent(z)  # (B, K)
    x0 = torch.where(z[:, None, :] == toy.N, toy.X[None], z[:, None, :])  # project onto consistent set
    log_mu = sequence_log_prob(logp, x0)  # (B, K)
    e = energy.energy(
        x0.reshape(B * K, -1), z.repeat_interleave(K, 0), t.repeat_interleave(K), log_mu.reshape(-1)
    )
    logw = log_mu - e.view(B, K)
    logw = torch.where(cons, logw, torch.full_like(logw, -math.inf))
    return torch.softmax(logw, -1)


@pytest.mark.parametrize("noise", [0.0, 2.0])
def test_ar_energy_corrects_the_denoiser_to_the_true_posterior(toy, noise):
    """mu_theta exp(-E_AR) ∝ p_AR on the sequences consistent with x_t: with the exact AR model it is the true
    posterior q(x0 | x_t) for EVERY x_t, whatever the (full-support) base denoiser (noise = a bad base)."""
    energy = _ar_energy(toy, noise)
    z = toy.Z[(toy.Z == toy.N).any(-1)]  # every noisy state with at least one mask
    got = _corrected(energy, toy, z)
    want = toy.posterior(z)
    assert torch.allclose(got, want, atol=1e-6), (got - want).abs().max()
    base = toy.factorised_prob(energy.base_model.log_table, z)  # the uncorrected factorised denoiser
    assert (base - want).abs().sum(-1).max() > 0.1  # ... which is wrong: the correction is not vacuous


def test_ar_energy_sign(toy):
    """Lower energy = more likely: among candidates with equal mu, the one with the higher p_AR has the lower E."""
    energy = _ar_energy(toy)
    z = torch.full((1, toy.L), toy.N)
    x = toy.X
    e = energy.energy(x, z.expand(len(x), -1), torch.ones(len(x)), torch.zeros(len(x), dtype=torch.float64))
    assert torch.allclose(e, -toy.p.log(), atol=1e-5)  # with log mu = 0: E = -log p_AR(x0)
    assert int(e.argmin()) == int(toy.p.argmax())


def test_importance_weights_normalise_and_favour_low_energy():
    g = torch.Generator().manual_seed(0)
    e = torch.randn(5, 7, generator=g, dtype=torch.float64) * 1e4  # huge energies: no overflow
    lw = importance_log_weights(e)
    assert lw.dtype == torch.float64
    assert torch.allclose(lw.exp().sum(-1), torch.ones(5, dtype=torch.float64), atol=1e-12)
    assert torch.equal(lw.argmax(-1), e.argmin(-1))
    assert torch.allclose(importance_log_weights(e + 123.0), lw)  # shift invariance
    small = torch.tensor([[0.0, math.log(3.0)]])
    assert torch.allclose(
        importance_log_weights(small).exp(), torch.tensor([[0.75, 0.25]], dtype=torch.float64)
    )
    inf = importance_log_weights(torch.tensor([[1.0, math.inf, 2.0]]))
    assert inf.exp()[0, 1] == 0 and torch.isclose(inf.exp().sum(), torch.tensor(1.0, dtype=torch.float64))
    with pytest.raises(FloatingPointError):
        importance_log_weights(torch.tensor([[math.inf, math.inf]]))
    ess = effective_sample_size(lw)
    assert (ess >= 1 - 1e-9).all() and (ess <= 7 + 1e-9).all()
    assert torch.isclose(
        effective_sample_size(torch.full((4,), -math.log(4.0), dtype=torch.float64)),
        torch.tensor(4.0, dtype=torch.float64),
    )


def test_candidate_sampling_is_exact_and_keeps_unmasked_tokens(toy):
    """k float64 inverse-CDF draws per position follow mu; unmasked positions (carry-over) never change."""
    energy = _ar_energy(toy)
    z = torch.tensor([[toy.N, 1, toy.N]])
    logp = energy.denoiser_log_probs(z, torch.ones(1))
    d = sample_from_log_probs(logp, 20000, torch.Generator().manual_seed(0))  # (1, k, L)
    assert (d[0, :, 1] == 1).all() and (d < toy.N).all()
    freq = torch.bincount(d[0, :, 0], minlength=toy.N).double() / d.shape[1]
    assert torch.allclose(freq, logp[0, 0, : toy.N].double().exp(), atol=0.015)


@pytest.mark.parametrize("nu", [1, 3])
def test_nce_optimum_is_the_log_density_ratio(toy, nu):
    """Minimising the exact expected NCE loss over a tabular energy gives E* = -log(q(x0|x_t)/mu(x0|x_t)):
    the sign is right (likelier-than-mu sequences get negative energy) and the optimum is self-normalised."""
    z = torch.tensor([[toy.N, toy.N, toy.N], [toy.N, 0, toy.N]])
    oracle = FactorisedOracle(toy)
    q = toy.posterior(z)  # (2, K) positives
    mu = toy.factorised_prob(oracle.log_table, z)  # (2, K) noise
    keep = q > 0
    E = torch.zeros(keep.sum(), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS(
        [E], lr=1, max_iter=500, tolerance_grad=1e-12, tolerance_change=1e-14, line_search_fn="strong_wolfe"
    )

    def closure():
        opt.zero_grad()
        loss = (q[keep] * nce_positive_term(E, nu)).sum() + nu * (mu[keep] * nce_negative_term(E, nu)).sum()
        loss.backward()
        return loss

    opt.step(closure)
    want = -(q[keep] / mu[keep]).log()
    assert torch.allclose(E.detach(), want, atol=1e-5)
    Zs = torch.zeros_like(q)
    Zs[keep] = mu[keep] * torch.exp(-E.detach())
    assert torch.allclose(Zs.sum(-1), torch.ones(2, dtype=torch.float64), atol=1e-5)  # Z = 1


def _exact_step_terms(energy, toy, X0, steps):
    """(*) of mdm/eval/edlm.py by enumeration, per data sequence and step: every mask pattern M and revealed
    subset S, with log A_S and log Z by exact quadrature over all completions of x_t. X0: (B, L).
    Returns (edlm (B, steps), base (B, steps)): E[-log p_EDLM(x0^S | x_t)] and E[-log mu(x0^S | x_t)]."""
    import itertools

    B, L, N = len(X0), toy.L, toy.N
    grid = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)
    alpha = energy.schedule.alpha(grid)
    subsets = torch.tensor(list(itertools.product([False, True], repeat=L)))  # (2^L, L)
    edlm = torch.zeros(B, steps, dtype=torch.float64)
    base = torch.zeros(B, steps, dtype=torch.float64)
    for i in range(steps):
        a_t, a_s, t = float(alpha[i]), float(alpha[i + 1]), float(grid[i])
        r = 1.0 if i == steps - 1 else (a_s - a_t) / (1 - a_t)
        for M in subsets[1:]:
            pm = (1 - a_t) ** int(M.sum()) * a_t ** int((~M).sum())
            if pm == 0:
                continue
            S = subsets[~(subsets & ~M).any(-1) & subsets.any(-1)]  # (nS, L) non-empty subsets of M
            ps = torch.tensor(
                [r ** int(s.sum()) * (1 - r) ** int((M & ~s).sum()) for s in S], dtype=torch.float64
            )
            nS = len(S)
            z = torch.where(M, torch.tensor(N), X0)  # (B, L)
            logp = energy.denoiser_log_probs(z, torch.full((B,), t))  # (B, L, V)
            lp_x0 = logp.gather(-1, X0[..., None]).squeeze(-1).double()  # (B, L)
            b = -(S.double()[None] * lp_x0[:, None, :]).sum(-1)  # (B, nS)
            y = torch.where(
                z[:, None, :] == N, toy.X[None], z[:, None, :]
            )  # (B, K, L) completions, projected
            lw = sequence_log_prob(logp, y) - int((~M).sum()) * math.log(N)  # (B, K) duplicates reweighted
            x0r, zr, lpr, yr, lwr = (a.repeat_interleave(nS, 0) for a in (X0, z, logp, y, lw))
            sub = subset_log_prob(energy, x0r, zr, S.repeat(B, 1), torch.full((B * nS,), t), lpr, yr, lwr)
            assert torch.equal(sub.log_p, sub.log_p_plain)  # quadrature: both estimates are exact
            lps = sub.log_p
            edlm[:, i] += pm * (ps[None] * -lps.view(B, nS)).sum(-1)
            base[:, i] += pm * (ps[None] * b).sum(-1)
    return edlm, base


def test_bound_is_tight_with_the_exact_energy_and_valid_for_the_base(toy):
    """With the exact AR energy the corrected denoiser is the true posterior, so the n-step NELBO (*) equals
    -log p(x0) exactly for every x0 (alpha_1 = 0). Averaged over the data, the factorised base's bound and
    that of EDLM on the first step only are valid (>= the entropy) and the base's is strictly looser."""
    energy = _ar_energy(toy)
    e, b = _exact_step_terms(energy, toy, toy.X, steps=2)  # step 0 starts at t = 1, step 1 at t = 0.5
    assert torch.allclose(e.sum(-1), -toy.p.log(), atol=1e-4)
    ent = -float((toy.p * toy.p.log()).sum())
    assert float(toy.p @ b.sum(-1)) > ent + 0.05
    assert float(toy.p @ (e[:, 0] + b[:, 1])) >= ent - 1e-6


def test_monte_carlo_bound_matches_the_exact_expectation(toy):
    """edlm_bound_terms (one step, x_t, S and K importance samples per sequence, times n) averages to (*)."""
    energy = _ar_energy(toy)
    k = int(toy.p.argmax())
    x0 = toy.X[k]
    steps = 3
    e, b = _exact_step_terms(energy, toy, x0[None], steps)
    want, want_base = float(e.sum()), float(b.sum())
    B = 6000
    out = edlm_bound_terms(
        energy,
        {"input_ids": x0.expand(B, -1).clone()},
        steps,
        1.0,
        64,
        generator=torch.Generator().manual_seed(0),
    )
    for got, ref in ((out.nll, want), (out.nll_plain, want), (out.base_nll, want_base)):
        se = float(got.std()) / math.sqrt(B)
        assert abs(float(got.mean()) - ref) < 4 * se + 0.02, (float(got.mean()), ref, se)
    assert (out.tokens == toy.L).all()
    # log Z of the AR energy is log P_AR(unmasked tokens): <= 0, and not ~0 in general
    lz = out.log_z[~out.log_z.isnan()]
    assert lz.mean() < 0 and lz.min() < -0.1


def test_step_of_time_is_uniform_over_steps():
    n, t_min = 4, 1e-3
    t = t_min + (1 - t_min) * (torch.arange(4000, dtype=torch.float64) + 0.5) / 4000
    i = step_of_time(t, n, t_min)
    assert torch.equal(torch.bincount(i, minlength=n), torch.full((n,), 1000))
    assert (
        int(step_of_time(torch.tensor([1.0]), n)) == 0 and int(step_of_time(torch.tensor([0.0]), n)) == n - 1
    )


def test_monte_carlo_bound_is_conservative_when_data_follow_the_model(toy):
    """With x0 ~ the model (here the exact energy makes the model the data distribution) the estimator errs
    high even with K = 4 importance samples: -log Â errs high by Jensen and log Ẑ, with x0 among the
    samples, errs high too (mdm/eval/edlm.py, "Bias")."""
    energy = _ar_energy(toy)
    steps = 3
    e, _ = _exact_step_terms(energy, toy, toy.X, steps)
    exact = float(toy.p @ e.sum(-1))  # = entropy (tight)
    B = 20000
    g = torch.Generator().manual_seed(1)
    x0 = toy.X[torch.multinomial(toy.p, B, replacement=True, generator=g)]
    out = edlm_bound_terms(energy, {"input_ids": x0}, steps, 1.0, 4, generator=g)
    mean, se = float(out.nll.mean()), float(out.nll.std()) / math.sqrt(B)
    assert mean > exact - 3 * se, (mean, exact, se)
    assert mean < exact + 0.5
