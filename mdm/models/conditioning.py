"""Noise-level conditioning: sinusoidal embedding of sigma and zero-initialised adaLN modulation.

With the modulation initialised to zero, a time-conditioned network starts as exactly the
time-agnostic one, so both kinds of objective share the same class (DiT, Peebles & Xie 2023, §3.2).
"""

from __future__ import annotations

import math

import torch
from torch import nn


def sinusoidal(sigma: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """(B,) -> (B, dim) sinusoidal features of a scalar noise level."""
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(half, device=sigma.device, dtype=torch.float32) / half
    )
    args = sigma.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class TimeEmbedding(nn.Module):
    def __init__(self, cond_dim: int, freq_dim: int = 256):
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, cond_dim), nn.SiLU(), nn.Linear(cond_dim, cond_dim))

    def forward(self, sigma: torch.Tensor) -> torch.Tensor:  # (B,) -> (B, C)
        return self.mlp(sinusoidal(sigma, self.freq_dim))


class AdaLN(nn.Module):
    """Maps the condition to ``n`` (B, 1, D) modulation tensors; zero-initialised."""

    def __init__(self, cond_dim: int, d_model: int, n: int):
        super().__init__()
        self.n = n
        self.lin = nn.Linear(cond_dim, n * d_model)
        nn.init.zeros_(self.lin.weight)
        nn.init.zeros_(self.lin.bias)

    def forward(self, c: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.lin(torch.nn.functional.silu(c))[:, None, :].chunk(self.n, dim=-1)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale) + shift
