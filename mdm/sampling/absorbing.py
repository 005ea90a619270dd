"""Samplers for absorbing (masked) diffusion: ancestral, cached ancestral, first-hitting, semi-autoregressive.

They work with any objective that offers ``denoiser_log_probs(model, z, t)`` (MDLM, RADD, SEDD-absorb, ...;
see :mod:`mdm.sampling.base`). Time grid: t_j = 1 - j/steps, j = 0..steps (uniform in t). docs/MATH.md "Samplers".

* ancestral: step t -> s, each masked token unmasks with probability (alpha_s - alpha_t)/(1 - alpha_t) to a
  token drawn from p_theta(.|z_t, t); unmasked tokens stay; at s = 0 every remaining mask is filled. One
  network call per step.
* cached: the same chain for a time-agnostic network, whose output depends on the tokens only: a row's
  output is reused while none of its tokens changed. With n steps and L tokens under the log-linear schedule
  each token's unmasking step is uniform over the n steps, and a row calls the network once per distinct
  step in which it changes (the call before its last change sees a state it then leaves for good), so
  E[NFE] = n (1 - (1 - 1/n)^L) (MDLM §C; 647 for n = L = 1024).
* first-hitting (Zheng et al. 2024, Prop. 4.1): with n masked tokens at time tau, the next unmasking time is
  tau' = alpha^{-1}(1 - u^{1/n} (1 - alpha_tau)), u ~ U(0, 1); one uniformly chosen masked position is unmasked
  there. Exactly L calls, none wasted; for a time-agnostic network it is any-order autoregressive sampling.
* semi_ar: left-to-right blocks of ``block_size`` positions, each decoded by ancestral steps while later
  blocks stay masked (LLaDA-style semi-autoregressive decoding within the model's context).

Every draw is float64: Bernoulli unmasking against float64 uniforms, tokens by inverse CDF
(:func:`mdm.sampling.base.sample_categorical`). ``top_p`` applies nucleus filtering to p_theta.

Conditioning: every sampler takes ``template`` ((L,) or (B, L) ids, ``mask_id`` where to generate;
:mod:`mdm.sampling.condition`) and starts its chain there; unmasked tokens never move, so the template's
tokens come out unchanged and the free ones are drawn given them.
"""

from __future__ import annotations

import torch

from mdm.sampling.base import (
    Drawn,
    absorbing,
    model_device,
    register_sampler,
    sample_categorical,
    top_p_filter,
)
from mdm.sampling.condition import start_state


# -- compatibility checks -------------------------------------------------------------------------------
def fits_absorbing(objective) -> str | None:
    if not absorbing(objective):
        graph = getattr(objective, "graph_name", None)
        what = f"graph {graph!r}" if graph else "no absorbing denoiser (denoiser_log_probs)"
        return f"it needs an absorbing-diffusion objective and this one has {what}"
    return None


def fits_cached(objective) -> str | None:
    why = fits_absorbing(objective)
    if why is None and objective.time_conditioned:
        return (
            "the cached sampler reuses network outputs across time steps, which needs a time-agnostic network; "
            "this run's network is time-conditioned (model.time_conditioning=true)"
        )
    return why


# -- shared pieces --------------------------------------------------------------------------------------
def time_grid(steps: int) -> list[float]:
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    return [1.0 - j / steps for j in range(steps + 1)]


def unmask_probability(schedule, t: float, s: float) -> float:
    """(alpha_s - alpha_t)/(1 - alpha_t): probability that a token masked at t is clean at s < t (1 at s = 0)."""
    if s <= 0.0:
        return 1.0
    a_t = float(schedule.alpha(torch.tensor(t, dtype=torch.float64)))
    a_s = float(schedule.alpha(torch.tensor(s, dtype=torch.float64)))
    return min(1.0, max(0.0, (a_s - a_t) / (1 - a_t)))


