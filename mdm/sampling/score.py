"""SEDD's samplers (Lou et al. 2024, §4.2), for the absorbing and the uniform graph.

Both start from the graph's prior (all masks / uniform tokens) and walk the uniform time grid
t_j = 1 - j/steps with one network call per step; each position moves independently (tau-leaping):

* euler: reverse rates sigma(t) Q(y -> x) s_theta(x, t)_y held fixed over the step, so
  p(x_s^l = y) = dt sigma(t) Q(y -> x^l) s_y for y != x^l, the rest on staying (clipped, renormalised).
* analytic ("Tweedie tau-leaping", Thm 4.2): p(x_s^l = y) = [exp(-d Q) s]_y exp(d Q)(y, x_t^l) with
  d = sigma_bar(t) - sigma_bar(s) -- exact when the scores are exact and the positions independent. For the
  absorbing graph with exact scores it is the ancestral rule (alpha_s - alpha_t)/(1 - alpha_t) p(x0 | z_t).

The reverse-step probabilities live with the graphs (:mod:`mdm.diffusion.graphs`). Absorbing graph: only
masked positions move; masks left after the last step (possible with unnormalised scores or a schedule with
alpha_0 < 1) are filled from the normalised conditional at the last grid time, one extra call.
Every draw is float64 (:func:`mdm.sampling.base.sample_categorical`).

Conditioning (``template``, :mod:`mdm.sampling.condition`): the absorbing graph starts at the template and
never moves an unmasked token (exact given exact scores); the uniform graph moves every position, so the
fixed ones are written back after every step (SEDD's infilling by projection, an approximation).
"""

from __future__ import annotations

import torch

from mdm.sampling.base import Drawn, model_device, register_sampler, sample_categorical
from mdm.sampling.condition import start_state


def fits_scores(objective) -> str | None:
    if not getattr(objective, "has_scores", False):
        return "it needs a score-based objective (sedd) with log_scores and a graph"
    return None


def _score_sampler(kind: str, objective, model, shape, steps, generator, device, top_p, template=None):
    if top_p is not None and top_p < 1.0:
        raise ValueError(
            f"sampler {kind!r} does not support top_p (it moves by scores, not a clean-token softmax)"
        )
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    device = device or model_device(model)
    graph, sched = objective.graph, objective.schedule
    B, L = shape
    x = graph.sample_prior((B, L), device, generator)
    fixed = None
    if template is not None:  # absorbing: start at the template; uniform: project after every step (SEDD)
        tmpl = start_state(template, (B, L), objective.vocab.mask_id, device)
        fixed = tmpl != objective.vocab.mask_id
        x = torch.where(fixed, tmpl, x if not graph.absorbing else torch.full_like(x, graph.mask))
    grid = [1.0 - j / steps for j in range(steps + 1)]
    nfe = 0
    for t, s in zip(grid[:-1], grid[1:]):
        if graph.absorbing and not (x == graph.mask).any():
            break
        tt = torch.full((B,), t, device=device)
        log_s = objective.log_scores(model, x, tt)  # (B, L, N)
        nfe += 1
        if kind == "euler":
            probs = graph.euler_probs(log_s, x, sched.rate(tt.double()), t - s)
        else:
            ss = torch.full((B,), s, dtype=torch.float64, device=device)
            probs = graph.analytic_probs(log_s, x, sched.total_noise(tt.double()), sched.total_noise(ss))
        new = sample_categorical(probs, generator)  # (B, L) over the graph's states
        x = torch.where(x == graph.mask, new, x) if graph.absorbing else new
        if fixed is not None and not graph.absorbing:
            x = torch.where(fixed, tmpl, x)
    if graph.absorbing and (x == graph.mask).any():  # final denoising of what is left
        left = x == graph.mask
        t_last = torch.full((B,), grid[-2], device=device)
        logp = objective.denoiser_log_probs(model, x, t_last)[..., : objective.vocab.n_real]
        nfe += 1
        x[left] = sample_categorical(logp[left].double().exp(), generator)
    return x, nfe, {"steps": steps, "graph": graph.name}


@register_sampler("euler", fits=fits_scores)
def euler(
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
    """SEDD Euler (first-order tau-leaping) sampler, one network call per step."""
    return _score_sampler("euler", objective, model, shape, steps, generator, device, top_p, template)


@register_sampler("analytic", fits=fits_scores)
def analytic(
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
    """SEDD analytic (Tweedie tau-leaping) sampler, one network call per step."""
    return _score_sampler("analytic", objective, model, shape, steps, generator, device, top_p, template)
