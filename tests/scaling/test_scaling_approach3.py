"""Approach 3 (Hoffmann et al. 2022 LSE + Huber fit) against known parameters and identities."""

import warnings

import numpy as np
import pytest

from scaling.approach3 import DEFAULT_GRID, fit_approach3, huber, init_grid, objective_and_grad
from scaling.errors import ScalingInputError, ScalingWarning
from scaling.forms import LossParams
from scaling.synthetic import CHINCHILLA, random_sweep

SMALL_GRID = {
    "a": [0.0, 10.0, 20.0],
    "b": [0.0, 10.0, 20.0],
    "e": [-1.0, 0.0, 1.0],
    "alpha": [0.5, 1.0],
    "beta": [0.5, 1.0],
}


def _data(n=60, noise=0.0, seed=0, p=CHINCHILLA):
    df = random_sweep(p, n, noise=noise, seed=seed)
    return df["params"].to_numpy().copy(), df["tokens"].to_numpy().copy(), df["loss"].to_numpy().copy()


def test_grid_is_hoffmanns():
    g = init_grid()
    assert g.shape == (4500, 5)
    assert sorted(set(g[:, 3])) == [0.0, 0.5, 1.0, 1.5, 2.0] == sorted(set(g[:, 4]))
    assert sorted(set(g[:, 2])) == [-1.0, -0.5, 0.0, 0.5, 1.0]
    assert sorted(set(g[:, 0])) == [0.0, 5.0, 10.0, 15.0, 20.0, 25.0] == sorted(set(g[:, 1]))
    assert init_grid(SMALL_GRID).shape == (3 * 3 * 3 * 2 * 2, 5)
    with pytest.raises(ScalingInputError, match="unknown grid key"):
        init_grid({"gamma": [1.0]})


def test_huber_branches():
    r = np.array([-0.01, -1e-3, -1e-4, 0.0, 5e-4, 1e-3, 0.2])
    d = 1e-3
    expect = np.where(np.abs(r) <= d, 0.5 * r**2, d * (np.abs(r) - 0.5 * d))
    assert huber(r, d) == pytest.approx(expect, rel=1e-15, abs=0)


@pytest.mark.parametrize("weighted", [False, True])
def test_gradient_matches_finite_differences(weighted):
    n, d, loss = _data(40, noise=0.02, seed=3)
    x, y, ll = np.log(n), np.log(d), np.log(loss)
    rng = np.random.default_rng(0)
    w = rng.integers(0, 3, size=n.size).astype(float) if weighted else None
    # points whose residuals straddle both Huber branches
    for th in [
        CHINCHILLA.to_log(),
        CHINCHILLA.to_log() + [0.3, -0.2, 0.01, 0.02, -0.01],
        np.array([3.0, 8.0, 0.5, 0.2, 0.4]),
    ]:

        def f(t):
            return float(objective_and_grad(t[None], x, y, ll, 1e-3, w)[0][0])

        g = objective_and_grad(th[None], x, y, ll, 1e-3, w)[1][0]
        h = 1e-7
        num = np.array([(f(th + h * e) - f(th - h * e)) / (2 * h) for e in np.eye(5)])  # central differences
        assert g == pytest.approx(num, rel=1e-5, abs=1e-8)


def test_objective_is_summed_and_weights_are_resample_counts():
    n, d, loss = _data(30, noise=0.05, seed=1)
    x, y, ll = np.log(n), np.log(d), np.log(loss)
    th = CHINCHILLA.to_log()[None]
    f, _ = objective_and_grad(th, x, y, ll, 1e-3)
    r = np.log(CHINCHILLA.loss(n, d)) - ll
    assert f[0] == pytest.approx(huber(r, 1e-3).sum(), rel=1e-12)  # sum, not mean
    idx = np.random.default_rng(0).integers(0, 30, 30)
    counts = np.bincount(idx, minlength=30).astype(float)
    fw, gw = objective_and_grad(th, x, y, ll, 1e-3, counts)
    fr, gr = objective_and_grad(th, x[idx], y[idx], ll[idx], 1e-3)
    assert fw == pytest.approx(fr, rel=1e-12) and gw == pytest.approx(gr, rel=1e-10)


def test_recovers_exact_parameters_from_noise_free_data_full_grid():
    n, d, loss = _data(60)
    fit = fit_approach3(n, d, loss)
    assert fit.n_starts == 4500
    got, true = fit.params.as_dict(), CHINCHILLA.as_dict()
    for k in ("E", "A", "B", "alpha", "beta", "a", "b", "G"):
        assert got[k] == pytest.approx(true[k], rel=1e-4), k
    assert fit.objective < 1e-12


