"""A sequence-level scalar head on the shared backbone: E(x, flags) in R.

Used by EDLM's NCE energy (mdm/diffusion/edlm.py), where the backbone is initialised from a trained
diffusion model's backbone and ``flags`` marks the positions that are masked in the noisy input. This
module knows nothing of diffusion: it maps tokens plus one binary flag per position to one number.

Architecture: token embeddings + ``flags * flag_vector`` (a learned vector, zero at init, fed through the
backbone's ``extra`` input) -> backbone -> final hidden states (B, L, D) -> mean over attended positions
-> Linear(D, D) -> GELU -> Linear(D, 1). The last layer starts at zero, so a fresh network outputs
E = 0 for every input (the residual model then equals its base model exactly).
"""

from __future__ import annotations

import torch
from torch import nn

from mdm.models.backbone import Transformer


class EnergyNet(nn.Module):
    """(x (B, L) long, flags (B, L) bool[, sigma (B,)][, key_mask (B, L)]) -> energy (B,) float32."""

    def __init__(self, backbone: Transformer):
        super().__init__()
        d = backbone.dims.d_model
        self.backbone = backbone
        self.flag_vector = nn.Parameter(torch.zeros(d))
        self.head = nn.Sequential(nn.Linear(d, d), nn.GELU(approximate="tanh"), nn.Linear(d, 1))
        nn.init.zeros_(self.head[2].weight)
        nn.init.zeros_(self.head[2].bias)

    def forward(
        self,
        x: torch.Tensor,
        flags: torch.Tensor,
        sigma: torch.Tensor | None = None,
        key_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        extra = flags.unsqueeze(-1).to(self.flag_vector.dtype) * self.flag_vector  # (B, L, D)
        _, h = self.backbone(x, sigma, extra=extra, key_mask=key_mask, return_hidden=True)  # (B, L, D)
        if key_mask is None:
            pooled = h.mean(dim=1)  # (B, D)
        else:
            w = key_mask.unsqueeze(-1).to(h.dtype)  # (B, L, 1)
            pooled = (h * w).sum(1) / w.sum(1).clamp(min=1.0)
        return self.head(pooled).squeeze(-1).float()  # (B,)


__all__ = ["EnergyNet"]
