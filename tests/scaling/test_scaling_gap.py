"""The two-family compute multiplier against closed forms."""

import numpy as np
import pytest

from scaling.forms import LossParams
from scaling.gap import compute_multiplier, multiplier_arrays

REF = LossParams(E=2.0, A=60.0, B=200.0, alpha=0.35, beta=0.30)
C = np.logspace(10, 20, 6)


def test_identity_is_one():
    m = multiplier_arrays(REF.to_log()[None], REF.to_log()[None], C)
    assert m[0] == pytest.approx(np.ones_like(C), rel=1e-9)


@pytest.mark.parametrize("k", [1.6, 0.5])
def test_scaled_B_gives_constant_multiplier_k_pow_1_over_beta(k):
    # L_f(N, D) = L_r(N, D·k^{-1/β}): f needs k^{1/β} times the tokens, hence the compute
    f = LossParams(E=REF.E, A=REF.A, B=k * REF.B, alpha=REF.alpha, beta=REF.beta)
    m = multiplier_arrays(f.to_log()[None], REF.to_log()[None], C)[0]
    assert m == pytest.approx(np.full_like(C, k ** (1 / REF.beta)), rel=1e-9)


def test_root_definition_and_unreachable():
    f = LossParams(E=2.2, A=80.0, B=150.0, alpha=0.3, beta=0.33)
    m = multiplier_arrays(f.to_log()[None], REF.to_log()[None], C)[0]
    reach = np.isfinite(m)
    assert reach.any() and not reach.all()  # at large C the reference goes below f's floor E_f
    assert f.optimal_loss(C[reach] * m[reach]) == pytest.approx(REF.optimal_loss(C[reach]), rel=1e-10)
    assert (REF.optimal_loss(C[~reach]) <= f.E).all()
    assert np.isinf(m[~reach]).all()


def test_bootstrap_intervals_bracket_the_point():
    f = LossParams(E=2.0, A=60.0, B=320.0, alpha=0.35, beta=0.30)
    rng = np.random.default_rng(0)
    sf = f.to_log() + rng.normal(0, 0.01, (200, 5))
    sr = REF.to_log() + rng.normal(0, 0.01, (200, 5))
    g = compute_multiplier(
        f.to_log(), REF.to_log(), C, family="mdlm", reference="ar", samples_f=sf, samples_r=sr
    )
    assert (g.lo < g.multiplier).all() and (g.multiplier < g.hi).all()
    assert g.n_boot == 200
    d = g.to_dict()
    assert d["family"] == "mdlm" and len(d["curve"]) == C.size
