import torch

from mdm.config import load
from mdm.models.backbone import Transformer, resolve_dims


def tiny(**kw):
    cfg = load(
        [],
        [
            "model.depth=2",
            "model.aspect_ratio=32",
            "model.head_dim=16",
            "model.seq_len=16",
            "model.cond_dim=16",
        ],
    )
    for k, v in kw.items():
        setattr(cfg.model, k, v)
    return cfg.model


def test_depth_dial():
    cfg = load([], ["model.depth=6"]).model
    d = resolve_dims(cfg)
    assert (d.d_model, d.n_heads, d.d_mlp) == (384, 6, 1536)
    cfg.d_model, cfg.n_heads = 200, 5
    assert resolve_dims(cfg).n_heads == 5


def test_shapes_and_hidden():
    m = Transformer(tiny(), 64)
    x = torch.randint(0, 60, (3, 16))
    logits, h = m(x, return_hidden=True)
    assert logits.shape == (3, 16, 64) and h.shape == (3, 16, 64)


def test_causal_model_ignores_the_future():
    torch.manual_seed(0)
    m = Transformer(tiny(), 64, causal=True)
    x = torch.randint(0, 60, (2, 16))
    y = x.clone()
    y[:, 10:] = (y[:, 10:] + 1) % 60
    assert torch.allclose(m(x)[:, :10], m(y)[:, :10], atol=1e-5)
    assert not torch.allclose(m(x)[:, 10:], m(y)[:, 10:])


def test_bidirectional_model_sees_the_future():
    torch.manual_seed(0)
    m = Transformer(tiny(), 64)
    x = torch.randint(0, 60, (2, 16))
    y = x.clone()
    y[:, -1] = (y[:, -1] + 1) % 60
    assert not torch.allclose(m(x)[:, 0], m(y)[:, 0])


def test_zero_init_adaln_equals_time_agnostic_network():
    torch.manual_seed(0)
    plain = Transformer(tiny(), 64)
    cond = Transformer(tiny(), 64, time_conditioning=True)
    missing, unexpected = cond.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and all("ada" in k or "time_embed" in k for k in missing)
    x = torch.randint(0, 60, (2, 16))
    sigma = torch.tensor([0.1, 3.0])
    assert torch.allclose(plain(x), cond(x, sigma), atol=1e-6)
    # once trained (non-zero modulation) the output depends on sigma
    torch.nn.init.normal_(cond.blocks[0].ada.lin.weight, std=0.5)
    assert not torch.allclose(cond(x, sigma), cond(x, sigma.flip(0)))


def test_tied_head_shares_the_embedding():
    m = Transformer(tiny(tie_embeddings=True), 64)
    assert m.head.weight is m.embed.weight


def test_key_mask_hides_padding():
    torch.manual_seed(0)
    m = Transformer(tiny(), 64)
    x = torch.randint(0, 60, (1, 16))
    mask = torch.ones(1, 16, dtype=torch.bool)
    mask[:, 12:] = False
    y = x.clone()
    y[:, 12:] = 0
    assert torch.allclose(m(x, key_mask=mask)[:, :12], m(y, key_mask=mask)[:, :12], atol=1e-5)


def test_too_long_sequence_is_refused():
    m = Transformer(tiny(), 64)
    try:
        m(torch.zeros(1, 17, dtype=torch.long))
    except ValueError as e:
        assert "model.seq_len=16" in str(e)
    else:
        raise AssertionError("expected ValueError")
