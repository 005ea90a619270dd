"""EDLM generation: parallel importance sampling inside a window of denoising steps (Xu et al. 2024, Alg. 1).

Time grid t_i = 1 - i/n, i = 0..n (n = ``steps``). At the step t -> s:

1. one call of the base denoiser gives mu_theta(. | x_t) (factorised, carry-over at unmasked positions);
2. if t lies in the window [1 - w, 1] (w > 0) and k > 1: draw k candidates x0^(j) ~ mu_theta(. | x_t) from that one
   output (float64 inverse CDF), score all N*k of them in ONE batched energy call, and pick one with
   probability w_j ∝ exp(-E(x0^(j), x_t)) (float64, normalised with logsumexp; lower energy = likelier).
   For the AR energy w_j = p_AR(x0^(j)) / mu_theta(x0^(j) | x_t). Outside the window: one draw x0 ~ mu_theta;
3. the ordinary absorbing posterior step q(x_s | x_t, x0): every masked position is revealed to its x0 token
   with probability (alpha_s - alpha_t) / (1 - alpha_t), independently; unmasked positions stay.

With window 0 (or k = 1) this is exactly the ancestral sampler of the base model (docs/MATH.md "Samplers"), so
EDLM and its base are compared on the same grid and the same code. As k -> infinity step 2 draws from the
energy-corrected denoiser p(x0 | x_t) ∝ mu_theta exp(-E) (sampling-importance-resampling is consistent).

Cost per step: one denoiser call; inside the window also one energy call on N*k sequences (for the AR
energy: an AR forward pass over N*k sequences). ``SampleResult.nfe`` counts denoiser calls plus energy
calls; ``extra`` splits them and reports the mean effective sample size of the weights.
"""

from __future__ import annotations

import time

import torch

from mdm.config import ConfigError
from mdm.diffusion.edlm import (
    BASE_OBJECTIVES,
    Energy,
    check_edlm_config,
    edlm_source,
    effective_sample_size,
    importance_log_weights,
    sample_from_log_probs,
    sequence_log_prob,
)
from mdm.diffusion.edlm_options import EdlmConfig
from mdm.loading import energy_from
from mdm.sampling.base import SampleResult, register_sampler, sample_categorical
from mdm.sampling.condition import start_state


