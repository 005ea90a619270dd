"""The joint reverse process of CCDD: ancestral unmasking of tokens + deterministic ODE steps on z.

On the grid 1 = t_0 > t_1 > ... > t_n = 0, one network call per step (two with guidance) at (x_t, z_c),
c = link(t) the continuous level (mdm/diffusion/ccdd.py):

* tokens (MDLM ancestral rule, docs/MATH.md "Samplers"): a masked token stays masked with probability
  (1 - alpha_s)/(1 - alpha_t), else becomes v with probability (alpha_s - alpha_t)/(1 - alpha_t) p_theta(v);
  unmasked tokens stay. Drawn in float64 (:func:`mdm.sampling.base.sample_categorical`). At s = 0 every
  remaining mask is filled (alpha_0 = 1 for the log-linear schedule).
* vectors: (z0_hat, eps_hat) from the continuous head, then z_{c'} = a_{c'} z0_hat + b_{c'} eps_hat -- the
  deterministic DDIM step (eta = 0); for the flow process it is exactly the Euler step z + (c' - c) v_hat of
  the ODE dz/dc = v. The last step lands on z0_hat.

Guidance (scale w >= 0; ``objective.ccdd.guidance_scale`` unless given): with the z-blind prediction
(z = fresh noise at level 1, what ``cont_drop`` trains), log p_w = log p_z + w (log p_z - log p_blind)
renormalised over real tokens, and out_w = out_z + w (out_z - out_blind). w = 0 is the plain process.

Any MDLM-family objective is accepted; without a continuous branch this is exactly ancestral sampling.
(The token-only samplers -- ancestral, cached, first-hitting -- also run on a CCDD run, through its z-blind
denoiser: see ``CCDD.denoiser_log_probs``.)
"""

from __future__ import annotations

import torch

from mdm.diffusion.mdlm import MDLM
from mdm.sampling.base import Drawn, register_sampler, sample_categorical
from mdm.sampling.condition import start_state


def fits_ccdd(objective) -> str | None:
    if not isinstance(objective, MDLM):
        return "it needs an absorbing (MDLM-family) objective such as ccdd or mdlm"
    return None


@register_sampler("ccdd", fits=fits_ccdd)
def sample_ccdd(
    objective,
    model,
    shape: tuple[int, int],
    steps: int,
    generator: torch.Generator | None = None,
    guidance_scale: float | None = None,
    template: torch.Tensor | None = None,
    **_options,
) -> Drawn:
    """Draw ``shape = (N, L)`` token sequences with ``steps`` joint reverse steps; ``template`` ((L,) or
    (N, L), ``mask_id`` where to generate) fixes the token part at its other positions
    (:mod:`mdm.sampling.condition`); the vectors z are generated everywhere."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    continuous = getattr(objective, "d_cont", 0) > 0
    if guidance_scale is None:
        guidance_scale = objective.ccfg.guidance_scale if continuous else 0.0
    w = float(guidance_scale)
    if w < 0:
        raise ValueError(f"guidance scale must be >= 0, got {w}")
    if w > 0:
        if not continuous:
            raise ValueError("guidance needs the continuous branch (objective ccdd with continuous=true)")
        c = objective.ccfg
        if c.cont_drop == 0 and c.time_link != "independent":
            raise ValueError(
                "guidance uses the z-blind prediction, which this run never trained: "
                "objective.ccdd.cont_drop=0 with time_link!=independent"
            )
    device = next(model.parameters()).device
    N, L = shape
    mask_id = objective.vocab.mask_id
    x = start_state(template, (N, L), mask_id, device)
    d = objective.d_cont if continuous else 0
    z = torch.randn(N, L, d, device=device, generator=generator) if continuous else None
    grid = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64, device=device)
    nfe = 0
    for k in range(steps):
        t, s = grid[k].float().expand(N), grid[k + 1].float().expand(N)  # (N,)
        sigma = objective.sigma_input(t)
        if continuous:
            c_t, c_s = objective.link(t), objective.link(s)
            logits, out = model(x, sigma, z=z, level=c_t)
            nfe += 1
            logp = objective.clean_log_probs(logits)  # (N, L, V)
            if w > 0:
                blind = torch.randn(N, L, d, device=device, generator=generator)
                logits_u, out_u = model(x, sigma, z=blind, level=torch.ones_like(t))
                nfe += 1
                logp = torch.log_softmax(
                    logp + w * (logp - objective.clean_log_probs(logits_u)).nan_to_num(0.0), -1
                )
                out = out + w * (out - out_u)
            z0_hat, eps_hat = objective.predictions(out.float(), z, c_t)
            a, b = objective.coefficients(c_s)
            z = a[:, None, None] * z0_hat + b[:, None, None] * eps_hat  # (N, L, d)
        else:
            logp = objective.clean_log_probs(model(x, sigma))
            nfe += 1
        x = _unmask_step(objective, x, logp[..., :mask_id], t[0], s[0], generator)
    return (
        x.cpu(),
        nfe,
        {"guidance_scale": w, "continuous": continuous, "z": z.cpu() if z is not None else None},
    )


def _unmask_step(
    objective, x: torch.Tensor, logp: torch.Tensor, t: torch.Tensor, s: torch.Tensor, generator
) -> torch.Tensor:
    """One ancestral step t -> s of the absorbing process. logp: (N, L, n_real) over real tokens."""
    mask_id = objective.vocab.mask_id
    alpha_t = objective.schedule.alpha(t.double())
    alpha_s = objective.schedule.alpha(s.double())
    move = (alpha_s - alpha_t) / (1 - alpha_t)  # probability a masked token is revealed now
    probs = torch.cat(
        [move * logp.double().exp(), (1 - move).expand(*logp.shape[:-1], 1)], dim=-1
    )  # (N, L, n_real + 1); the last column (index mask_id) = stay masked
    draw = sample_categorical(probs, generator)  # (N, L) in [0, mask_id]
    return torch.where(x == mask_id, draw, x)
