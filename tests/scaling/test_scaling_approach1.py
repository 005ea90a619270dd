"""Approach 1 (envelope of training curves) against known parameters."""

import json

import numpy as np
import pytest

from scaling.approach1 import fit_approach1
from scaling.errors import ScalingInputError
from scaling.results import load_run_histories
from scaling.synthetic import CHINCHILLA, training_curves

SIZES = np.logspace(7, 9.5, 16)
FINAL = [1e21 / (6 * n) for n in SIZES]  # every run trained to the same final compute


def test_recovers_exponents_from_noise_free_curves():
    # the envelope only takes trained sizes (a staircase in N): 16 sizes over 2.5 decades give a
    # to ~0.01
    fit = fit_approach1(training_curves(CHINCHILLA, SIZES, FINAL))
    assert fit.a == pytest.approx(CHINCHILLA.a, abs=0.01)
    assert fit.b == pytest.approx(CHINCHILLA.b, abs=0.01)
    assert np.unique(fit.envelope_n).size >= 5
    # the envelope is the minimum over runs at each compute
    assert np.all(np.diff(fit.envelope_loss) <= 1e-12)


def test_noisy_curves_with_smoothing():
    h = training_curves(CHINCHILLA, SIZES, FINAL, noise=0.001, seed=1)
    fit = fit_approach1(h, smooth=15)
    assert fit.a == pytest.approx(CHINCHILLA.a, abs=0.03)


def test_single_size_envelope_is_an_error():
    h = training_curves(CHINCHILLA, [1e8, 1e8 * 1.0001], [1e9, 1e9])
    h.loc[h["name"] == "run1", "loss"] += 1.0  # run1 never wins
    with pytest.raises(ScalingInputError, match="envelope is a single model size"):
        fit_approach1(h)


def test_from_run_directories(tmp_path):
    h = training_curves(CHINCHILLA, SIZES[::3], FINAL[::3], points_per_run=30)
    dirs = []
    for name, g in h.groupby("name"):
        d = tmp_path / name
        d.mkdir()
        n = float(g["params"].iloc[0])
        (d / "summary.json").write_text(
            json.dumps({"params_non_embedding": n, "params_total": n, "flops_per_token": 6 * n})
        )
        (d / "metrics.jsonl").write_text(
            "\n".join(
                json.dumps({"step": int(s), "tokens": float(t), "loss": float(v)})
                for s, t, v in zip(g["step"], g["tokens"], g["loss"])
            )
        )
        dirs.append(d)
    hist = load_run_histories(dirs)
    a = fit_approach1(hist, quiet=True)
    b = fit_approach1(h, quiet=True)
    assert a.a == pytest.approx(b.a, rel=1e-9)


def test_point_noise_recovers_the_sd_of_white_noise_on_a_smooth_curve():
    from scaling.approach1 import point_noise

    rng = np.random.default_rng(3)
    x = np.linspace(0, 1, 2000)
    trend = 3.0 + 2.0 * np.exp(-5 * x)
    assert point_noise(trend) < 1e-4
    assert point_noise(trend + 0.05 * rng.standard_normal(x.size)) == pytest.approx(0.05, rel=0.1)


def test_noise_larger_than_the_gap_between_sizes_is_flagged_and_widens_the_interval():
    from scaling.bootstrap import bootstrap_approach1
    from scaling.checks import check_allocation_fit

    budgets = np.array([1e20, 1e21])
    sizes, final = SIZES, FINAL
    quiet = fit_approach1(
        training_curves(CHINCHILLA, sizes, final, points_per_run=200, seed=1), smooth="auto"
    )
    assert quiet.noise_share == 0.0
    assert not any("picked by noise" in r for r in check_allocation_fit(quiet, budgets))
    # one-batch losses: noise of 5% of the loss, far above the gaps between neighbouring sizes
    h = training_curves(CHINCHILLA, sizes, final, points_per_run=200, noise=0.05, seed=1)
    loud = fit_approach1(h, smooth="auto", quiet=True)
    assert loud.noise_share > 0.5
    reasons = check_allocation_fit(loud, budgets)
    assert any("picked by noise" in r for r in reasons), reasons
    # the bootstrap redraws each curve's noise: its interval of a is wider than on the quiet curves
    bootstrap_approach1(loud, h, n_boot=40, seed=0, smooth="auto")
    hq = training_curves(CHINCHILLA, sizes, final, points_per_run=200, noise=0.002, seed=1)
    q = bootstrap_approach1(
        fit_approach1(hq, smooth="auto", quiet=True), hq, n_boot=40, seed=0, smooth="auto"
    )
    width = lambda f: f.intervals["a"]["hi"] - f.intervals["a"]["lo"]  # noqa: E731
    assert width(loud) > 2 * width(q)


def test_an_envelope_of_mid_schedule_points_is_flagged():
    """One horizon per size with a learning rate decaying to each run's end: between the runs' ends the
    envelope is won by points whose rate had not come down, which biases N_opt (flagged); a constant
    rate, or no lr column, has no such check."""
    from scaling.checks import check_allocation_fit

    h = training_curves(CHINCHILLA, SIZES[::3], FINAL[::3], points_per_run=100)
    budgets = np.array([1e20, 1e21])
    frac = h.groupby("name")["tokens"].transform(lambda t: t / t.max())
    decaying = fit_approach1(h.assign(lr=1e-3 * (1.0 - frac) + 1e-5), quiet=True)
    assert decaying.mid_schedule_share > 0.5
    assert any("mid-schedule points" in r for r in check_allocation_fit(decaying, budgets))
    assert decaying.to_dict()["mid_schedule_share"] == decaying.mid_schedule_share
    constant = fit_approach1(h.assign(lr=1e-3), quiet=True)
    assert constant.mid_schedule_share == 0.0
    assert not any("mid-schedule" in r for r in check_allocation_fit(constant, budgets))
    assert fit_approach1(h, quiet=True).mid_schedule_share is None
    # warm-up points (rate rising to its peak) are not end-of-schedule either
    from scaling.approach1 import _decayed

    assert _decayed(np.array([0.1, 0.5, 1.0, 0.9, 0.5, 0.2, 0.0])).tolist() == [0, 0, 0, 0, 0, 1, 1]
