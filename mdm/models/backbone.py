"""The shared transformer backbone used by every objective.

Pre-norm blocks (attention + MLP), rotary positions, bidirectional by default and causal for the
autoregressive baseline, optional noise conditioning through zero-initialised adaLN, tied or untied
output head. Knows nothing of diffusion: it maps tokens (and optionally a noise level and extra
per-token inputs) to logits.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from mdm.config import ModelConfig
from mdm.derived import Dims, resolve_dims  # noqa: F401  (the width rule lives in derived.py)
from mdm.models.attention import SelfAttention
from mdm.models.conditioning import AdaLN, TimeEmbedding, modulate
from mdm.models.rotary import Rotary


class Block(nn.Module):
    def __init__(self, dims: Dims, causal: bool, rotary: Rotary, cfg: ModelConfig, cond: bool):
        super().__init__()
        D = dims.d_model
        self.norm1 = nn.LayerNorm(D, eps=cfg.norm_eps, bias=False)
        self.attn = SelfAttention(D, dims.n_heads, causal, rotary, cfg.attn_backend)
        self.norm2 = nn.LayerNorm(D, eps=cfg.norm_eps, bias=False)
        self.mlp = nn.Sequential(
            nn.Linear(D, dims.d_mlp, bias=False),
            nn.GELU(approximate="tanh" if cfg.activation == "gelu_tanh" else "none"),
            nn.Linear(dims.d_mlp, D, bias=False),
        )
        self.drop = nn.Dropout(cfg.dropout)
        self.ada = AdaLN(cfg.cond_dim, D, 6) if cond else None

    def forward(self, x: torch.Tensor, c: torch.Tensor | None, key_mask: torch.Tensor | None) -> torch.Tensor:
        if self.ada is None:
            x = x + self.drop(self.attn(self.norm1(x), key_mask))
            return x + self.drop(self.mlp(self.norm2(x)))
        sh1, sc1, g1, sh2, sc2, g2 = self.ada(c)  # each (B, 1, D)
        x = x + g1.add(1) * self.drop(self.attn(modulate(self.norm1(x), sh1, sc1), key_mask))
        return x + g2.add(1) * self.drop(self.mlp(modulate(self.norm2(x), sh2, sc2)))


class Transformer(nn.Module):
    """tokens (B, L) [+ sigma (B,)] [+ extra (B, L, D)] -> logits (B, L, V)."""

    def __init__(
        self, cfg: ModelConfig, vocab_size: int, causal: bool = False, time_conditioning: bool = False
    ):
        super().__init__()
        self.cfg, self.vocab_size, self.causal, self.time_conditioning = (
            cfg,
            vocab_size,
            causal,
            time_conditioning,
        )
        self.dims = dims = resolve_dims(cfg)
        D = dims.d_model
        self.embed = nn.Embedding(vocab_size, D)
        rotary = Rotary(D // dims.n_heads, dims.seq_len, cfg.rope_base)
        self.time_embed = TimeEmbedding(cfg.cond_dim) if time_conditioning else None
        self.blocks = nn.ModuleList(
            Block(dims, causal, rotary, cfg, time_conditioning) for _ in range(dims.depth)
        )
        self.norm_f = nn.LayerNorm(D, eps=cfg.norm_eps, bias=False)
        self.ada_f = AdaLN(cfg.cond_dim, D, 2) if time_conditioning else None
        self.head = nn.Linear(D, vocab_size, bias=False)
        self.activation_checkpointing = False  # set_activation_checkpointing; not a weight
        self.reset_parameters()
        if cfg.tie_embeddings:
            self.head.weight = self.embed.weight

    def reset_parameters(self) -> None:
        std = self.cfg.init_std
        for name, p in self.named_parameters():
            if "ada" in name or "norm" in name or p.dim() < 2:
                continue  # adaLN stays zero; norms stay one; biases stay as built
            s = (
                std / math.sqrt(2 * self.dims.depth)
                if name.endswith(("attn.proj.weight", "mlp.2.weight"))
                else std
            )
            nn.init.normal_(p, mean=0.0, std=s)

    def forward(
        self,
        x: torch.Tensor,
        sigma: torch.Tensor | None = None,
        extra: torch.Tensor | None = None,
        key_mask: torch.Tensor | None = None,
        return_hidden: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """x: (B, L) token ids; sigma: (B,) noise level (required iff time-conditioned);
        extra: (B, L, D) added to the token embeddings; key_mask: (B, L) True where attendable."""
        B, L = x.shape
        if L > self.dims.seq_len:
            raise ValueError(
                f"sequence length {L} exceeds the model context model.seq_len={self.dims.seq_len}"
            )
        if (sigma is None) == self.time_conditioning:
            need = "needs" if self.time_conditioning else "takes no"
            raise ValueError(f"this backbone {need} a noise level sigma")
        h = self.embed(x)  # (B, L, D)
        if extra is not None:
            h = h + extra
        c = self.time_embed(sigma) if self.time_embed is not None else None  # (B, C)
        recompute = self.activation_checkpointing and torch.is_grad_enabled()
        for block in self.blocks:
            if recompute:  # keep only the block's inputs; backward re-runs it (same RNG: same dropout)
                h = checkpoint(block, h, c, key_mask, use_reentrant=False)
            else:
                h = block(h, c, key_mask)
        h = self.norm_f(h)
        if self.ada_f is not None:
            shift, scale = self.ada_f(c)
            h = modulate(h, shift, scale)
        logits = self.head(h)  # (B, L, V)
        return (logits, h) if return_hidden else logits


def set_activation_checkpointing(net: nn.Module, on: bool = True) -> int:
    """Switch activation checkpointing (per block) on every :class:`Transformer` inside ``net`` (a
    backbone or a network wrapping one); returns how many were switched. Gradients are unchanged."""
    found = [m for m in net.modules() if isinstance(m, Transformer)]
    for m in found:
        m.activation_checkpointing = bool(on)
    return len(found)
