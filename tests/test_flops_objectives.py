"""FLOPs owned by objectives: EDLM-NCE and CCDD count every pass they make, frozen networks included,
checked against torch.utils.flop_counter on tiny models (SDPA math backend, as tests/test_flops.py)."""

from __future__ import annotations

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from mdm.config import load
from mdm.diffusion.encoders import EncoderSpec, FrozenEncoder
from mdm.flops import count, forward_flops_per_token
from mdm.loading import build_objective
from mdm.models.backbone import Transformer
from mdm.models.ccdd import resolve_layer
from tests.edlm.conftest import DEBUG_YAML, REPO, synthetic_vocab, write_fake_run

B, L = 4, 32


def measured_flops_per_token(objective, model, batch) -> float:
    """FLOPs of one training step (loss forward, every frozen pass, backward) per input token."""
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as fc:
        objective.loss(model, batch).sum.backward()
    return fc.get_total_flops() / batch["input_ids"].numel()


def tokens(vocab, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"input_ids": torch.randint(0, vocab.mask_id, (B, L), generator=g)}


def test_forward_flops_of_a_prefix_of_blocks():
    cfg = load([DEBUG_YAML], []).model
    m = Transformer(cfg, 64)
    x = torch.randint(0, 64, (2, 16))
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as fc:
        h = m.embed(x)
        m.blocks[0](h, None, None)
    assert fc.get_total_flops() / x.numel() == forward_flops_per_token(m, 16, blocks=1)
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as fc:
        m(x)
    assert fc.get_total_flops() / x.numel() == forward_flops_per_token(m, 16)
    assert forward_flops_per_token(m, 16, blocks=0) == 0


@pytest.mark.parametrize("negatives", [1, 3])
def test_edlm_nce_counts_base_forward_and_energy_passes(tmp_path, negatives):
    base = write_fake_run(tmp_path / "base", [])
    cfg = load(
        [DEBUG_YAML, REPO / "configs" / "edlm_nce.yaml"],
        [f"objective.edlm.base_run={base}", f"objective.edlm.nce_negatives_per_positive={negatives}"],
    )
    vocab = synthetic_vocab(cfg.data.synthetic.vocab)
    obj = build_objective(cfg, vocab)
    net = obj.build_model(cfg, vocab)
    c = obj.counts(net)
    one_pass = count(net, per_sequence=("head",), unused_head=True).flops_per_token
    base_fwd = count(obj.base_model).forward_flops_per_token
    assert c.extra_flops_per_token == negatives * one_pass + base_fwd
    assert c.flops_per_token == (1 + negatives) * one_pass + base_fwd
    assert c.flops_per_token > count(net).flops_per_token  # the old count (one pass, no base) was too low
    assert measured_flops_per_token(obj, net, tokens(vocab)) == pytest.approx(c.flops_per_token, rel=1e-9)


D_CONT = 8


def _ccdd(tmp_path, kind: str, layer: int):
    cfg = load(
        [DEBUG_YAML],
        [
            "objective.name=ccdd",
            f"objective.ccdd.d_cont={D_CONT}",
            f"objective.ccdd.encoder={kind}",
            f"objective.ccdd.encoder_layer={layer}",
        ],
    )
    vocab = synthetic_vocab(cfg.data.synthetic.vocab)
    obj = build_objective(cfg, vocab)
    torch.manual_seed(0)
    enc_net = Transformer(cfg.model, vocab.size)  # a random frozen encoder (no run on disk)
    W = enc_net.dims.d_model
    k = resolve_layer(layer, enc_net.dims.depth) if kind == "hidden" else 0
    spec = EncoderSpec(kind, k, "clean", "truncate", D_CONT, W, vocab, "none", 0, "test")
    enc = FrozenEncoder(enc_net, spec, lambda t: None)
    enc.set_statistics(
        {"mean": torch.zeros(W), "proj": torch.eye(W)[:, :D_CONT], "meta": spec.identity()}, "t"
    )
    obj._encoder = enc
    return cfg, vocab, obj, enc


@pytest.mark.parametrize("kind,layer", [("embedding", 0), ("hidden", 1), ("hidden", -1)])
def test_ccdd_counts_the_frozen_encoder(tmp_path, kind, layer):
    cfg, vocab, obj, enc = _ccdd(tmp_path, kind, layer)
    net = obj.build_model(cfg, vocab)
    c = obj.counts(net)
    enc_fwd = 0 if kind == "embedding" else forward_flops_per_token(enc.network, L, enc.spec.layer)
    if kind == "hidden":
        assert enc_fwd > 0
    assert c.extra_flops_per_token == enc_fwd + 2 * enc.spec.width * D_CONT - 2 * net.z_in.weight.numel()
    assert measured_flops_per_token(obj, net, tokens(vocab)) == pytest.approx(c.flops_per_token, rel=1e-9)


def test_ccdd_without_the_continuous_branch_is_mdlm(tmp_path):
    cfg = load([DEBUG_YAML], ["objective.name=ccdd", "objective.ccdd.continuous=false"])
    vocab = synthetic_vocab(cfg.data.synthetic.vocab)
    obj = build_objective(cfg, vocab)
    net = obj.build_model(cfg, vocab)
    assert obj.counts(net) == count(net)  # no encoder is loaded, nothing extra
    assert measured_flops_per_token(obj, net, tokens(vocab)) == pytest.approx(count(net).flops_per_token)


def test_backbone_objectives_count_as_before():
    cfg = load([DEBUG_YAML], [])
    vocab = synthetic_vocab(cfg.data.synthetic.vocab)
    obj = build_objective(cfg, vocab)
    net = obj.build_model(cfg, vocab)
    assert obj.counts(net) == count(net) and obj.counts(net).extra_flops_per_token == 0
