"""The likelihood bound of EDLM: the NELBO of the n-step EDLM sampling process, estimated by Monte Carlo.

What the generative model is. The process sampled by ``mdm sample --sampler edlm`` (mdm/sampling/
importance.py) on the grid t_i = 1 - i/n: at a step t -> s it draws x0 from a denoiser p_i(x0 | x_t) and
reveals each masked position to x0 with probability r = (alpha_s - alpha_t)/(1 - alpha_t) (r = 1 at the last
step). p_i is the energy-corrected p(x0|x_t) = mu_theta(x0|x_t) exp(-E(x0,x_t)) / Z(x_t) at steps in the
window (t > 1 - w) -- the k -> infinity limit of the sampler's importance resampling -- and the factorised
base denoiser mu_theta elsewhere.

The bound. For that process (a discrete-time absorbing diffusion with a joint denoiser),

    -log p(x0) <= sum_{i=0}^{n-1} E_{x_t ~ q(x_{t_i} | x0)} E_S [ -log p_i(x0^S | x_t) ]                (*)

where S is the set of masked positions the step reveals (each masked position independently w.p. r) and
p_i(x0^S | x_t) is the denoiser's MARGINAL over S: the KL(q(x_s | x_t, x0) || p(x_s | x_t)) of one step
reduces to it because both sides choose S with the same probability. The prior term at t = 1 is dropped
(it is 0 when alpha_1 = 0; MDLM's log-linear eps = 1e-3 leaves a token unmasked at t = 1 w.p. 1e-3). (*)
is tight when every p_i is the true posterior q(x0 | x_t) and alpha_1 = 0 (tested by enumeration). With
p_i = mu_theta everywhere it is the base model's n-step bound, sum_{l in S} -log mu_theta(x0^l | x_t),
which tends to MDLM's continuous-time NELBO as n grows.

Estimated, per sequence: one step i (the eval's stratified time t mapped to i = floor(n (1 - t)/(1 - t_min))),
one x_t ~ q, one S, times n; averaged over the eval's time samples. Outside the window the term is exact
given (i, x_t, S). Inside it,

    log p(x0^S | x_t) = log mu_theta(x0^S | x_t) + log A_S - log Z,
    A_S = E_{y ~ mu_theta(.|x_t)} exp(-E(x0^S ∪ y^{rest}, x_t)),   Z = E_{y ~ mu_theta(.|x_t)} exp(-E(y, x_t)),

(y^{rest}: y on the masked positions outside S) and both expectations are estimated with the same K draws
y_1..y_K ~ mu_theta(.|x_t) (``objective.edlm.bound_samples``): log A_S ~ logmeanexp_k(-E(x0^S ∪ y_k^rest)),
log Z ~ logmeanexp_k(-E(y_k)).

log Z. *AR energy*: exp(-E(y)) = p_AR(y) / mu_theta(y | x_t), so Z(x_t) = P_AR(the unmasked tokens of x_t),
far from 1 (it is not dropped: dropping it would be an upper bound, log Z <= 0, but one that re-counts
every unmasked token at every step). *NCE energy*: NCE's optimum is self-normalised (Z = 1), but a
finite-capacity, finitely trained energy is not, so log Z is estimated exactly as for the AR energy; its
mean is returned as a diagnostic (~0 means well self-normalised). When S is all of x_t's masked
positions, A_S = exp(-E(x0)) is exact and only log Z is estimated.

Bias. Both log-estimators are consistent (K -> infinity) and biased low by Jensen: E log Â <= log A (makes
the reported NLL too high, conservative) and E log Ẑ <= log Z (makes it too low). The net O(1/K) bias has no
guaranteed sign, so with finite K the figure is an estimate of the bound (*), not a guaranteed upper
bound. Report K beside it (and increase it to check stability).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from mdm.config import EdlmConfig
from mdm.diffusion.edlm import Energy, energy_from, sample_from_log_probs, sequence_log_prob
from mdm.sampling.importance import in_window


@dataclass
class EdlmBound:
    nll: torch.Tensor  # (B,) float64: estimate of the EDLM n-step NELBO (*), nats per sequence
    base_nll: torch.Tensor  # (B,) float64: the base model's n-step NELBO on the same draws
    tokens: torch.Tensor  # (B,) positions per sequence (the per-token denominator, as MDLM)
    log_z: torch.Tensor  # (B,) float64: mean log Ẑ(x_t) over the draws inside the window (NaN if none)
    info: dict = field(default_factory=dict)


@torch.no_grad()
def subset_log_prob(
    energy: Energy,
    x0: torch.Tensor,
    z: torch.Tensor,
    reveal: torch.Tensor,
    t: torch.Tensor,
    logp: torch.Tensor,
    cands: torch.Tensor,
    cand_log_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """log p(x0^S | z) of the energy-corrected denoiser and log Z(z) (module docstring), both (N,) float64.

    x0, z: (N, L); reveal: (N, L) bool, the set S (a subset of z's masked positions); t: (N,);
    logp: (N, L, V) base log-probs at z; cands: (N, K, L) completions y drawn from mu_theta(.|z), each
    expectation estimated by their mean (``cand_log_weights`` None) or, for exact quadrature over an
    enumerated set, by sum_k exp(cand_log_weights[k]) f(y_k) with normalised log weights (N, K).
    All N*2K energies are computed in one call.
    """
    N, K, L = cands.shape
    y_a = torch.where(reveal[:, None, :], x0[:, None, :], cands)  # (N, K, L): x0 on S, y elsewhere
    both = torch.cat([cands, y_a], dim=1)  # (N, 2K, L)
    log_mu = sequence_log_prob(logp, both)  # (N, 2K)
    e = energy.energy(
        both.reshape(N * 2 * K, L),
        z.repeat_interleave(2 * K, 0),
        t.repeat_interleave(2 * K, 0),
        log_mu.reshape(-1),
    ).view(N, 2 * K)
    if cand_log_weights is None:
        lw = torch.full((N, K), -math.log(K), dtype=torch.float64, device=z.device)
    else:
        lw = cand_log_weights.double()
    log_z = torch.logsumexp(lw - e[:, :K], dim=-1)  # (N,)
    log_a = torch.logsumexp(lw - e[:, K:], dim=-1)  # (N,)
    lp_x0 = logp.gather(-1, x0.unsqueeze(-1)).squeeze(-1).double()  # (N, L)
    log_mu_s = torch.where(reveal, lp_x0, torch.zeros_like(lp_x0)).sum(-1)  # (N,)
    return log_mu_s + log_a - log_z, log_z


def step_of_time(t: torch.Tensor, steps: int, t_min: float = 0.0) -> torch.Tensor:
    """Map times t in [t_min, 1] to step indices i in {0..n-1} uniformly: i = floor(n (1 - t) / (1 - t_min))."""
    u = ((1.0 - t.double()) / (1.0 - t_min)).clamp(0.0, 1.0)
    return torch.floor(u * steps).long().clamp_(0, steps - 1)


@torch.no_grad()
def edlm_bound_terms(
    energy: Energy,
    batch: dict[str, torch.Tensor],
    steps: int,
    window: float,
    num_samples: int,
    step_index: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> EdlmBound:
    """One Monte Carlo draw of (*) per sequence (times n) for the EDLM and for its base model.

    ``step_index`` (B,) picks each sequence's step (uniform and stratified across the batch when None).
    """
    x = batch["input_ids"]
    mask = batch.get("attention_mask")
    if mask is not None and not bool(mask.all()):
        raise NotImplementedError(
            "the EDLM bound needs unpadded blocks (data.wrap=true); got an attention_mask"
        )
    B, L = x.shape
    dev = x.device
    n = int(steps)
    if step_index is None:
        u = torch.rand(
            (), dtype=torch.float64, generator=generator, device=generator.device if generator else dev
        )
        step_index = (
            torch.floor(n * torch.remainder(u.cpu() + torch.arange(B) / B, 1.0)).long().clamp_(0, n - 1)
        )
    i = step_index.to("cpu")
    grid = torch.linspace(1.0, 0.0, n + 1, dtype=torch.float64)
    alpha = energy.schedule.alpha(grid)
    t, a_t, a_s = grid[i], alpha[i], alpha[i + 1]
    r = torch.where(i == n - 1, torch.ones_like(a_t), ((a_s - a_t) / (1 - a_t)).clamp(0.0, 1.0))
    g_dev = generator.device if generator is not None else dev
    masked = (
        torch.rand((B, L), dtype=torch.float64, generator=generator, device=g_dev).to(dev)
        < (1 - a_t).to(dev)[:, None]
    )
    reveal = masked & (
        torch.rand((B, L), dtype=torch.float64, generator=generator, device=g_dev).to(dev)
        < r.to(dev)[:, None]
    )
    z = torch.where(masked, torch.full_like(x, energy.mask_id), x)
    tt = t.float().to(dev)
    logp = energy.denoiser_log_probs(z, tt)  # (B, L, V)
    lp_x0 = logp.gather(-1, x.unsqueeze(-1)).squeeze(-1).double()  # (B, L)
    base_term = -torch.where(reveal, lp_x0, torch.zeros_like(lp_x0)).sum(-1)  # (B,)
    term = base_term.clone()
    log_z = torch.full((B,), float("nan"), dtype=torch.float64, device=dev)
    rows = torch.tensor([in_window(float(tb), window) for tb in t], device=dev) & reveal.any(-1)
    if rows.any():
        idx = rows.nonzero().squeeze(-1)
        cands = sample_from_log_probs(logp[idx], num_samples, generator)  # (b, K, L)
        lps, lz = subset_log_prob(energy, x[idx], z[idx], reveal[idx], tt[idx], logp[idx], cands)
        term[idx] = -lps
        log_z[idx] = lz
    return EdlmBound(
        nll=n * term,
        base_nll=n * base_term,
        tokens=torch.full((B,), float(L), dtype=torch.float64, device=dev),
        log_z=log_z,
        info={"steps": n, "window": window, "bound_samples": num_samples, "energy": energy.kind},
    )


def edlm_bound(
    source,
    model=None,
    batch: dict[str, torch.Tensor] | None = None,
    t: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    *,
    steps: int | None = None,
    window: float | None = None,
    num_samples: int | None = None,
    ar_run: str | None = None,
) -> torch.Tensor:
    """Per-sequence estimate (B,) float64, in nats, of the EDLM likelihood bound (*) (module docstring).

    ``source`` is an :class:`~mdm.diffusion.edlm.Energy` (e.g. from ``load_energy``; ``model`` ignored) or
    the objective of a loaded ``edlm_nce`` run with its ``model`` (the energy network), or a base run's
    objective/model with ``ar_run``. ``batch`` = {"input_ids": (B, L)} of real tokens (no padding).
    ``t`` (B,) in [t_min, 1] are the eval's (stratified) times, mapped to the step index
    i = floor(n (1 - t)/(1 - t_min)); None draws the steps here. ``generator`` drives x_t, S and the K
    importance samples. steps / window / num_samples default to the run's objective.edlm
    (bound_steps, window, bound_samples). Divide the sum over sequences by B*L for nats per token (the
    objective's ``scored_tokens``).
    """
    if batch is None:
        raise TypeError("edlm_bound needs a batch")
    if isinstance(source, Energy):
        energy, ocfg = source, None
    else:
        energy, ocfg = energy_from(source, model, ar_run), getattr(source, "ocfg", None)
    e = getattr(ocfg, "edlm", None) or EdlmConfig()
    n = int(steps if steps is not None else e.bound_steps)
    w = float(window if window is not None else e.window)
    k = int(num_samples if num_samples is not None else e.bound_samples)
    idx = None
    if t is not None:
        idx = step_of_time(t.cpu(), n, float(getattr(ocfg, "t_min", 0.0) or 0.0))
    return edlm_bound_terms(energy, batch, n, w, k, idx, generator).nll


__all__ = ["EdlmBound", "edlm_bound", "edlm_bound_terms", "step_of_time", "subset_log_prob"]
