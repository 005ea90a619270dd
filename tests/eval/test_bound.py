"""The K-sample bound estimator and its standard error, against closed forms.

A model with constant logits is uniform over the N real tokens. Then (docs/MATH.md "MDLM") for log-linear
alpha_t the MDLM NELBO has expectation (1 - eps) * L * log N for every t, and the AR NLL is exactly
(L - 1) * log N: closed forms to test the estimator, its stratification and its error bars against.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from mdm.config import load
from mdm.diffusion import OBJECTIVES, build_objective
from mdm.eval.bound import estimate_bound, is_exact, ratio_se, stratified_block_times
from mdm.eval.conditional import conditional_nll, greedy_match
from mdm.vocab import Vocab

DEBUG = Path(__file__).resolve().parents[2] / "configs" / "debug.yaml"
VOCAB = Vocab(size=64, mask_id=50, eos_id=0, bos_id=0, pad_id=0)


class Constant(nn.Module):
    """Logits that are the same everywhere (uniform, or peaked on one token)."""

    def __init__(self, V: int = 64, peak: int | None = None):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))
        self.V, self.peak = V, peak

    def forward(self, x, sigma=None, extra=None, key_mask=None, return_hidden=False):
        out = torch.zeros(*x.shape, self.V) + 0 * self.w
        if self.peak is not None:
            out[..., self.peak] = 5.0
        return out


def _objective(name: str, *extra: str):
    return build_objective(load([DEBUG], [f"objective.name={name}", *extra]), VOCAB)


def _blocks(n: int, L: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.randint(1, VOCAB.mask_id, (n, L), generator=torch.Generator().manual_seed(seed))


def test_ratio_se_reduces_to_the_standard_error_of_the_mean_for_equal_counts():
    rng = np.random.default_rng(0)
    l = rng.normal(100, 5, size=50)
    n = np.full(50, 32.0)
    assert ratio_se(l, n) == pytest.approx(l.std(ddof=1) / math.sqrt(50) / 32)
    assert ratio_se(l[:1], n[:1]) is None


def test_times_are_stratified_within_each_block():
    t = stratified_block_times(100, 8, 1e-3, torch.Generator().manual_seed(0))
    strata = torch.floor((t.double() - 1e-3) / (1 - 1e-3) * 8).long()
    assert all(sorted(row) == list(range(8)) for row in strata.tolist())


def test_mdlm_bound_of_a_uniform_model_matches_the_closed_form_within_its_standard_error():
    obj = _objective("mdlm")
    truth = (1 - obj.cfg.schedule.eps) * math.log(VOCAB.mask_id)  # nats/token
    z = []
    for seed in range(20):
        s = estimate_bound(obj, Constant(), _blocks(64), K=2, seed=seed, batch_size=64).summary()
        assert s["tokens_scored"] == 64 * 32 and s["time_samples"] == 2 and not s["exact"]
        assert s["se"] > 0 and s["se_mc"] > 0
        z.append((s["nats_per_token"] - truth) / s["se"])
    z = np.array(z)
    assert np.mean(np.abs(z) < 2) >= 0.75, z  # ~95% expected if the error bars are honest
    assert abs(z.mean()) < 1.5, z  # unbiased: the mean z-score of 20 runs has SE ~ 0.22


def test_ar_bound_is_exact_and_ignores_time_samples():
    obj = _objective("ar")
    assert is_exact(obj)
    s = estimate_bound(obj, Constant(), _blocks(10), K=8, seed=0).summary()
    assert s["time_samples"] == 1 and s["exact"] and s["se_mc"] == 0.0
    assert s["tokens_scored"] == 10 * 31
    assert s["nats_per_token"] == pytest.approx(math.log(VOCAB.mask_id), rel=1e-6)
    assert s["se"] == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("name", [n for n in ("mdlm", "radd", "sedd", "ar") if n in OBJECTIVES])
def test_estimator_is_the_mean_of_the_objectives_own_sequence_loss(name):
    """Same times and mask generator -> the estimator returns objective.sequence_loss, averaged over K."""
    torch.manual_seed(0)
    obj = _objective(name)
    model = obj.build_model(obj.cfg, VOCAB).eval()
    x, K, seed = _blocks(3), 2, 7
    res = estimate_bound(obj, model, x, K=K, seed=seed, batch_size=64, precision="fp32")
    K = res.K
    t = stratified_block_times(3, K, obj.ocfg.t_min, torch.Generator().manual_seed(seed)).reshape(-1)
    with torch.no_grad():
        direct = obj.sequence_loss(
            model,
            {"input_ids": x.repeat_interleave(K, 0)},
            t,
            generator=torch.Generator().manual_seed(seed + 1),
        )
    assert np.allclose(res.nats_k.reshape(-1), direct.double().numpy(), rtol=1e-5)
    assert res.tokens.sum() == float(obj.scored_tokens({"input_ids": x}))


@pytest.mark.parametrize("name", [n for n in ("mdlm", "sedd") if n in OBJECTIVES])
def test_conditional_bound_noises_only_the_continuation(name):
    """Uniform model: E[-log p(c | x)] bound = (1 - eps) |c| log N whatever the context length (SEDD-absorb:
    normalised scores collapse to the same integrand, docs/MATH.md, plus its prior KL on the continuation)."""
    obj = _objective(name)
    pairs = [([0] + list(range(1, 20)), [7, 8]) for _ in range(200)]
    nll = conditional_nll(obj, Constant(), pairs, K=4, seed=0, batch_size=64)
    truth = (1 - obj.cfg.schedule.eps) * 2 * math.log(VOCAB.mask_id)
    if name == "sedd":
        truth += float(obj.prior_term(torch.tensor([[7, 8]])))
    se = nll.std(ddof=1) / math.sqrt(len(nll))
    assert abs(nll.mean() - truth) < 4 * se, (nll.mean(), truth, se)


def test_conditional_ar_is_exact():
    ar = _objective("ar")
    exact = conditional_nll(ar, Constant(), [([0, 3, 4], [5, 6, 7])], K=4)
    assert exact[0] == pytest.approx(3 * math.log(VOCAB.mask_id), rel=1e-6)


@pytest.mark.parametrize("name", ["mdlm", "ar"])
def test_greedy_completion(name):
    obj = _objective(name)
    model = Constant(peak=7)
    hits = greedy_match(obj, model, [([0, 1, 2], [7, 7]), ([0, 1, 2], [7, 3]), ([0], [7])])
    assert hits.tolist() == [True, False, True]