def test_recovers_parameters_from_noisy_data():
    # 250 runs, 1% log-normal noise: tolerances are ~3-4 bootstrap SEs of this design
    n, d, loss = _data(250, noise=0.01, seed=1)
    fit = fit_approach3(n, d, loss, grid=SMALL_GRID, quiet=True)  # beta ends outside this small grid
    p = fit.params
    assert abs(p.alpha - CHINCHILLA.alpha) < 0.04
    assert abs(p.beta - CHINCHILLA.beta) < 0.03
    assert abs(p.a - CHINCHILLA.a) < 0.03
    assert abs(p.E - CHINCHILLA.E) < 0.1


def test_batched_optimizer_matches_scipy_per_start():
    n, d, loss = _data(40, noise=0.01, seed=2)
    starts = init_grid()[np.random.default_rng(0).choice(4500, 12, replace=False)]
    fb = fit_approach3(n, d, loss, starts=starts, polish=0, quiet=True)
    fs = fit_approach3(n, d, loss, starts=starts, polish=0, optimizer="scipy", quiet=True)
    # from the same starts the batched L-BFGS reaches the same minimum as scipy's L-BFGS-B
    # (scipy's default tolerances stop it a little earlier, never later)
    assert fb.objective <= fs.objective * (1 + 1e-9)
    assert fb.objective == pytest.approx(fs.objective, rel=1e-4)
    assert fb.theta == pytest.approx(fs.theta, rel=2e-2)
    # and the batched end point is a minimum to scipy at tight tolerance: polishing moves nothing
    fp = fit_approach3(n, d, loss, starts=starts, polish=1, quiet=True)
    assert fp.objective == pytest.approx(fb.objective, rel=1e-12)


def test_delta_is_configurable_and_changes_the_fit():
    n, d, loss = _data(60, noise=0.03, seed=4)
    loss[:3] *= 1.5  # outliers: a wide delta (≈ least squares) is pulled, a narrow one is not
    f_narrow = fit_approach3(n, d, loss, grid=SMALL_GRID, quiet=True)
    f_wide = fit_approach3(n, d, loss, grid=SMALL_GRID, delta=10.0, quiet=True)
    assert f_narrow.delta == 1e-3 and f_wide.delta == 10.0
    assert f_narrow.params.alpha != pytest.approx(f_wide.params.alpha, rel=1e-3)


def test_too_few_points_and_bad_values():
    n, d, loss = _data(4)
    with pytest.raises(ScalingInputError, match="5 parameters .* only 4 points"):
        fit_approach3(n, d, loss)
    n, d, loss = _data(10)
    loss[2] = np.nan
    with pytest.raises(ScalingInputError, match=r"'loss' has NaN/inf at rows \[2\]"):
        fit_approach3(n, d, loss)
    loss[2] = -1.0
    with pytest.raises(ScalingInputError, match="'loss' must be > 0"):
        fit_approach3(n, d, loss)
    with pytest.raises(ScalingInputError, match="unknown optimizer"):
        fit_approach3(*_data(10), optimizer="adam")


def test_ill_determined_fit_warns():
    # every run has the same size N: A and alpha cannot be separated from E
    rng = np.random.default_rng(0)
    d = np.exp(rng.uniform(np.log(1e8), np.log(1e11), 40))
    n = np.full_like(d, 1e8)
    loss = CHINCHILLA.loss(n, d) * np.exp(0.002 * rng.standard_normal(d.size))
    with pytest.warns(ScalingWarning) as rec:
        fit = fit_approach3(n, d, loss, grid=SMALL_GRID)
    assert any("ill-determined" in str(r.message) for r in rec)
    assert any("ill-determined" in w for w in fit.warnings)


def test_outside_grid_warns_and_quiet_collects():
    p = LossParams(E=12.0, A=406.4, B=410.7, alpha=0.34, beta=0.28)  # log E = 2.48 > 1
    df = random_sweep(p, 40, seed=5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # quiet=True must not emit
        fit = fit_approach3(df["params"], df["tokens"], df["loss"], grid=SMALL_GRID, quiet=True)
    assert fit.params.E == pytest.approx(12.0, rel=1e-3)
    assert any("log E" in w and "outside the initialisation grid" in w for w in fit.warnings)
    assert set(DEFAULT_GRID) == {"alpha", "beta", "e", "a", "b"}
