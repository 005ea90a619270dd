"""AdamW with no weight decay on norms, biases and embeddings (one place: module and bench use it)."""

from __future__ import annotations

import torch
from torch import nn

from mdm.config import OptimConfig


def build_optimizer(model: nn.Module, o: OptimConfig, fused: bool = True) -> torch.optim.AdamW:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.dim() < 2 or "embed" in name or "norm" in name else decay).append(p)
    groups = [{"params": decay, "weight_decay": o.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    # fused: one kernel over all parameters (CPU and CUDA); a per-tensor loop costs ~25% of a tiny step.
    # (fp16 with a grad scaler needs the unfused one: Lightning unscales before clipping.)
    return torch.optim.AdamW(groups, lr=o.lr, betas=tuple(o.betas), eps=o.eps, fused=fused)
