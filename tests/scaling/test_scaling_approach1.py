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
