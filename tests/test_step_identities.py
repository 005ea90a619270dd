"""The speed-ups of the training step leave the maths exactly as it was (bit for bit, not approximately).

Each faster form is compared with the literal form it replaced: the in-place -inf write + log-softmax +
gather for the loss head, the strided rotary, the per-tensor EMA lerp.
"""

from __future__ import annotations

import pytest
import torch

from mdm.config import load
from mdm.diffusion import build_objective
from mdm.models.ema import EMA
from mdm.models.rotary import Rotary
from mdm.vocab import Vocab


def _literal_log_probs(logits: torch.Tensor, mask_id: int) -> torch.Tensor:
    logits = logits.float().clone()
    logits[..., mask_id:] = float("-inf")
    return torch.log_softmax(logits, dim=-1)


@pytest.mark.parametrize("size,mask_id", [(320, 257), (320, 256), (128, 65), (4160, 4097), (263, 256)])
@pytest.mark.parametrize("scale", [1.0, 30.0])
def test_loss_head_is_bit_identical(size, mask_id, scale):
    g = torch.Generator().manual_seed(size + int(scale))
    obj = build_objective(load([], []), Vocab(size=size, mask_id=mask_id))
    base = torch.randn(3, 11, size, generator=g) * scale
    x = torch.randint(0, mask_id, (3, 11), generator=g)
    w = torch.randn(3, 11, generator=g)
    ref_in, fast_in, nll_in = (base.clone().requires_grad_() for _ in range(3))
    ref = _literal_log_probs(ref_in, mask_id)
    fast = obj.clean_log_probs(fast_in)
    assert torch.equal(fast, ref) and fast.dtype == torch.float32
    ref_nll = -ref.gather(-1, x.unsqueeze(-1)).squeeze(-1)
    nll = obj.real_token_nll(nll_in, x)
    assert nll.shape == x.shape and torch.equal(nll, ref_nll)
    (ref_nll * w).sum().backward()
    (-fast.gather(-1, x.unsqueeze(-1)).squeeze(-1) * w).sum().backward()
    (nll * w).sum().backward()
    assert torch.equal(fast_in.grad, ref_in.grad) and torch.equal(nll_in.grad, ref_in.grad)
    assert torch.all(ref_in.grad[..., mask_id:] == 0)
    with torch.no_grad():  # the in-place path without gradients
        assert torch.equal(obj.clean_log_probs(base.clone()), ref)


def test_rotary_on_a_strided_view_equals_the_literal_formula():
    B, L, H, Dh = 2, 9, 3, 8
    rot = Rotary(Dh, 16)
    qkv = torch.randn(B, L, 3, H, Dh)
    q = qkv[:, :, 0].transpose(1, 2)  # (B, H, L, Dh), strided as in attention
    assert not q.is_contiguous()
    x1, x2 = q[..., : Dh // 2], q[..., Dh // 2 :]
    cos, sin = rot.cos[:L], rot.sin[:L]
    literal = torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)
    assert torch.equal(rot(q), literal)


def test_ema_update_equals_per_tensor_lerp():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.LayerNorm(7))
    ema = EMA(model, 0.99)
    ref = {n: s.clone() for n, s in ema.shadow.items()}
    for step in range(4):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        ema.update(model, step)
        d = min(0.99, (1 + step) / (10 + step))
        for n, p in model.named_parameters():
            ref[n].lerp_(p.detach(), 1.0 - d)
    assert all(torch.equal(ema.shadow[n], ref[n]) for n in ref)


@pytest.mark.parametrize("causal", [False, True])
def test_attention_with_fused_rotary_is_bit_identical_to_the_literal_one(causal):
    """SelfAttention (rotate_qkv: one autograd Function over q and k) against the literal formula
    (unbind, rotate q and k as strided views, SDPA): same output and same gradients, bit for bit."""
    import torch.nn.functional as F

    from mdm.models.attention import SelfAttention

    torch.manual_seed(0)
    B, L, H, Dh = 3, 10, 2, 8
    rot = Rotary(Dh, 16)
    attn = SelfAttention(H * Dh, H, causal, rot, backend="sdpa")
    x = torch.randn(B, L, H * Dh)
    x_ref, x_new = x.clone().requires_grad_(), x.clone().requires_grad_()

    def literal(inp):
        q, k, v = attn.qkv(inp).view(B, L, 3, H, Dh).unbind(2)
        cos, sin = rot.cos[:L], rot.sin[:L]

        def r(t):
            t1, t2 = t[..., : Dh // 2], t[..., Dh // 2 :]
            return torch.cat((t1 * cos - t2 * sin, t1 * sin + t2 * cos), dim=-1)

        out = F.scaled_dot_product_attention(
            r(q.transpose(1, 2)), r(k.transpose(1, 2)), v.transpose(1, 2), is_causal=causal
        )
        return attn.proj(out.transpose(1, 2).reshape(B, L, H * Dh))

    g = torch.randn(B, L, H * Dh)
    ref = literal(x_ref)
    (ref * g).sum().backward()
    ref_grads = [p.grad.clone() for p in attn.parameters()]
    attn.zero_grad()
    new = attn(x_new)
    (new * g).sum().backward()
    assert torch.equal(new, ref)
    assert torch.equal(x_new.grad, x_ref.grad)
    assert all(torch.equal(p.grad, r) for p, r in zip(attn.parameters(), ref_grads))
