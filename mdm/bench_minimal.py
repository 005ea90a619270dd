"""The plainest GPT a user would write, as the bench's yardstick for our training step.

Token + learned position embedding, pre-norm blocks (SDPA causal attention, exact-GELU MLP), final
norm, untied (or tied) linear head, next-token cross-entropy, gradient clipping at 1, fused AdamW.
Nothing else: no rotary, no SUBS masking, no objective machinery. Same matmul weights as our backbone
at equal width/depth/heads/vocabulary, so the two do the same FLOPs per token (mdm.flops convention).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class _Block(nn.Module):
    def __init__(self, d: int, n_heads: int, mlp_ratio: int):
        super().__init__()
        self.n_heads = n_heads
        self.norm1 = nn.LayerNorm(d, bias=False)
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.proj = nn.Linear(d, d, bias=False)
        self.norm2 = nn.LayerNorm(d, bias=False)
        self.fc = nn.Linear(d, mlp_ratio * d, bias=False)
        self.out = nn.Linear(mlp_ratio * d, d, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, L, D = x.shape
        q, k, v = self.qkv(self.norm1(x)).split(D, dim=-1)
        q, k, v = (t.view(B, L, self.n_heads, D // self.n_heads).transpose(1, 2) for t in (q, k, v))
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, H, L, Dh)
        x = x + self.proj(a.transpose(1, 2).reshape(B, L, D))
        return x + self.out(F.gelu(self.fc(self.norm2(x))))


class MinimalGPT(nn.Module):
    def __init__(
        self,
        vocab_size: int,
        d_model: int,
        depth: int,
        n_heads: int,
        seq_len: int,
        mlp_ratio: int = 4,
        tie: bool = False,
    ):
        super().__init__()
        self.tok = nn.Embedding(vocab_size, d_model)
        self.pos = nn.Embedding(seq_len, d_model)
        self.blocks = nn.ModuleList(_Block(d_model, n_heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(d_model, bias=False)
        self.head = nn.Linear(d_model, vocab_size, bias=False)
        for p in self.parameters():
            if p.dim() == 2:
                nn.init.normal_(p, std=0.02)
        if tie:
            self.head.weight = self.tok.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.tok(x) + self.pos(torch.arange(x.shape[1], device=x.device))
        for b in self.blocks:
            h = b(h)
        return self.head(self.norm(h))


def minimal_train_step(model: MinimalGPT, opt: torch.optim.Optimizer, x: torch.Tensor) -> None:
    """One AR step on a (B, L) block: predict x[:, 1:] from x[:, :-1] (as our AR objective scores it)."""
    logits = model(x[:, :-1])
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1))
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)


def build_minimal(
    vocab_size: int,
    d_model: int,
    depth: int,
    n_heads: int,
    seq_len: int,
    mlp_ratio: int = 4,
    tie: bool = False,
) -> tuple[MinimalGPT, torch.optim.AdamW]:
    model = MinimalGPT(vocab_size, d_model, depth, n_heads, seq_len, mlp_ratio, tie)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, betas=(0.9, 0.98), weight_decay=0.1, fused=True)
    return model, opt