def time_for_alpha(schedule, alpha: torch.Tensor, iters: int = 60) -> torch.Tensor:
    """t with alpha_t = alpha (alpha is decreasing in t) by bisection on [0, 1], float64; clamps to the ends."""
    alpha = alpha.double()
    lo, hi = torch.zeros_like(alpha), torch.ones_like(alpha)
    for _ in range(iters):
        mid = (lo + hi) / 2
        above = schedule.alpha(mid) > alpha  # still too clean: the answer is later
        lo, hi = torch.where(above, mid, lo), torch.where(above, hi, mid)
    return (lo + hi) / 2


def denoiser_probs(
    objective, model, z: torch.Tensor, t: torch.Tensor, top_p: float | None = None
) -> torch.Tensor:
    """p_theta(x0^l = v | z, t) over real tokens: (B, L, N) float64 (from the objective's log-probs)."""
    logp = objective.denoiser_log_probs(model, z, t.float())[..., : objective.vocab.n_real]
    return top_p_filter(logp.double().exp(), top_p)


def _start(objective, model, shape, device, template=None):
    """The start state: all masks, or the conditioning template (:mod:`mdm.sampling.condition`)."""
    device = device or model_device(model)
    return start_state(template, tuple(shape), objective.vocab.mask_id, device), device


def _rand(shape, device, generator):
    return torch.rand(shape, dtype=torch.float64, device=device, generator=generator)


# -- samplers -------------------------------------------------------------------------------------------
@register_sampler("ancestral", fits=fits_absorbing)
def ancestral(
    objective,
    model,
    shape: tuple[int, int],
    steps: int,
    generator: torch.Generator | None = None,
    top_p: float | None = None,
    device=None,
    template: torch.Tensor | None = None,
    **_options,
) -> Drawn:
    """MDLM ancestral sampling on a uniform time grid: one network call per step (until nothing is masked)."""
    z, device = _start(objective, model, shape, device, template)
    mask, nfe = objective.vocab.mask_id, 0
    grid = time_grid(steps)
    for t, s in zip(grid[:-1], grid[1:]):
        masked = z == mask  # (B, L)
        if not masked.any():
            break
        t_rows = torch.full((z.shape[0],), t, device=device)
        p = denoiser_probs(objective, model, z, t_rows, top_p)  # (B, L, N)
        nfe += 1
        unmask = masked & (_rand(z.shape, device, generator) < unmask_probability(objective.schedule, t, s))
        z[unmask] = sample_categorical(p[unmask], generator)
    return z, nfe, {"steps": steps}


@register_sampler("cached", fits=fits_cached)
def cached(
    objective,
    model,
    shape: tuple[int, int],
    steps: int,
    generator: torch.Generator | None = None,
    top_p: float | None = None,
    device=None,
    template: torch.Tensor | None = None,
    **_options,
) -> Drawn:
    """Ancestral sampling that reuses a time-agnostic network's output while a row's tokens are unchanged.

    Only rows whose tokens changed since their last call (and that still hold masks) are passed to the
    network, as one sub-batch. ``nfe`` counts network calls (batched forward passes);
    ``extra["nfe_per_sequence"]`` is the mean number of calls each row needed (the quantity of the
    n (1 - (1 - 1/n)^L) formula, which holds for each row).
    """
    z, device = _start(objective, model, shape, device, template)
    B, L = z.shape
    mask, N = objective.vocab.mask_id, objective.vocab.n_real
    cache = torch.zeros(B, L, N, dtype=torch.float32, device=device)  # p_theta(.|z) of each row's last call
    stale = torch.ones(B, dtype=torch.bool, device=device)
    row_calls = torch.zeros(B, dtype=torch.long, device=device)
    nfe = 0
    grid = time_grid(steps)
    for t, s in zip(grid[:-1], grid[1:]):
        masked = z == mask
        need = stale & masked.any(-1)  # (B,)
        if need.any():
            t_rows = torch.full((int(need.sum()),), t, device=device)
            cache[need] = denoiser_probs(objective, model, z[need], t_rows, top_p).float()
            nfe += 1
            row_calls += need.long()
            stale &= ~need
        unmask = masked & (_rand(z.shape, device, generator) < unmask_probability(objective.schedule, t, s))
        if unmask.any():
            z[unmask] = sample_categorical(cache[unmask], generator)
            stale |= unmask.any(-1)
    extra = {
        "steps": steps,
        "nfe_per_sequence": row_calls.double().mean().item(),
        "row_calls": row_calls.cpu(),
    }
    return z, nfe, extra


