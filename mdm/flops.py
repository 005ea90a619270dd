"""Parameter and FLOP counting: the one place (sweeps and scaling read these numbers).

Conventions (docs/MATH.md "Counting"; PaLM, Chowdhery et al. 2022, App. B):

* ``params_total``: every trainable parameter (a tied head counted once).
* ``params_embedding``: the token embedding table plus an untied output head.
* ``params_non_embedding`` = total - embedding (Kaplan et al. 2020's N).
* ``n_matmul``: weights used in a matmul once per token: every block Linear plus the output head
  (tied or not); the embedding lookup is not a matmul. The time-conditioning MLP and adaLN run once
  per *sequence*; their share per token is ``n_cond / seq_len``.
* training FLOPs/token = 6 n_matmul + 12 n_layer d_model T (attention scores and values over T keys,
  forward 4 n_layer d T, backward twice that). Bidirectional attention has no causal halving; we do not
  halve for the causal baseline either (SDPA on CPU computes the full score matrix), so the two families
  are counted alike.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

FLOP_CONVENTION = (
    "6*N_matmul + 12*n_layer*d_model*T per token (PaLM App. B; head included; no causal halving)"
)


@dataclass(frozen=True)
class Counts:
    params_total: int
    params_embedding: int
    params_non_embedding: int
    n_matmul: int  # per-token matmul weights (blocks + head)
    n_cond: int  # per-sequence conditioning weights (time MLP + adaLN)
    n_layer: int
    d_model: int
    seq_len: int

    @property
    def flops_per_token(self) -> float:
        """Training (forward + backward) FLOPs per token."""
        return 3 * self.forward_flops_per_token

    @property
    def forward_flops_per_token(self) -> float:
        return (
            2 * self.n_matmul
            + 4 * self.n_layer * self.d_model * self.seq_len
            + 2 * self.n_cond / self.seq_len
        )

    def as_dict(self) -> dict:
        d = asdict(self)
        d["flops_per_token"] = self.flops_per_token
        d["forward_flops_per_token"] = self.forward_flops_per_token
        d["flop_convention"] = FLOP_CONVENTION
        return d


def count(model: nn.Module) -> Counts:
    """Count the shared backbone (mdm.models.backbone.Transformer) by walking its modules.

    A wrapper network (an objective's extra head around the backbone) exposes it as ``.backbone``;
    its own trainable parameters count in the total (and, if Linear, as per-token matmuls).
    """
    wrapper = model
    model = getattr(model, "backbone", model)
    extra = [p for n, p in wrapper.named_parameters() if p.requires_grad and not n.startswith("backbone.")]
    extra_total = sum(p.numel() for p in extra) if wrapper is not model else 0
    extra_matmul = sum(p.numel() for p in extra if p.dim() == 2) if wrapper is not model else 0
    total = sum(p.numel() for p in model.parameters()) + extra_total
    embed = model.embed.weight
    head = model.head.weight
    params_embedding = embed.numel() + (0 if head is embed else head.numel())
    n_matmul = sum(
        m.weight.numel()
        for m in model.blocks.modules()
        if isinstance(m, nn.Linear) and not _is_cond(m, model)
    )
    n_matmul += head.numel() + extra_matmul
    n_cond = 0
    if model.time_embed is not None:
        n_cond += sum(m.weight.numel() for m in model.time_embed.modules() if isinstance(m, nn.Linear))
        n_cond += sum(m.lin.weight.numel() for m in model.modules() if m.__class__.__name__ == "AdaLN")
    dims = model.dims
    return Counts(
        params_total=total,
        params_embedding=params_embedding,
        params_non_embedding=total - params_embedding,
        n_matmul=n_matmul,
        n_cond=n_cond,
        n_layer=dims.depth,
        d_model=dims.d_model,
        seq_len=dims.seq_len,
    )


def _is_cond(m: nn.Module, model: nn.Module) -> bool:
    return any(m is a.lin for a in model.modules() if a.__class__.__name__ == "AdaLN")


def count_config(model_cfg, vocab_size: int, causal: bool = False, time_conditioning: bool = False) -> Counts:
    """Counts for a config without allocating weights (built on the meta device)."""
    from mdm.models.backbone import Transformer

    with torch.device("meta"):
        model = Transformer(model_cfg, vocab_size, causal=causal, time_conditioning=time_conditioning)
    return count(model)


def tokens_for_flops(flops: float, counts: Counts) -> int:
    """Training tokens D that spend a FLOP budget C under this module's convention: D = C / flops_per_token."""
    return int(flops // counts.flops_per_token)
