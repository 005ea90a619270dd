"""Counting an objective from configs alone: what ``Objective.config_counts`` (mdm/diffusion/base.py) is
built from. No torch, no checkpoint, no network: the sweep planner (mdm/sweep/counts.py) counts every run
this way, from a frozen run's config (EDLM-NCE's base run, CCDD's encoder run) instead of its weights.

* :func:`time_conditioning`: ``model.time_conditioning`` resolved against an objective's default, with
  the objective's refusal (``Objective.__init__`` uses it too, so the two agree);
* :func:`forward_flops`: one forward of a backbone (or of its first blocks) from its config: what
  :func:`mdm.flops.forward_flops_per_token` finds in the built network;
The backbone's own counts from a config are :func:`mdm.derived.backbone_counts`; a frozen run's config is
read by :func:`mdm.run_config.read_run_config` and handed to ``config_counts`` (no file is read here).
"""

from __future__ import annotations

from dataclasses import replace

from mdm.config import Config, ModelConfig
from mdm.derived import TIME_FREQ_DIM, backbone_counts, resolve_dims


def time_conditioning(cfg: Config, name: str, default: bool, supported: bool) -> bool:
    """``model.time_conditioning`` of a run of objective ``name`` (None -> the objective's default);
    ValueError when the objective takes none and the config asks for it."""
    tc = cfg.model.time_conditioning
    tc = default if tc is None else tc
    if tc and not supported:
        raise ValueError(f"objective {name!r} takes no time conditioning (model.time_conditioning)")
    return tc


def forward_flops(
    model: ModelConfig, vocab_size: int, tc: bool, seq_len: int, blocks: int | None = None
) -> float:
    """FLOPs per token of one forward, on ``seq_len`` tokens, of the backbone ``model`` describes: the whole
    network (head included), or with ``blocks = k`` < depth the embedding and the first k blocks only
    (:func:`mdm.flops.forward_flops_per_token` on the built network, from the sizes)."""
    c = replace(backbone_counts(model, vocab_size, tc), seq_len=seq_len)
    if blocks is None or blocks == c.n_layer:
        return c.forward_flops_per_token
    d = resolve_dims(model)
    D, k, cond_dim = d.d_model, blocks, model.cond_dim
    matmul = k * (4 * D * D + 2 * D * d.d_mlp)
    # adaLN of the kept blocks and the time MLP (run once per sequence)
    cond = (k * 6 * D * cond_dim + TIME_FREQ_DIM * cond_dim + cond_dim * cond_dim) if tc else 0
    return 2 * matmul + 4 * k * D * seq_len + 2 * cond / seq_len
