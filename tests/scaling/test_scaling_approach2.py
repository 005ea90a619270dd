"""Approach 2 (isoFLOP parabolas) against known parameters and exact parabolas."""

import numpy as np
import pandas as pd
import pytest

from scaling.approach2 import fit_approach2, fit_budget
from scaling.errors import ScalingInputError, ScalingWarning
from scaling.synthetic import CHINCHILLA, isoflop_sweep

BUDGETS = [1e18, 1e19, 1e20, 1e21]


def test_vertex_of_an_exact_parabola_is_exact():
    n = np.exp(np.linspace(15, 19, 6))
    x = np.log(n)
    loss = 2.0 + 0.05 * (x - 17.3) ** 2
    c = 1e18
    bf = fit_budget(n, c / (6 * n), loss, c)
    assert bf.n_opt == pytest.approx(np.exp(17.3), rel=1e-10)
    assert bf.loss_min == pytest.approx(2.0, rel=1e-12)
    assert bf.d_opt == pytest.approx(c / (6 * np.exp(17.3)), rel=1e-10)  # read off ln D-ln N at the vertex
    assert not bf.edge and not bf.flat and bf.used
    bf = fit_budget(n, c / (6 * n), 2.0 + 0.05 * (x - 20.0) ** 2, c)  # minimum beyond the largest size
    assert bf.edge and "edge" in bf.note and not bf.bracketed
    assert not bf.used  # an extrapolated vertex is not an N_opt
    # the same vertex is inside the sweep's designed sizes when a resample only drew the small ones
    assert not fit_budget(n[:3], c / (6 * n[:3]), loss[:3], c).used
    bf = fit_budget(n[:3], c / (6 * n[:3]), loss[:3], c, size_range=(n.min(), n.max()))
    assert bf.used and bf.bracketed and bf.n_opt == pytest.approx(np.exp(17.3), rel=1e-8)


def test_recovers_exponents_noise_free_off_centre_sampling():
    # sizes centred 0.2 decades off the true optimum: the parabola is only an approximation of
    # L(N, C/6N), but the vertex bias is the same factor at every budget, so a and b are exact
    # to ~1e-3 while G carries a few per cent of bias
    rows = []
    for c in BUDGETS:
        n_star = float(CHINCHILLA.n_opt(c)) * 10**0.2
        for n in n_star * np.logspace(-0.8, 0.8, 7):
            rows.append(
                {
                    "params": n,
                    "tokens": c / (6 * n),
                    "flops": c,
                    "loss": float(CHINCHILLA.loss(n, c / (6 * n))),
                }
            )
    fit = fit_approach2(pd.DataFrame(rows))
    assert fit.a == pytest.approx(CHINCHILLA.a, abs=2e-3)
    assert fit.b == pytest.approx(CHINCHILLA.b, abs=2e-3)
    assert fit.G == pytest.approx(CHINCHILLA.G, rel=0.1)
    assert fit.n_points == 28 and all(b.used for b in fit.budgets)


def test_recovers_exponents_from_noisy_sweep():
    df = isoflop_sweep(CHINCHILLA, BUDGETS, sizes_per_budget=9, span=0.8, noise=0.003, seed=3)
    fit = fit_approach2(df)
    assert fit.a == pytest.approx(CHINCHILLA.a, abs=0.04)
    assert fit.b == pytest.approx(CHINCHILLA.b, abs=0.04)
    d = fit.to_dict()
    assert d["E"] is None and d["a"] == fit.a and len(d["budgets"]) == 4


def test_single_budget_is_a_clear_error():
    df = isoflop_sweep(CHINCHILLA, [1e19], sizes_per_budget=5)
    with pytest.raises(
        ScalingInputError, match=r"at least 2 compute budgets .* found 1 usable of 1: C=1e\+19 \(5 sizes\)"
    ):
        fit_approach2(df)


def test_budget_with_too_few_sizes_is_skipped_with_warning():
    df = isoflop_sweep(CHINCHILLA, BUDGETS[:3], sizes_per_budget=5)
    two = isoflop_sweep(CHINCHILLA, [1e21], sizes_per_budget=2)
    with pytest.warns(ScalingWarning, match=r"budget C=1e\+21 skipped: only 2 distinct size"):
        fit = fit_approach2(pd.concat([df, two], ignore_index=True))
    assert [b.used for b in fit.budgets] == [True, True, True, False]


def test_edge_budgets_are_flagged_and_can_be_dropped():
    rows = []
    for c in BUDGETS:
        n_star = float(CHINCHILLA.n_opt(c))
        sizes = (
            n_star * np.logspace(-2.0, -0.6, 5) if c == BUDGETS[-1] else n_star * np.logspace(-0.7, 0.7, 5)
        )
        rows += [
            {"params": n, "tokens": c / (6 * n), "loss": float(CHINCHILLA.loss(n, c / (6 * n)))}
            for n in sizes
        ]
    df = pd.DataFrame(rows)
    # the last budget's vertex lies beyond its largest size: skipped, not extrapolated
    with pytest.warns(ScalingWarning, match=r"C=1e\+21 skipped: minimum at the edge .* extrapolation"):
        fit = fit_approach2(df)
    assert [b.edge for b in fit.budgets] == [False, False, False, True]
    assert [b.used for b in fit.budgets] == [True, True, True, False]
    assert fit.a == pytest.approx(CHINCHILLA.a, abs=2e-3)
    # an edge budget whose vertex is inside (lowest observed loss at the largest size) is used,
    # flagged; drop_edge drops it
    rows = []
    for c in BUDGETS:
        n_star = float(CHINCHILLA.n_opt(c))
        sizes = n_star * (np.logspace(-1.2, 0.15, 5) if c == BUDGETS[-1] else np.logspace(-0.7, 0.7, 5))
        rows += [
            {"params": n, "tokens": c / (6 * n), "loss": float(CHINCHILLA.loss(n, c / (6 * n)))}
            for n in sizes
        ]
    df = pd.DataFrame(rows)
    fit = fit_approach2(df, quiet=True)
    last = fit.budgets[-1]
    assert last.edge and last.bracketed and last.used
    fit2 = fit_approach2(df, drop_edge=True, quiet=True)
    assert [b.used for b in fit2.budgets] == [True, True, True, False]


def test_flat_or_inverted_parabola_is_flagged():
    n = np.exp(np.linspace(15, 19, 5))
    x = np.log(n)
    bf = fit_budget(n, 1e18 / (6 * n), 3.0 - 0.01 * (x - 17) ** 2, 1e18)  # a maximum, not a minimum
    assert bf.flat and not bf.used
    rng = np.random.default_rng(0)
    bf = fit_budget(n, 1e18 / (6 * n), 3.0 + 1e-4 * (x - 17) ** 2 + 0.01 * rng.standard_normal(5), 1e18)
    assert bf.flat  # curvature swamped by noise
