"""Noise schedules (docs/MATH.md, "Schedules").

A schedule gives the total noise sigma_bar(t) and its rate sigma(t) = d sigma_bar / dt for t in [0, 1];
the probability that a token is still clean under the absorbing process is alpha_t = exp(-sigma_bar(t)).
"""

from __future__ import annotations

import math

import torch

from mdm.config import ScheduleConfig
from mdm.diffusion.registry import SCHEDULES, lookup, register_schedule


class Schedule:
    def total_noise(self, t: torch.Tensor) -> torch.Tensor:  # sigma_bar(t)
        raise NotImplementedError

    def rate(self, t: torch.Tensor) -> torch.Tensor:  # sigma(t) = d sigma_bar/dt
        raise NotImplementedError

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        """alpha_t = exp(-sigma_bar(t)): probability a token is still clean."""
        return torch.exp(-self.total_noise(t))

    def mask_weight(self, t: torch.Tensor) -> torch.Tensor:
        """-alpha'_t / (1 - alpha_t) = sigma(t) / (exp(sigma_bar(t)) - 1): the NELBO weight of a masked token.

        MDLM eq. 10 (continuous time); equals RADD's sigma(t) r(t). For log-linear this is 1/t exactly.
        """
        return self.rate(t) / torch.expm1(self.total_noise(t))


@register_schedule("loglinear")
class LogLinear(Schedule):
    """alpha_t = 1 - (1 - eps) t; sigma_bar = -log(1 - (1 - eps) t); sigma = (1 - eps) / (1 - (1 - eps) t)."""

    def __init__(self, eps: float = 1e-3):
        self.eps = eps

    def total_noise(self, t: torch.Tensor) -> torch.Tensor:
        return -torch.log1p(-(1 - self.eps) * t)

    def rate(self, t: torch.Tensor) -> torch.Tensor:
        return (1 - self.eps) / (1 - (1 - self.eps) * t)

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        return 1 - (1 - self.eps) * t

    def mask_weight(self, t: torch.Tensor) -> torch.Tensor:
        # sigma / expm1(sigma_bar) = [(1-eps)/(1-(1-eps)t)] / [(1-eps)t/(1-(1-eps)t)] = 1/t
        return 1.0 / t


@register_schedule("geometric")
class Geometric(Schedule):
    """sigma_bar(t) = sigma_min^(1-t) sigma_max^t; sigma(t) = sigma_bar(t) log(sigma_max / sigma_min) (SEDD)."""

    def __init__(self, sigma_min: float = 1e-4, sigma_max: float = 20.0):
        if not 0 < sigma_min < sigma_max:
            raise ValueError(
                f"need 0 < schedule.sigma_min < schedule.sigma_max, got {sigma_min}, {sigma_max}"
            )
        self.sigma_min, self.sigma_max = sigma_min, sigma_max
        self.log_ratio = math.log(sigma_max / sigma_min)

    def total_noise(self, t: torch.Tensor) -> torch.Tensor:
        return self.sigma_min ** (1 - t) * self.sigma_max**t

    def rate(self, t: torch.Tensor) -> torch.Tensor:
        return self.total_noise(t) * self.log_ratio


def build_schedule(cfg: ScheduleConfig) -> Schedule:
    cls = lookup(SCHEDULES, "schedule", cfg.name)
    if cls is LogLinear:
        return LogLinear(cfg.eps)
    if cls is Geometric:
        return Geometric(cfg.sigma_min, cfg.sigma_max)
    return cls(cfg)
