"""The synthetic Markov source: exact entropies checked by enumeration and by sampling."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from mdm.config import DataConfig, SyntheticConfig
from mdm.data import build_loader, load_meta
from mdm.data.synthetic import make_chain


def _seq_prob(chain, seq) -> float:
    V, k = chain.vocab, chain.order
    s = 0
    for x in seq[:k]:
        s = s * V + x
    p = chain.stationary[s]
    for x in seq[k:]:
        p *= chain.transition[s, x]
        s = (s * V + x) % chain.num_states
    return p


@pytest.mark.parametrize("vocab,order", [(3, 1), (3, 2), (2, 3)])
def test_block_entropy_matches_enumeration(vocab, order):
    chain = make_chain(vocab, order, concentration=0.5, seed=7)
    # stationarity: pi T = pi on the chain over k-tuples
    pi_next = np.zeros_like(chain.stationary)
    for s in range(chain.num_states):
        for x in range(vocab):
            pi_next[(s * vocab + x) % chain.num_states] += chain.stationary[s] * chain.transition[s, x]
    np.testing.assert_allclose(pi_next, chain.stationary, atol=1e-12)
    n = order + 3
    probs = np.array([_seq_prob(chain, seq) for seq in itertools.product(range(vocab), repeat=n)])
    assert probs.sum() == pytest.approx(1.0, abs=1e-12)
    h_enum = -(probs * np.log(probs)).sum()
    h_formula = chain.entropy_first_k() + (n - order) * chain.entropy_rate()
    assert h_enum == pytest.approx(h_formula, abs=1e-10)
    # conditional entropy H(X_n | X_1..n-1) equals the rate (difference of consecutive block entropies)
    probs_m = np.array([_seq_prob(chain, seq) for seq in itertools.product(range(vocab), repeat=n - 1)])
    h_cond = h_enum + (probs_m * np.log(probs_m)).sum()
    assert h_cond == pytest.approx(chain.entropy_rate(), abs=1e-10)


def test_sampled_stream_has_the_entropy_rate(tmp_path):
    cfg = DataConfig(name="synthetic", dir=str(tmp_path / "syn"))
    cfg.synthetic = SyntheticConfig(vocab=8, order=2, concentration=0.3, num_tokens=200_000, eval_tokens=1000)
    loader = build_loader(cfg, "train", seq_len=64, batch_size=8, seed=0, progress=False)
    meta = load_meta(tmp_path / "syn")
    assert meta.entropy_per_token == loader.meta.entropy_per_token
    assert meta.mask_id == 9 and meta.eos_id == 8 and meta.vocab_size == 64
    chain = make_chain(8, 2, 0.3, 0)
    toks = np.fromfile(tmp_path / "syn" / "train.bin", dtype=meta.dtype).astype(np.int64)
    assert toks.max() < 8  # EOS never occurs in the stream
    s = toks[:-2] * 8 + toks[1:-1]
    nll = -np.log(chain.transition[s, toks[2:]])  # (N-2,)
    # mean NLL of the true model on its own samples -> entropy rate; 5 standard errors of slack
    se = nll.std() / np.sqrt(len(nll))
    assert abs(nll.mean() - meta.entropy_per_token) < 5 * se
    assert meta.entropy_per_token < np.log(8) - 0.2  # learnable: well below uniform
    L = 64
    assert meta.block_entropy(L) == pytest.approx(
        (chain.entropy_first_k() + (L - 2) * chain.entropy_rate()) / L
    )


def test_chain_is_a_pure_function_of_params():
    a, b = make_chain(5, 1, 0.3, 3), make_chain(5, 1, 0.3, 3)
    np.testing.assert_array_equal(a.transition, b.transition)
    assert not np.array_equal(a.transition, make_chain(5, 1, 0.3, 4).transition)
    with pytest.raises(ValueError, match="concentration"):
        make_chain(5, 1, 0.0, 0)
