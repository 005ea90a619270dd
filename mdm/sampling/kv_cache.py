"""Incremental decoding of the causal backbone with a key/value cache, using the backbone's own weights.

:class:`KVCache` runs the blocks of a causal :class:`mdm.models.backbone.Transformer` (the AR baseline: no
time conditioning, no extra inputs) position by position: the keys and values of every layer are kept in
preallocated (B, H, L, Dh) buffers, so step l costs one token's projections and an attention over l keys
instead of a forward pass over the whole prefix. Same maths as ``Transformer.forward`` (pre-norm blocks,
rotary positions at the absolute position, causal attention), so its logits equal the uncached ones to
rounding (tests/sampling/test_ar_sampler.py checks them in float64). The backbone itself is not modified.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary embedding of x (B, H, T, Dh) at the positions whose tables are cos/sin (T, Dh/2), half-split."""
    x1, x2 = x.chunk(2, dim=-1)
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)


class KVCache:
    """``prefill(x)`` then ``step(token)``: logits (B, V) of the next token after each call."""

    def __init__(self, model, batch: int, max_len: int | None = None):
        if not getattr(model, "causal", False):
            raise ValueError("the KV cache needs a causal backbone (the AR baseline)")
        if getattr(model, "time_embed", None) is not None:
            raise ValueError("the KV cache supports backbones without time conditioning only")
        self.model = model
        dims = model.dims
        self.max_len = max_len or dims.seq_len
        if self.max_len > dims.seq_len:
            raise ValueError(f"length {self.max_len} exceeds the model context model.seq_len={dims.seq_len}")
        self.H, self.Dh = dims.n_heads, dims.d_model // dims.n_heads
        p = model.embed.weight
        shape = (batch, self.H, self.max_len, self.Dh)
        self.k = [torch.empty(shape, dtype=p.dtype, device=p.device) for _ in model.blocks]
        self.v = [torch.empty(shape, dtype=p.dtype, device=p.device) for _ in model.blocks]
        self.pos = 0  # tokens held

    def _attend(self, i: int, block, h: torch.Tensor) -> torch.Tensor:
        B, T, D = h.shape
        attn = block.attn
        q, k, v = attn.qkv(h).view(B, T, 3, self.H, self.Dh).unbind(2)  # (B, T, H, Dh)
        cos = attn.rotary.cos[self.pos : self.pos + T]
        sin = attn.rotary.sin[self.pos : self.pos + T]
        q = _rotate(q.transpose(1, 2), cos, sin)  # (B, H, T, Dh)
        k = _rotate(k.transpose(1, 2), cos, sin)
        end = self.pos + T
        self.k[i][:, :, self.pos : end] = k
        self.v[i][:, :, self.pos : end] = v.transpose(1, 2)
        keys, values = self.k[i][:, :, :end], self.v[i][:, :, :end]
        if T == 1:  # one new query attends to every cached key
            out = F.scaled_dot_product_attention(q, keys, values)
        elif self.pos == 0:
            out = F.scaled_dot_product_attention(q, keys, values, is_causal=True)
        else:
            mask = torch.ones(T, end, dtype=torch.bool, device=h.device).tril(self.pos)  # (T, end)
            out = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask)
        return attn.proj(out.transpose(1, 2).reshape(B, T, D))

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Append tokens x (B, T) at positions [pos, pos + T); returns the logits (B, T, V) there."""
        B, T = x.shape
        if self.pos + T > self.max_len:
            raise ValueError(f"KV cache full: {self.pos} + {T} tokens exceed {self.max_len}")
        m = self.model
        h = m.embed(x)  # (B, T, D)
        for i, block in enumerate(m.blocks):
            h = h + self._attend(i, block, block.norm1(h))
            h = h + block.mlp(block.norm2(h))
        self.pos += T
        return m.head(m.norm_f(h))  # (B, T, V)

    def prefill(self, x: torch.Tensor) -> torch.Tensor:
        """Run the prompt x (B, T) through the cache; logits (B, V) of the token after it."""
        return self.forward(x)[:, -1]

    def step(self, token: torch.Tensor) -> torch.Tensor:
        """Append one token (B,); logits (B, V) of the next one."""
        return self.forward(token[:, None])[:, -1]