@register_sampler("first_hitting", fits=fits_absorbing)
def first_hitting(
    objective,
    model,
    shape: tuple[int, int],
    steps: int | None = None,
    generator: torch.Generator | None = None,
    top_p: float | None = None,
    device=None,
    template: torch.Tensor | None = None,
    **_options,
) -> Drawn:
    """First-hitting sampler: one token unmasked per row per call, L calls (the number of masked positions of
    the fullest row with a template); ``steps`` unused."""
    z, device = _start(objective, model, shape, device, template)
    B, L = z.shape
    mask = objective.vocab.mask_id
    tau = torch.ones(B, dtype=torch.float64, device=device)
    rows = torch.arange(B, device=device)
    calls = int((z == mask).sum(-1).max()) if B else 0  # L without a template
    for _ in range(calls):
        masked = z == mask
        n = masked.sum(-1).double()  # (B,) masked tokens per row
        active = n > 0
        a_tau = objective.schedule.alpha(tau)
        a_next = 1 - _rand((B,), device, generator) ** (1.0 / n.clamp(min=1)) * (1 - a_tau)  # next hit
        tau = torch.where(active, time_for_alpha(objective.schedule, a_next), tau)
        p = denoiser_probs(objective, model, z, tau, top_p)  # (B, L, N)
        keys = torch.where(masked, _rand((B, L), device, generator), -1.0)
        pos = keys.argmax(-1)  # a uniformly chosen masked position
        drawn = sample_categorical(p[rows, pos], generator)
        z[rows, pos] = torch.where(active, drawn, z[rows, pos])
    return z, calls, {"steps": calls, "final_t": tau.cpu()}


@register_sampler("semi_ar", fits=fits_absorbing)
def semi_autoregressive(
    objective,
    model,
    shape: tuple[int, int],
    steps: int,
    generator: torch.Generator | None = None,
    top_p: float | None = None,
    block_size: int | None = None,
    device=None,
    template: torch.Tensor | None = None,
    **_options,
) -> Drawn:
    """Block-wise left-to-right decoding: ``steps`` ancestral steps in total, split evenly over the blocks.

    Within a block the block's own clock runs from 1 to 0 (each step unmasks a block token with the ancestral
    probability); earlier blocks are clean and later ones masked. A time-conditioned network receives the
    time whose masking level 1 - alpha_t equals the fraction of the whole row that is still masked.
    """
    z, device = _start(objective, model, shape, device, template)
    B, L = z.shape
    block_size = block_size or max(1, L // 4)
    if not 1 <= block_size <= L:
        raise ValueError(f"block_size must lie in [1, {L}], got {block_size}")
    n_blocks = -(-L // block_size)
    per_block = max(1, steps // n_blocks)
    mask, nfe = objective.vocab.mask_id, 0
    grid = time_grid(per_block)
    for b in range(n_blocks):
        in_block = torch.zeros(L, dtype=torch.bool, device=device)
        in_block[b * block_size : (b + 1) * block_size] = True
        for t, s in zip(grid[:-1], grid[1:]):
            masked = (z == mask) & in_block
            if not masked.any():
                break
            frac = (z == mask).double().mean(-1)  # (B,)
            t_net = time_for_alpha(objective.schedule, 1 - frac)
            p = denoiser_probs(objective, model, z, t_net, top_p)
            nfe += 1
            unmask = masked & (
                _rand(z.shape, device, generator) < unmask_probability(objective.schedule, t, s)
            )
            z[unmask] = sample_categorical(p[unmask], generator)
    extra = {"steps": steps, "block_size": block_size, "steps_per_block": per_block}
    return z, nfe, extra
