"""Exponential moving average of parameters, used for validation and evaluation."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


class EMA:
    """shadow <- d * shadow + (1 - d) * param after each optimizer step, d = min(decay, (1 + n) / (10 + n)).

    The warm-up of d (n = updates so far) keeps short runs from validating a model stuck near its
    initialisation; for long runs d = decay.
    """

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.shadow = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}

    @torch.no_grad()
    def update(self, model: nn.Module, num_updates: int) -> None:
        d = min(self.decay, (1 + num_updates) / (10 + num_updates))
        shadows, params = [], []
        for n, p in model.named_parameters():
            if n in self.shadow:
                s = self.shadow[n]
                if s.device != p.device:
                    s = self.shadow[n] = s.to(p.device)
                shadows.append(s)
                params.append(p.detach())
        if shadows:  # one multi-tensor call (the same lerp per tensor) instead of a Python loop of kernels
            torch._foreach_lerp_(shadows, params, 1.0 - d)

    @contextmanager
    @torch.no_grad()
    def swapped_in(self, model: nn.Module) -> Iterator[None]:
        """Temporarily load the EMA weights into ``model``."""
        backup = {}
        for n, p in model.named_parameters():
            if n in self.shadow:
                backup[n] = p.detach().clone()
                p.copy_(self.shadow[n])
        try:
            yield
        finally:
            for n, p in model.named_parameters():
                if n in backup:
                    p.copy_(backup[n])

    def state_dict(self) -> dict[str, torch.Tensor]:
        return dict(self.shadow)

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        missing = set(self.shadow) - set(state)
        if missing:
            raise KeyError(f"EMA state lacks parameters: {sorted(missing)[:5]}")
        for n in self.shadow:
            self.shadow[n] = state[n].clone()
