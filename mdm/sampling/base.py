"""Sampler interface and float64 categorical sampling.

A sampler is ``sampler(objective, model, shape, steps, generator, **options) -> SampleResult`` and
reports its number of network calls (NFE) and wall time. Samplers register by name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

SAMPLERS: dict[str, Callable[..., SampleResult]] = {}


@dataclass
class SampleResult:
    tokens: torch.Tensor  # (N, L) int64
    nfe: int  # network function evaluations
    wall_s: float
    extra: dict = field(default_factory=dict)


def register_sampler(name: str):
    def deco(fn):
        if name in SAMPLERS and SAMPLERS[name] is not fn:
            raise ValueError(f"sampler {name!r} registered twice")
        SAMPLERS[name] = fn
        return fn

    return deco


def get_sampler(name: str):
    if name not in SAMPLERS:
        raise KeyError(f"unknown sampler {name!r}; valid: {', '.join(sorted(SAMPLERS))}")
    return SAMPLERS[name]


def sample_categorical(probs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw one index per row of ``probs`` (..., V) by inverse-CDF in float64.

    Float64 throughout: float32 Gumbel-max truncates the noise and under-samples small probabilities
    (Zheng et al. 2024; MATH.md "Samplers").
    """
    p = probs.double()
    p = p / p.sum(-1, keepdim=True)
    cdf = p.cumsum(-1)  # (..., V)
    u = torch.rand(p.shape[:-1] + (1,), dtype=torch.float64, device=p.device, generator=generator)
    idx = torch.searchsorted(cdf, u * cdf[..., -1:], right=True).clamp_(max=p.shape[-1] - 1)
    return idx.squeeze(-1)