def posterior_step(
    x: torch.Tensor,
    x0: torch.Tensor,
    reveal_prob: float,
    mask_id: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Absorbing posterior q(x_s | x_t, x0): reveal each masked position to x0 with probability
    (alpha_s - alpha_t)/(1 - alpha_t) = ``reveal_prob`` (float64 uniforms); (N, L) -> (N, L)."""
    u = torch.rand(x.shape, dtype=torch.float64, device=x.device, generator=generator)
    reveal = (x == mask_id) & (u < reveal_prob)
    return torch.where(reveal, x0, x)


def in_window(t: float, window: float) -> bool:
    """Importance sampling runs at steps that start at t in [1 - window, 1]; window 0 turns it off."""
    return window > 0 and t > 1.0 - window - 1e-12


@torch.no_grad()
def importance_select(
    energy: Energy,
    logp: torch.Tensor,
    z: torch.Tensor,
    t: torch.Tensor,
    k: int,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw k candidates from mu_theta(.|z) (logp (N, L, V)), weight by exp(-E), resample one per row.

    Returns (x0 (N, L), normalised log weights (N, k) float64).
    """
    N, L = z.shape
    cands = sample_from_log_probs(logp, k, generator)  # (N, k, L)
    log_mu = sequence_log_prob(logp, cands)  # (N, k)
    e = energy.energy(
        cands.reshape(N * k, L), z.repeat_interleave(k, 0), t.repeat_interleave(k, 0), log_mu.reshape(-1)
    ).view(N, k)  # one batched call over N*k sequences
    log_w = importance_log_weights(e)  # (N, k)
    j = sample_categorical(log_w.exp(), generator)  # (N,)
    return cands[torch.arange(N, device=z.device), j], log_w


@torch.no_grad()
def edlm_generate(
    energy: Energy,
    shape: tuple[int, int],
    steps: int,
    num_candidates: int = EdlmConfig.num_candidates,
    window: float = EdlmConfig.window,
    generator: torch.Generator | None = None,
    template: torch.Tensor | None = None,
) -> SampleResult:
    """Generate ``shape = (N, L)`` token sequences with EDLM (module docstring); ``template`` ((L,) or (N, L),
    ``mask_id`` where to generate) fixes the other positions (:mod:`mdm.sampling.condition`): the chain starts
    there, the denoiser carries them over and every candidate keeps them."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    check_edlm_config(EdlmConfig(num_candidates=num_candidates, window=window))
    N, L = shape
    device = energy.device
    mask_id = energy.mask_id
    started = time.perf_counter()
    x = start_state(template, (N, L), mask_id, device)
    grid = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)
    alpha = energy.schedule.alpha(grid).tolist()  # alpha_{t_i}
    calls = energy_calls = scored = is_steps = 0
    ess = []
    for i in range(steps):
        t, a_t, a_s = float(grid[i]), alpha[i], alpha[i + 1]
        tt = torch.full((N,), t, dtype=torch.float32, device=device)
        logp = energy.denoiser_log_probs(x, tt)  # (N, L, V)
        calls += 1
        if num_candidates > 1 and in_window(t, window):
            x0, log_w = importance_select(energy, logp, x, tt, num_candidates, generator)
            energy_calls += 1
            scored += N * num_candidates
            is_steps += 1
            ess.append(effective_sample_size(log_w).mean().item())
        else:
            x0 = sample_from_log_probs(logp, 1, generator)[:, 0]  # (N, L)
        reveal = 1.0 if i == steps - 1 else min(1.0, max(0.0, (a_s - a_t) / (1.0 - a_t)))
        x = posterior_step(x, x0, reveal, mask_id, generator)
    if (x == mask_id).any():
        raise RuntimeError("EDLM sampling left masked tokens (the last step must reveal everything)")
    return SampleResult(
        tokens=x,
        nfe=calls + energy_calls,
        wall_s=time.perf_counter() - started,
        extra={
            "denoiser_calls": calls,
            "energy_calls": energy_calls,
            "candidates_scored": scored,
            "is_steps": is_steps,
            "num_candidates": num_candidates,
            "window": window,
            "energy": energy.kind,
            "mean_ess": sum(ess) / len(ess) if ess else None,
        },
    )


_ENERGIES: dict[tuple, Energy] = {}  # the last energy built by the sampler (one entry)


def edlm_fits(objective) -> str | None:
    """The edlm sampler runs on an edlm_nce run, or on a masked diffusion base run given ar_run."""
    if edlm_source(objective) is not None:
        return None
    return f"it needs an edlm_nce run or a {' / '.join(BASE_OBJECTIVES)} run (with ar_run)"


@register_sampler("edlm", fits=edlm_fits)
def edlm_sampler(
    objective,
    model,
    shape: tuple[int, int],
    steps: int,
    generator: torch.Generator | None = None,
    *,
    energy: Energy | None = None,
    ar_run: str | None = None,
    num_candidates: int | str | None = None,
    window: float | str | None = None,
    device: str | torch.device | None = None,
    template: torch.Tensor | None = None,
    **options,
) -> SampleResult:
    """``mdm sample --sampler edlm``: an ``edlm_nce`` run samples with its trained energy; a base run
    (mdlm | radd) needs ``ar_run=<AR run>`` (AR energy; ``mdm sample --ar-run``). ``num_candidates`` (k) and
    ``window`` default to the run's ``objective.edlm`` settings (else the EdlmConfig defaults: k = 16,
    window = 1). ``device`` is accepted for the common sampler interface; the models stay where the run
    was loaded."""
    if options:
        raise ConfigError(
            f"unknown option(s) for the edlm sampler: {sorted(options)} "
            f"(valid: ar_run, num_candidates, window, energy, device, template)"
        )
    if energy is None:
        key = (id(objective), id(model), None if ar_run is None else str(ar_run))
        if key not in _ENERGIES:  # `mdm sample` calls once per batch: load the AR run once
            _ENERGIES.clear()
            _ENERGIES[key] = energy_from(objective, model, ar_run)
        energy = _ENERGIES[key]
    ecfg = getattr(getattr(getattr(objective, "cfg", None), "objective", None), "edlm", None) or EdlmConfig()
    k = int(num_candidates) if num_candidates is not None else ecfg.num_candidates
    w = float(window) if window is not None else ecfg.window
    return edlm_generate(energy, tuple(shape), int(steps), k, w, generator, template)


__all__ = ["edlm_fits", "edlm_generate", "edlm_sampler", "importance_select", "in_window", "posterior_step"]
