"""Derived values: computed once from the config (never interpolated in YAML) and logged.

* per-device micro-batch and gradient accumulation from the global batch and the device count;
* optimizer steps from ``train.max_steps``, a token budget ``train.tokens`` or a FLOP budget
  ``train.flops`` (FLOPs per token from :mod:`mdm.flops`);
* warmup steps from ``optim.warmup_steps`` or ``optim.warmup_frac``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from mdm.config import Config, ConfigError
from mdm.flops import Counts


@dataclass(frozen=True)
class Derived:
    world_size: int
    per_device_batch: int  # sequences per device per optimizer step
    micro_batch: int  # sequences per forward
    grad_accum: int
    tokens_per_step: int
    max_steps: int
    warmup_steps: int
    total_tokens: int
    total_flops: float

    def as_dict(self) -> dict:
        return asdict(self)


def derive(cfg: Config, counts: Counts, world_size: int = 1) -> Derived:
    t = cfg.train
    if t.global_batch % world_size:
        raise ConfigError(f"train.global_batch={t.global_batch} is not divisible by the {world_size} devices")
    per_device = t.global_batch // world_size
    micro = t.micro_batch or per_device
    if per_device % micro:
        raise ConfigError(f"train.micro_batch={micro} does not divide the per-device batch {per_device}")
    tokens_per_step = t.global_batch * cfg.model.seq_len
    if t.max_steps is not None:
        steps = t.max_steps
    elif t.tokens is not None:
        steps = math.ceil(t.tokens / tokens_per_step)
    else:
        steps = math.ceil(t.flops / (counts.flops_per_token * tokens_per_step))
    if steps < 1:
        raise ConfigError(f"the training budget gives {steps} steps; it must give at least one")
    o = cfg.optim
    warmup = o.warmup_steps if o.warmup_steps is not None else int(round(o.warmup_frac * steps))
    warmup = min(warmup, steps)
    total_tokens = steps * tokens_per_step
    return Derived(
        world_size=world_size,
        per_device_batch=per_device,
        micro_batch=micro,
        grad_accum=per_device // micro,
        tokens_per_step=tokens_per_step,
        max_steps=steps,
        warmup_steps=warmup,
        total_tokens=total_tokens,
        total_flops=total_tokens * counts.flops_per_token,
    )


def lr_factor(step: int, d: Derived, schedule: str, min_ratio: float, decay_frac: float) -> float:
    """Multiplier of the peak learning rate at optimizer step ``step`` (0-based): linear warmup, then
    cosine to ``min_ratio``, warmup-stable-decay (linear decay over the last ``decay_frac``), or constant."""
    if d.warmup_steps and step < d.warmup_steps:
        return (step + 1) / d.warmup_steps
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        span = max(1, d.max_steps - d.warmup_steps)
        progress = min(1.0, (step - d.warmup_steps) / span)
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    if schedule == "wsd":
        decay_steps = max(1, int(round(decay_frac * d.max_steps)))
        start = d.max_steps - decay_steps
        if step < start:
            return 1.0
        return 1.0 - (1 - min_ratio) * min(1.0, (step - start + 1) / decay_steps)
    raise ConfigError(f"optim.schedule={schedule!r} is not valid; choose one of: cosine, wsd, constant")
