"""Derived values: computed once from the config (never interpolated in YAML) and logged.

* per-device micro-batch and gradient accumulation from the global batch and the device count;
* optimizer steps from ``train.max_steps``, a token budget ``train.tokens`` or a FLOP budget
  ``train.flops`` (FLOPs per token from :mod:`mdm.flops`);
* warmup steps from ``optim.warmup_steps`` or ``optim.warmup_frac``;
* the width rule (depth -> width and heads, :func:`resolve_dims`) and the backbone's parameter and FLOP
  counts from the config alone (:func:`backbone_counts`, what :func:`mdm.flops.count` finds in the built
  network, without building it: the sweep planner counts this way);
* the inverse-width learning-rate rule of isoFLOP sweeps (:func:`inv_width_lr`).

No torch here: the sweep commands import this module and never import torch.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from mdm.config import Config, ConfigError, ModelConfig
from mdm.flops import Counts

TIME_FREQ_DIM = 256  # sinusoidal features of the noise level (mdm.models.conditioning.TimeEmbedding)


@dataclass(frozen=True)
class Dims:
    """Resolved sizes (the depth dial applied)."""

    depth: int
    d_model: int
    n_heads: int
    d_mlp: int
    seq_len: int


def resolve_dims(cfg: ModelConfig) -> Dims:
    """Depth -> width/heads: d_model = aspect_ratio * depth rounded up to head_dim; heads = d_model/head_dim."""
    d = cfg.d_model
    if d is None:
        d = cfg.aspect_ratio * cfg.depth
        d = int(math.ceil(d / cfg.head_dim) * cfg.head_dim)
    h = cfg.n_heads if cfg.n_heads is not None else max(1, d // cfg.head_dim)
    if d % h:
        raise ValueError(f"model.d_model={d} is not divisible by model.n_heads={h}")
    return Dims(depth=cfg.depth, d_model=d, n_heads=h, d_mlp=cfg.mlp_ratio * d, seq_len=cfg.seq_len)


def backbone_counts(cfg: ModelConfig, vocab_size: int, time_conditioning: bool) -> Counts:
    """The counts :func:`mdm.flops.count` gives for ``Transformer(cfg, vocab_size, time_conditioning=...)``,
    from the sizes alone (mdm/models/backbone.py): per block qkv (3 D^2) + out proj (D^2) + MLP (2 D d_mlp)
    matmul weights and two bias-free LayerNorms (D each); a final LayerNorm; embedding V x D and head D x V
    (one table when tied). Time conditioning adds the time MLP (256 -> c -> c, with biases) and adaLN
    Linear(c, 6D) per block plus Linear(c, 2D) before the head (with biases), run once per sequence."""
    dims = resolve_dims(cfg)
    n, D, M, V, c = dims.depth, dims.d_model, dims.d_mlp, vocab_size, cfg.cond_dim
    block_matmul = 4 * D * D + 2 * D * M
    n_cond = n_cond_bias = 0
    if time_conditioning:
        n_cond = TIME_FREQ_DIM * c + c * c + n * 6 * D * c + 2 * D * c
        n_cond_bias = c + c + n * 6 * D + 2 * D
    embedding = V * D * (1 if cfg.tie_embeddings else 2)
    total = embedding + n * block_matmul + (2 * n + 1) * D + n_cond + n_cond_bias
    return Counts(
        params_total=total,
        params_embedding=embedding,
        params_non_embedding=total - embedding,
        n_matmul=n * block_matmul + V * D,
        n_cond=n_cond,
        n_layer=n,
        d_model=D,
        seq_len=dims.seq_len,
    )


def count_config(
    model_cfg: ModelConfig, vocab_size: int, causal: bool = False, time_conditioning: bool = False
) -> Counts:
    """:func:`backbone_counts` (``causal`` changes no count: no causal halving, mdm/flops.py)."""
    return backbone_counts(model_cfg, vocab_size, time_conditioning)


def world_size(cfg: Config) -> int:
    return max(1, cfg.train.devices) * max(1, cfg.train.num_nodes)


def inv_width_lr(lr: float, ref_width: int, d_model: int) -> float:
    """The inverse-width learning-rate rule: lr x ref_width / d_model (muP-like for the hidden matrices)."""
    return lr * ref_width / d_model


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
