"""Multi-head self-attention: PyTorch SDPA by default, flash-attn on CUDA when installed."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mdm.models.rotary import Rotary

try:  # optional GPU extra
    from flash_attn import flash_attn_func  # type: ignore[import-not-found]
except Exception:  # ImportError, or a broken CUDA build
    flash_attn_func = None


def flash_available() -> bool:
    return flash_attn_func is not None and torch.cuda.is_available()


class SelfAttention(nn.Module):
    def __init__(self, d_model: int, n_heads: int, causal: bool, rotary: Rotary, backend: str = "auto"):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}")
        if backend == "flash" and flash_attn_func is None:
            raise RuntimeError(
                "model.attn_backend=flash but flash-attn is not installed (pip install '.[gpu]')"
            )
        self.n_heads, self.causal, self.backend = n_heads, causal, backend
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.proj = nn.Linear(d_model, d_model, bias=False)
        self.rotary = rotary

    def _use_flash(self, x: torch.Tensor, key_mask: torch.Tensor | None) -> bool:
        return (
            self.backend in ("auto", "flash")
            and flash_attn_func is not None
            and x.is_cuda
            and x.dtype in (torch.float16, torch.bfloat16)
            and key_mask is None
        )

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        # x: (B, L, D); key_mask: (B, L) bool, True = may be attended to
        B, L, D = x.shape
        qkv = self.qkv(x).view(B, L, 3, self.n_heads, D // self.n_heads)
        q, k, v = self.rotary.rotate_qkv(qkv)  # (B, H, L, Dh) each; q, k rotated
        if self._use_flash(x, key_mask):
            out = flash_attn_func(
                q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), causal=self.causal
            )  # (B, L, H, Dh)
        else:
            mask = None if key_mask is None else key_mask[:, None, None, :]  # (B, 1, 1, L)
            if mask is not None and self.causal:
                mask = mask & torch.ones(L, L, dtype=torch.bool, device=x.device).tril()  # (B, 1, L, L)
            out = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, is_causal=self.causal and mask is None
            ).transpose(1, 2)  # (B, L, H, Dh)
        return self.proj(out.reshape(B, L, D))
