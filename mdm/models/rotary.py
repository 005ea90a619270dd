"""Rotary position embeddings (Su et al. 2021, RoFormer eq. 34), half-split layout."""

from __future__ import annotations

import torch
from torch import nn


class _RotateQKV(torch.autograd.Function):
    """(B, L, 3, H, Dh) fused qkv -> rotated q and k (B, L, 2, H, Dh) and v (B, L, H, Dh), in one pass.

    out = x * [cos, cos] + [x2, x1] * [-sin, sin] over the q and k parts; its backward, written out,
    is g * [cos, cos] + swap(g * [-sin, sin]) (swapping halves is its own transpose), stored straight
    into one (B, L, 3, H, Dh) gradient: no contiguous copy, no per-head-half strided multiplies, no
    zero-filled gradient buffers for the q/k/v slices. Bit for bit what autograd computes for the
    literal formula.
    """

    @staticmethod
    def forward(ctx, qkv: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
        ctx.save_for_backward(cos, sin)
        qk = qkv[:, :, :2]
        x1, x2 = qk.chunk(2, dim=-1)
        return qk * cos + torch.cat((x2, x1), dim=-1) * sin, qkv[:, :, 2]

    @staticmethod
    def backward(ctx, g_qk: torch.Tensor, g_v: torch.Tensor):
        cos, sin = ctx.saved_tensors
        B, L, _, H, Dh = g_qk.shape
        grad = g_qk.new_empty((B, L, 3, H, Dh))
        gs1, gs2 = (g_qk * sin).chunk(2, dim=-1)
        torch.add(g_qk * cos, torch.cat((gs2, gs1), dim=-1), out=grad[:, :, :2])
        if g_v is None:
            grad[:, :, 2].zero_()
        else:
            grad[:, :, 2].copy_(g_v)
        return grad, None, None


class Rotary(nn.Module):
    """Caches cos/sin tables for positions [0, max_len) and rotates (B, H, L, Dh) tensors."""

    def __init__(self, head_dim: int, max_len: int, base: float = 10000.0):
        super().__init__()
        if head_dim % 2:
            raise ValueError(f"rotary embeddings need an even head_dim, got {head_dim}")
        inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
        pos = torch.arange(max_len, dtype=torch.float32)
        freqs = torch.outer(pos, inv_freq)  # (L, Dh/2)
        self.register_buffer("cos", freqs.cos(), persistent=False)
        self.register_buffer("sin", freqs.sin(), persistent=False)
        # Full-width tables for the rotate-half form: [cos, cos] and [-sin, sin], (L, Dh).
        self.register_buffer("cos2", torch.cat((freqs.cos(), freqs.cos()), -1), persistent=False)
        self.register_buffer("sin2", torch.cat((-freqs.sin(), freqs.sin()), -1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (..., L, Dh), any strides -> [x1 cos - x2 sin, x1 sin + x2 cos] (x1, x2 the two halves).

        Computed as x * [cos, cos] + [x2, x1] * [-sin, sin] on a contiguous copy: two full-width
        multiplies instead of four on strided halves (~10x slower on CPU at head_dim 32). Bit for bit
        the same: (-x2) sin = -(x2 sin) and a + (-b) = a - b exactly in IEEE arithmetic.
        """
        L = x.shape[-2]
        cos, sin = self.cos2[:L].to(x.dtype), self.sin2[:L].to(x.dtype)
        x = x.contiguous()
        x1, x2 = x.chunk(2, dim=-1)
        return x * cos + torch.cat((x2, x1), dim=-1) * sin

    def _tables(self, L: int, H: int, dtype: torch.dtype, device: torch.device):
        """[cos, cos] and [-sin, sin] expanded to a contiguous (L, 2, H, Dh): broadcasting a (L, 1, 1, Dh)
        table makes every multiply loop over Dh-long rows (several times slower on CPU at Dh = 32)."""
        key = (L, H, dtype, device)
        cache = self.__dict__.setdefault("_table_cache", {})
        if key not in cache:
            Dh = self.cos2.shape[-1]
            cache[key] = tuple(
                t[:L, None, None, :].to(device=device, dtype=dtype).expand(L, 2, H, Dh).contiguous()
                for t in (self.cos2, self.sin2)
            )
        return cache[key]

    def rotate_qkv(self, qkv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """qkv: (B, L, 3, H, Dh), the fused projection's output -> q, k, v each (B, H, L, Dh) views;
        q and k rotated at positions 0..L-1 (the same values as ``forward`` on each)."""
        cos, sin = self._tables(qkv.shape[1], qkv.shape[3], qkv.dtype, qkv.device)
        qk, v = _RotateQKV.apply(qkv, cos, sin)
        q, k = qk.unbind(2)
        return q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
