"""Autoregressive baseline: causal next-token cross-entropy on the same backbone.

-log p(x) = sum_{l>=1} -log p_theta(x^l | x^{<l}); the first token is the context (not scored), so a
block of L tokens scores L-1 of them. Exact, no time.
"""

from __future__ import annotations

import torch

from mdm.diffusion.base import Objective
from mdm.diffusion.registry import register_objective


@register_objective("ar")
class Autoregressive(Objective):
    causal = True
    exact_likelihood = True
    default_sampler = "ar"
    supports_time_conditioning = False
    uses_schedule = False

    def scored_tokens(self, batch):
        mask = batch.get("attention_mask")
        x = batch["input_ids"]
        if mask is None:
            return torch.tensor(float(x.shape[0] * (x.shape[1] - 1)), device=x.device)
        return mask[:, 1:].sum().float()

    def log_probs(self, model, x: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        """log p_theta(x^{l+1} = v | x^{<=l}), (B, L, V) over real tokens."""
        return self.clean_log_probs(model(x, None, key_mask=key_mask))

    def sequence_loss(self, model, batch, t=None, generator=None):
        x = batch["input_ids"]  # (B, L)
        valid = batch.get("attention_mask")
        # causal: padding at the end is harmless; = -log_probs(...).gather(x[:, 1:]) exactly
        nll = self.real_token_nll(model(x[:, :-1], None), x[:, 1:])  # (B, L-1)
        if valid is not None:
            nll = torch.where(valid[:, 1:], nll, torch.zeros_like(nll))
        return nll.sum(-1)
