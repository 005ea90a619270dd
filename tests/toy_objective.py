"""A toy objective in one file (README, "Adding an objective"): its options and its class.

``toy`` is MDLM's masked NLL with two options of its own at ``objective.toy``: ``weighting`` (``elbo``:
MDLM's weight -alpha'_t / (1 - alpha_t), so ``toy`` with the defaults is MDLM exactly; ``flat``: weight
1, a masked cross-entropy) and ``scale`` (multiplies the loss). tests/test_objective_options.py registers
it for a test and forgets it after.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mdm.diffusion.base import Objective
from mdm.diffusion.registry import register_objective
from mdm.options import choice, objective_options


@objective_options("toy", "toy")
@dataclass
class ToyConfig:
    weighting: str = choice("elbo", "elbo", "flat")  # the default first, then the valid values
    scale: float = 1.0


@register_objective("toy")
class Toy(Objective):
    options = ToyConfig
    causal = False

    def sequence_loss(self, model, batch, t, generator=None):
        x, valid = batch["input_ids"], batch.get("attention_mask")  # (B, L)
        z, masked = self.mask_tokens(x, t, valid, generator)
        nll = self.real_token_nll(model(z, self.sigma_input(t), key_mask=valid), x)  # (B, L)
        nll = torch.where(masked, nll, torch.zeros_like(nll)).sum(-1)  # unmasked tokens: no loss
        o = self.cfg.objective.toy
        weight = self.schedule.mask_weight(t) if o.weighting == "elbo" else torch.ones_like(t)
        return o.scale * weight * nll  # (B,)
