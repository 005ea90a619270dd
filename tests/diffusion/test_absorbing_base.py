"""One absorbing base (issue 13 item 3): MDLM, RADD, SEDD-absorb, EDLM and CCDD draw the absorbing forward
process from one random stream (mdm.diffusion.graphs.absorb) and share carry-over and the masked NLL."""

from __future__ import annotations

import torch

from mdm.config import load
from mdm.diffusion import OBJECTIVES, Objective, build_objective
from mdm.vocab import Vocab

VOCAB = Vocab(size=20, mask_id=16)


def _objective(name, *over):
    return build_objective(load([], [f"objective.name={name}", *over]), VOCAB)


def test_every_absorbing_objective_masks_with_the_base():
    for name in ("mdlm", "radd", "edlm_nce", "ccdd"):
        assert OBJECTIVES[name].mask_tokens is Objective.mask_tokens, name
    for name in ("mdlm", "radd", "sedd", "ccdd"):
        assert OBJECTIVES[name].carry_over is Objective.carry_over, name


def test_sedd_absorb_draws_the_masks_of_mdlm():
    """The same generator state gives SEDD's absorbing graph and MDLM's mask_tokens the same z (one stream
    of float32 uniforms; before, the graph drew its own float64 ones). Padding is never masked."""
    mdlm, sedd = _objective("mdlm"), _objective("sedd")
    x = torch.randint(0, 16, (6, 40), generator=torch.Generator().manual_seed(1))
    t = torch.linspace(0.05, 0.95, 6)
    valid = torch.ones_like(x, dtype=torch.bool)
    valid[0, 30:] = False
    z_mdlm, masked = mdlm.mask_tokens(x, t, valid, torch.Generator().manual_seed(7))
    z_sedd = sedd.graph.sample_forward(
        x, sedd.schedule.total_noise(t), valid, torch.Generator().manual_seed(7)
    )
    assert torch.equal(z_mdlm, z_sedd)
    assert 0 < masked.sum() < masked.numel() and not masked[0, 30:].any()


def test_carry_over_and_masked_nll():
    obj = _objective("mdlm")
    logits = torch.randn(2, 5, 20, generator=torch.Generator().manual_seed(0))
    z = torch.tensor([[16, 3, 16, 0, 15], [16, 16, 16, 16, 16]])
    logp = obj.carry_over(obj.clean_log_probs(logits.clone()), z)
    unmasked = z != 16
    assert torch.equal(logp[unmasked].argmax(-1), z[unmasked])
    assert (logp[unmasked].max(-1).values == 0).all() and torch.isinf(logp[unmasked]).sum() == 3 * 19
    assert torch.equal(logp[~unmasked], obj.clean_log_probs(logits.clone())[~unmasked])
    x = torch.tensor([[2, 3, 4, 0, 15], [1, 2, 3, 4, 5]])
    nll = obj.masked_nll(logits, x, ~unmasked)
    want = -obj.clean_log_probs(logits.clone()).gather(-1, x.unsqueeze(-1)).squeeze(-1)
    assert torch.equal(nll, torch.where(~unmasked, want, torch.zeros_like(want)))
