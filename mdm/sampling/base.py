"""Sampler interface and float64 categorical sampling.

A sampler is ``sampler(objective, model, shape, steps, generator, **options) -> SampleResult`` and
reports its number of network calls (NFE) and wall time. Samplers register by name, optionally with a
``fits(objective) -> reason | None`` check so that a sampler that does not fit an objective (e.g. the cached
sampler with a time-conditioned network) fails with a clear error listing the ones that do. The registry
owns what every sampler does around its loop (:func:`register_sampler`): the fit check, no gradients,
the wall clock and the result.

What a sampler may ask of an objective:

* absorbing samplers: ``objective.denoiser_log_probs(model, z, t) -> (B, L, V)`` log p_theta(x0^l | z_t) over
  real tokens with carry-over at unmasked positions, ``objective.schedule`` and ``objective.time_conditioned``.
  An objective is absorbing when it declares ``has_denoiser`` and its ``graph_name`` (default "absorb") is
  "absorb"; an objective whose network needs more than (z, t) sets ``graph_name = None`` to opt out.
* score samplers: ``objective.log_scores(model, x_t, t) -> (B, L, N)`` and ``objective.graph``
  (:mod:`mdm.diffusion.graphs`), declared by ``has_scores``.

The capabilities are declared on the objective (:class:`mdm.diffusion.base.Objective`), never guessed.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

SAMPLERS: dict[str, Callable[..., SampleResult]] = {}
SAMPLER_FITS: dict[str, Callable[[object], str | None]] = {}  # name -> why it does not fit (None: fits)


class SamplerMismatchError(ValueError):
    """A sampler that does not fit the objective/network it was given."""


@dataclass
class SampleResult:
    tokens: torch.Tensor  # (N, L) int64
    nfe: int  # network function evaluations
    wall_s: float
    extra: dict = field(default_factory=dict)


Drawn = tuple  # (tokens (N, L) int64, nfe, extra): what a registered sampler's body returns


def register_sampler(name: str, fits: Callable[[object], str | None] | None = None):
    """Register ``fn`` as sampler ``name``; ``fits(objective)`` returns why it does not fit, or None.

    The registered sampler (also what the decorated name is bound to) checks the fit
    (:class:`SamplerMismatchError` naming the samplers that fit), runs ``fn`` without gradients and times
    it: ``fn`` returns ``(tokens (N, L), nfe, extra)``, wrapped in a :class:`SampleResult` with the wall
    seconds of the call; a sampler that must time only part of its work (leaving out loading a model,
    or using its wall time in ``extra``) returns its own SampleResult, passed through."""

    def deco(fn):
        if name in SAMPLERS and getattr(SAMPLERS[name], "__wrapped__", None) is not fn:
            raise ValueError(f"sampler {name!r} registered twice")

        @functools.wraps(fn)
        def sampler(objective, model, *args, **kwargs) -> SampleResult:
            check_fits(name, objective)
            started = time.perf_counter()
            with torch.no_grad():
                out = fn(objective, model, *args, **kwargs)
            if isinstance(out, SampleResult):
                return out
            tokens, nfe, extra = out
            return SampleResult(tokens, nfe, time.perf_counter() - started, extra)

        SAMPLERS[name] = sampler
        if fits is not None:
            SAMPLER_FITS[name] = fits
        return sampler

    return deco


def fitting_samplers(objective) -> list[str]:
    """Names of the registered samplers that fit ``objective`` (those without a check are listed too)."""
    return sorted(n for n in SAMPLERS if n not in SAMPLER_FITS or SAMPLER_FITS[n](objective) is None)


def check_fits(name: str, objective) -> None:
    """Raise SamplerMismatchError (naming the valid samplers) when sampler ``name`` does not fit ``objective``."""
    get_sampler(name)
    why = SAMPLER_FITS[name](objective) if name in SAMPLER_FITS else None
    if why is not None:
        valid = [n for n in fitting_samplers(objective) if n in SAMPLER_FITS]
        raise SamplerMismatchError(
            f"sampler {name!r} does not fit objective {getattr(objective, 'registry_name', '?')!r}: {why}; "
            f"samplers that fit: {', '.join(valid) or 'none'}"
        )


def absorbing(objective) -> bool:
    """Does ``objective`` offer an absorbing denoiser p_theta(x0 | z_t) (see the module docstring)?"""
    return (
        bool(getattr(objective, "has_denoiser", False)) and getattr(objective, "graph_name", None) == "absorb"
    )


def model_device(model) -> torch.device:
    for t in list(model.parameters()) + list(model.buffers()):
        return t.device
    return torch.device("cpu")


def top_p_filter(probs: torch.Tensor, top_p: float | None) -> torch.Tensor:
    """Nucleus filtering in float64: keep the smallest set of most likely tokens whose mass reaches ``top_p``
    (always at least the most likely one), renormalised. ``None`` or 1 leaves ``probs`` unchanged."""
    if top_p is None:
        return probs
    if not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must lie in (0, 1], got {top_p}")
    if top_p == 1.0:
        return probs
    p = probs.double()
    p = p / p.sum(-1, keepdim=True)
    sorted_p, order = p.sort(-1, descending=True)
    before = sorted_p.cumsum(-1) - sorted_p  # mass strictly before each token
    keep_sorted = before < top_p
    keep = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)
    p = torch.where(keep, p, torch.zeros_like(p))
    return p / p.sum(-1, keepdim=True)


def get_sampler(name: str):
    if name not in SAMPLERS:
        raise KeyError(f"unknown sampler {name!r}; valid: {', '.join(sorted(SAMPLERS))}")
    return SAMPLERS[name]


def sample_categorical(probs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw one index per row of ``probs`` (..., V) by inverse-CDF in float64.

    Float64 throughout: float32 Gumbel-max truncates the noise and under-samples small probabilities
    (Zheng et al. 2024; docs/MATH.md "Samplers").
    """
    p = probs.double()
    p = p / p.sum(-1, keepdim=True)
    cdf = p.cumsum(-1)  # (..., V)
    u = torch.rand(p.shape[:-1] + (1,), dtype=torch.float64, device=p.device, generator=generator)
    idx = torch.searchsorted(cdf, u * cdf[..., -1:], right=True).clamp_(max=p.shape[-1] - 1)
    return idx.squeeze(-1)
