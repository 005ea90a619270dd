"""MDLM: absorbing masked diffusion with the SUBS parameterisation (Sahoo et al. 2024).

Continuous-time NELBO (MDLM eq. 10-11; docs/MATH.md "MDLM"), for one sequence x and one time t:

    L(x, t) = -alpha'_t / (1 - alpha_t) * sum_{l : z_t^l = m} -log p_theta(x^l | z_t)

with z_t ~ q(z_t | x). SUBS: unmasked positions carry over (zero loss); at masked positions the model
is a softmax over real tokens (the mask logit is -inf). Averaging over t ~ U[t_min, 1] gives the bound.
"""

from __future__ import annotations

import torch

from mdm.diffusion.base import Objective
from mdm.diffusion.registry import register_objective


@register_objective("mdlm")
class MDLM(Objective):
    causal = False
    default_time_conditioning = False  # MDLM reports time conditioning unnecessary (§3.2.3)
    has_denoiser = True

    def denoiser_log_probs(self, model, z: torch.Tensor, t: torch.Tensor, **kw) -> torch.Tensor:
        """log p_theta(x^l | z_t) over real tokens, (B, L, V) float32, with SUBS carry-over at unmasked l."""
        return self.carry_over(self.clean_log_probs(model(z, self.sigma_input(t), **kw)), z)  # (B, L, V)

    def sequence_loss(self, model, batch, t, generator=None):
        x = batch["input_ids"]  # (B, L)
        valid = batch.get("attention_mask")
        z, masked = self.mask_tokens(x, t, valid, generator)  # (B, L)
        key_mask = valid if valid is not None else None
        nll = self.masked_nll(model(z, self.sigma_input(t), key_mask=key_mask), x, masked)  # (B, L)
        return self.schedule.mask_weight(t) * nll.sum(-1)  # (B,)
