"""Bootstrap over runs: resampling identities, seeding, interval sanity."""

import numpy as np
import pytest

from scaling.approach2 import fit_approach2
from scaling.approach3 import fit_approach3
from scaling.bootstrap import bootstrap_approach2, bootstrap_approach3, resample_counts, summarize
from scaling.synthetic import CHINCHILLA, isoflop_sweep, random_sweep

SMALL_GRID = {
    "a": [0.0, 10.0, 20.0],
    "b": [0.0, 10.0, 20.0],
    "e": [-1.0, 0.0, 1.0],
    "alpha": [0.5, 1.0],
    "beta": [0.5, 1.0],
}


def test_resample_counts_are_multinomial_draws():
    w = resample_counts(7, 500, np.random.default_rng(0))
    assert w.shape == (500, 7)
    assert (w.sum(axis=1) == 7).all()
    assert w.mean() == pytest.approx(1.0)  # each point is expected once per resample


def test_summarize_percentiles():
    v = np.arange(1001, dtype=float)
    s = summarize({"x": v, "y": np.array([1.0, np.nan, np.inf, 3.0])}, level=0.9)
    assert s["x"]["lo"] == pytest.approx(50.0) and s["x"]["hi"] == pytest.approx(950.0)
    assert s["x"]["median"] == pytest.approx(500.0)
    assert s["x"]["se"] == pytest.approx(v.std(ddof=1))
    assert s["y"]["lo"] == pytest.approx(1.1)  # non-finite draws ignored


def _fit3(seed=1, n=80):
    df = random_sweep(CHINCHILLA, n, noise=0.01, seed=seed)
    cols = df["params"], df["tokens"], df["loss"]
    return fit_approach3(*cols, grid=SMALL_GRID, quiet=True), cols


def test_approach3_bootstrap_seeded_and_sane():
    fit, cols = _fit3()
    bootstrap_approach3(fit, *cols, n_boot=24, seed=7)
    iv = dict(fit.intervals)
    assert set(iv) == {"E", "A", "B", "alpha", "beta", "a", "b", "G"}
    assert fit.bootstrap["n"] == 24 and fit.bootstrap["n_failed"] == 0
    for k in ("alpha", "beta", "a", "E"):
        assert iv[k]["lo"] < iv[k]["hi"] and iv[k]["se"] > 0
        assert iv[k]["lo"] - 3 * iv[k]["se"] < fit.params.as_dict()[k] < iv[k]["hi"] + 3 * iv[k]["se"]
    # a is determined to a few hundredths with 80 runs at 1% noise (wider would mean a broken bootstrap)
    assert iv["a"]["hi"] - iv["a"]["lo"] < 0.15
    fit2, _ = _fit3()
    bootstrap_approach3(fit2, *cols, n_boot=24, seed=7)
    assert fit2.intervals == iv  # same seed, same draws
    bootstrap_approach3(fit2, *cols, n_boot=24, seed=8)
    assert fit2.intervals["a"] != iv["a"]


def test_approach3_bootstrap_draw_equals_refit_on_resampled_rows():
    fit, cols = _fit3(n=40)
    n, d, loss = (np.asarray(c) for c in cols)
    bootstrap_approach3(fit, n, d, loss, n_boot=3, seed=3)
    rng = np.random.default_rng(3)
    idx = rng.integers(0, n.size, size=(3, n.size))  # the same draws resample_counts makes
    for r in range(3):
        ref = fit_approach3(n[idx[r]], d[idx[r]], loss[idx[r]], grid=SMALL_GRID, quiet=True)
        assert fit.samples["alpha"][r] == pytest.approx(ref.params.alpha, rel=1e-4)
        assert fit.samples["a"][r] == pytest.approx(ref.params.a, rel=1e-4)


def test_approach2_bootstrap_stratified():
    df = isoflop_sweep(
        CHINCHILLA, [1e18, 1e19, 1e20, 1e21], sizes_per_budget=9, span=0.8, noise=0.003, seed=3
    )
    fit = fit_approach2(df, quiet=True)
    bootstrap_approach2(fit, df, n_boot=50, seed=0)
    iv = fit.intervals
    assert iv["a"]["lo"] <= fit.a <= iv["a"]["hi"]
    assert iv["a"]["lo"] < CHINCHILLA.a < iv["a"]["hi"]
    assert np.array(fit.budget_intervals["n_opt"]).shape == (4, 2)
    assert fit.bootstrap["n_failed"] == 0
