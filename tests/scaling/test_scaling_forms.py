"""Closed-form compute-optimal allocation (Hoffmann et al. 2022, eq. 4) against brute force."""

import numpy as np
import pytest
from scipy import optimize

from scaling.forms import LossParams, allocation_arrays, optimal_loss_arrays

PARAMS = [
    LossParams(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28),  # Chinchilla
    LossParams(E=2.0, A=60.0, B=200.0, alpha=0.35, beta=0.30),
    LossParams(E=0.5, A=1e3, B=20.0, alpha=0.7, beta=0.2),
]


@pytest.mark.parametrize("p", PARAMS)
@pytest.mark.parametrize("c", [1e12, 1e17, 1e22])
def test_closed_form_matches_constrained_brute_force(p, c):
    # minimise L(N, C/(6N)) over ln N numerically: the constraint C = 6ND substituted exactly
    def f(ln_n):
        n = np.exp(ln_n)
        return float(p.loss(n, c / (6.0 * n)))

    guess = np.log(p.n_opt(c))
    r = optimize.minimize_scalar(
        f, bounds=(guess - 10, guess + 10), method="bounded", options={"xatol": 1e-10}
    )
    assert np.exp(r.x) == pytest.approx(float(p.n_opt(c)), rel=1e-6)
    assert float(p.d_opt(c)) == pytest.approx(c / (6.0 * np.exp(r.x)), rel=1e-6)
    assert float(p.optimal_loss(c)) == pytest.approx(r.fun, rel=1e-12)
    # and it is the constrained optimum: 6 N_opt D_opt = C
    assert 6.0 * p.n_opt(c) * p.d_opt(c) == pytest.approx(c, rel=1e-12)


@pytest.mark.parametrize("p", PARAMS)
def test_exponents_and_ratio(p):
    assert p.a + p.b == pytest.approx(1.0)
    c = np.array([1e15, 1e20])
    # log-log slopes of N_opt and D_opt are a and b
    assert np.diff(np.log(p.n_opt(c)))[0] / np.diff(np.log(c))[0] == pytest.approx(p.a)
    assert np.diff(np.log(p.d_opt(c)))[0] / np.diff(np.log(c))[0] == pytest.approx(p.b)
    assert p.tokens_per_param(c) == pytest.approx(p.G**-2 * (c / 6) ** (p.b - p.a))


def test_log_round_trip_and_array_versions():
    th = np.stack([p.to_log() for p in PARAMS])
    for p, row in zip(PARAMS, th):
        q = LossParams.from_log(row)
        assert q.as_dict() == pytest.approx(p.as_dict())
    a, b, G = allocation_arrays(
        *(np.array([getattr(p, k) for p in PARAMS]) for k in ("E", "A", "B", "alpha", "beta"))
    )
    assert a == pytest.approx([p.a for p in PARAMS])
    assert G == pytest.approx([p.G for p in PARAMS])
    c = np.array([1e14, 1e18])
    got = optimal_loss_arrays(th, c)
    assert got == pytest.approx(np.stack([p.optimal_loss(c) for p in PARAMS]))
