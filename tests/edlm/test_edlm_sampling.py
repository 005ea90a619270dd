"""EDLM generation on the enumerable setting: closer to the data than its base, the sign of the energy in
resampling, the posterior step and the cost accounting."""

from __future__ import annotations

import math

import pytest
import torch

from mdm.diffusion.edlm import ArEnergy, Energy
from mdm.sampling.base import get_sampler
from mdm.sampling.importance import edlm_generate, importance_select, posterior_step
from tests.edlm.toy import ExactAR, FactorisedOracle, Toy, objective


@pytest.fixture(scope="module")
def toy():
    return Toy(N=3, L=3, seed=0)


def _ar(toy, noise=0.0):
    return ArEnergy(
        objective("mdlm", toy), FactorisedOracle(toy, noise=noise), objective("ar", toy), ExactAR(toy)
    )


class Flipped(Energy):
    """The public reproduction's bug: resampling with exp(+E) instead of exp(-E)."""

    kind = "flipped"

    def __init__(self, inner: Energy):
        super().__init__(inner.base_objective, inner.base_model)
        self.inner = inner

    def energy(self, x0, z, t, log_mu):
        return -self.inner.energy(x0, z, t, log_mu)


class Spike(Energy):
    """E = 0 on one target sequence and ``other`` elsewhere."""

    kind = "spike"

    def __init__(self, inner: Energy, target: torch.Tensor, other: float):
        super().__init__(inner.base_objective, inner.base_model)
        self.target, self.other = target, other

    def energy(self, x0, z, t, log_mu):
        hit = (x0 == self.target).all(-1)
        return torch.where(hit, 0.0, self.other).double()


@pytest.mark.parametrize("steps", [1, 2])
def test_edlm_samples_are_closer_to_the_data_than_the_base(toy, steps):
    """Few steps: the factorised base unmasks correlated tokens independently and misses p_data; EDLM with the
    exact AR energy (k = 32, every step) nearly recovers it. With the energy's sign flipped it gets worse."""
    energy = _ar(toy)
    n = 4000
    gen = lambda s: torch.Generator().manual_seed(s)  # noqa: E731
    base = edlm_generate(energy, (n, toy.L), steps, num_candidates=1, window=1.0, generator=gen(1))
    edlm = edlm_generate(energy, (n, toy.L), steps, num_candidates=32, window=1.0, generator=gen(2))
    flip = edlm_generate(Flipped(energy), (n, toy.L), steps, num_candidates=32, window=1.0, generator=gen(3))
    tv_base, tv_edlm, tv_flip = toy.tv(base.tokens), toy.tv(edlm.tokens), toy.tv(flip.tokens)
    noise = math.sqrt(len(toy.X) / n)  # ~ the TV of an exact sampler with n draws (upper estimate)
    assert tv_edlm < noise, (tv_edlm, noise)
    assert tv_edlm < tv_base - 0.1, (tv_edlm, tv_base)
    assert tv_flip > tv_base, (tv_flip, tv_base)
    if steps == 1:  # one step = one draw from the product of the first-step marginals: TV known exactly
        mu = toy.factorised_prob(energy.base_model.log_table, torch.full((1, toy.L), toy.N))[0]
        exact_tv = 0.5 * float((mu - toy.p).abs().sum())
        assert abs(tv_base - exact_tv) < noise


def test_lower_energy_is_selected(toy):
    """E = 0 on a target and +20 elsewhere: the target is picked whenever it is among the k candidates
    (probability 1 - (1 - mu(target))^k); with -20 elsewhere (the wrong sign) it is almost never picked."""
    energy = _ar(toy)
    z = torch.full((20000, toy.L), toy.N)
    t = torch.ones(len(z))
    logp = energy.denoiser_log_probs(z, t)
    mu = toy.factorised_prob(energy.base_model.log_table, z[:1])[0]
    target_k = int(mu.argsort()[len(mu) // 2])  # a middling-probability sequence
    target = toy.X[target_k]
    k = 4
    want = 1 - (1 - float(mu[target_k])) ** k
    x0, log_w = importance_select(
        Spike(energy, target, 20.0), logp, z, t, k, torch.Generator().manual_seed(0)
    )
    got = float((x0 == target).all(-1).double().mean())
    assert abs(got - want) < 4 * math.sqrt(want * (1 - want) / len(z)) + 1e-3
    assert torch.allclose(log_w.exp().sum(-1), torch.ones(len(z), dtype=torch.float64))
    x0, _ = importance_select(Spike(energy, target, -20.0), logp, z, t, k, torch.Generator().manual_seed(0))
    assert float((x0 == target).all(-1).double().mean()) < float(mu[target_k]) ** k + 1e-3


def test_posterior_step_reveals_with_the_right_probability():
    g = torch.Generator().manual_seed(0)
    x = torch.full((400, 50), 7)
    x[:, :10] = 3  # already unmasked
    x0 = torch.randint(0, 7, x.shape, generator=g)
    x0[:, :10] = 3
    out = posterior_step(x, x0, 0.3, mask_id=7, generator=g)
    assert (out[:, :10] == 3).all()
    revealed = out[:, 10:] != 7
    assert torch.equal(out[:, 10:][revealed], x0[:, 10:][revealed])
    assert abs(float(revealed.double().mean()) - 0.3) < 0.01
    assert (posterior_step(x, x0, 1.0, 7, g) != 7).all() and torch.equal(posterior_step(x, x0, 0.0, 7, g), x)


def test_window_and_cost_accounting(toy):
    """Importance sampling runs at steps starting at t in [1 - w, 1]; NFE = denoiser calls + energy calls;
    window 0 is the plain ancestral sampler (same draws as k = 1)."""
    energy = _ar(toy)
    calls0 = energy.ar_model.calls
    r = edlm_generate(
        energy, (8, toy.L), 4, num_candidates=5, window=0.5, generator=torch.Generator().manual_seed(0)
    )
    assert r.extra["is_steps"] == 3 and r.extra["denoiser_calls"] == 4  # t = 1, 0.75, 0.5 (not 0.25)
    assert r.nfe == 7 and r.extra["candidates_scored"] == 3 * 8 * 5
    assert energy.ar_model.calls - calls0 == 3  # ONE batched energy call per importance-sampling step
    assert 1 <= r.extra["mean_ess"] <= 5
    a = edlm_generate(energy, (8, toy.L), 4, 16, 0.0, torch.Generator().manual_seed(3))
    b = edlm_generate(energy, (8, toy.L), 4, 1, 1.0, torch.Generator().manual_seed(3))
    assert torch.equal(a.tokens, b.tokens) and a.nfe == 4 and a.extra["energy_calls"] == 0


def test_registered_sampler_and_options(toy):
    energy = _ar(toy)
    sampler = get_sampler("edlm")
    r = sampler(
        energy.base_objective,
        energy.base_model,
        (4, toy.L),
        3,
        torch.Generator().manual_seed(0),
        energy=energy,
        num_candidates="3",
        window="1",
    )
    assert r.tokens.shape == (4, toy.L) and r.extra["num_candidates"] == 3 and r.extra["is_steps"] == 3
    with pytest.raises(ValueError, match="unknown option"):
        sampler(energy.base_objective, energy.base_model, (4, toy.L), 3, energy=energy, temperature=2)
    with pytest.raises(ValueError, match="needs an energy"):
        sampler(energy.base_objective, energy.base_model, (4, toy.L), 3)
    with pytest.raises(ValueError, match="window"):
        edlm_generate(energy, (4, toy.L), 3, 4, 1.5)
