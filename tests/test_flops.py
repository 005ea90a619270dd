import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from mdm.config import load
from mdm.derived import count_config
from mdm.flops import count
from mdm.models.backbone import Transformer


@pytest.mark.parametrize("causal,tied", [(False, False), (True, True)])
def test_training_flops_match_flop_counter(causal, tied):
    cfg = load([], ["model.depth=2", "model.d_model=64", "model.n_heads=2", "model.seq_len=32"]).model
    cfg.tie_embeddings = tied
    m = Transformer(cfg, 128, causal=causal)
    c = count(m)
    x = torch.randint(0, 128, (2, 32))
    # the math backend decomposes attention into matmuls the counter sees (the fused CPU kernel it does not)
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as fc:
        m(x).float().sum().backward()
    measured = fc.get_total_flops() / x.numel()
    assert measured == pytest.approx(c.flops_per_token, rel=1e-6)


def test_time_conditioning_share_per_token():
    cfg = load(
        [], ["model.depth=2", "model.d_model=64", "model.n_heads=2", "model.seq_len=32", "model.cond_dim=32"]
    ).model
    m = Transformer(cfg, 128, time_conditioning=True)
    c = count(m)
    x = torch.randint(0, 128, (2, 32))
    # the math backend decomposes attention into matmuls the counter sees (the fused CPU kernel it does not)
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as fc:
        m(x, torch.rand(2)).sum().backward()
    # the per-sequence conditioning MLP is counted once per sequence; elementwise work is not counted
    assert fc.get_total_flops() / x.numel() == pytest.approx(c.flops_per_token, rel=1e-3)
    assert c.n_cond > 0


def test_param_counts():
    cfg = load([], ["model.depth=2", "model.d_model=64", "model.n_heads=2"]).model
    m = Transformer(cfg, 128)
    c = count(m)
    assert c.params_total == sum(p.numel() for p in m.parameters())
    assert c.params_embedding == 2 * 128 * 64
    assert c.params_non_embedding == c.params_total - c.params_embedding
    assert c.n_matmul == 2 * 12 * 64 * 64 + 128 * 64
    assert count_config(cfg, 128) == c
