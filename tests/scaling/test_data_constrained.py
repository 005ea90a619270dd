"""The data-constrained fit: D' closed forms, recovery of known R_D* from noisy synthetic studies, the
'not determined' verdicts, bad input refused in one line, the CLI's JSON and figure."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scaling.cli import main
from scaling.data_constrained import (
    R_BOUNDS,
    BaseLaw,
    check_input,
    effective_data,
    fit_base,
    fit_data_constrained,
    synthetic_results,
)
from scaling.errors import ScalingInputError


def test_effective_data_closed_forms():
    u = 1000.0
    assert effective_data(u, u, 15.0) == pytest.approx(u)  # one epoch: D' = D
    # R_D = R*: D' = U (1 + R* (1 - 1/e))
    assert effective_data(u, u * 16, 15.0) == pytest.approx(u * (1 + 15 * (1 - math.exp(-1))))
    assert effective_data(u, u * 1e9, 15.0) == pytest.approx(u * 16)  # saturates at U (1 + R*)
    assert effective_data(u, u * 64, math.inf) == u * 64  # fresh data
    # small R_D: D' ~ D (1 - R_D^2 / (2 R* (1 + R_D)))
    r = 0.01
    assert effective_data(u, u * (1 + r), 15.0) == pytest.approx(u * (1 + r - r * r / 30), rel=1e-9)


def test_base_law_recovered_exactly_without_noise():
    true = BaseLaw(E=1.7, A=0.0, B=40.0, alpha=0.0, beta=0.27, n_sizes=1)
    d = np.geomspace(1e4, 1e7, 7)
    fit, rss = fit_base(np.full(7, 1e5), d, true.loss(1e5, d))
    assert (fit.E, fit.B, fit.beta) == pytest.approx((1.7, 40.0, 0.27), rel=1e-4) and rss < 1e-12
    # several sizes: the full L(N, D)
    true = BaseLaw(E=1.5, A=300.0, B=40.0, alpha=0.4, beta=0.27, n_sizes=3)
    n = np.repeat([1e4, 1e5, 1e6], 4)
    d = np.tile(np.geomspace(1e5, 1e7, 4), 3)
    fit, rss = fit_base(n, d, true.loss(n, d))
    assert (fit.E, fit.A, fit.B, fit.alpha, fit.beta) == pytest.approx(
        (1.5, 300.0, 40.0, 0.4, 0.27), rel=1e-3
    )


def test_known_r_star_recovered_from_noisy_losses():
    """Losses drawn from the law (noise 0.005 nats) for R_D* = 15 and 100, 8 noise draws: every estimate
    within 25% (AR within 5%), each a result, and the 95% intervals covering the truth in >= 6 of 8."""
    covered = {"ar": 0, "mdlm": 0}
    for seed in range(8):
        fits = fit_data_constrained(
            synthetic_results({"ar": 15.0, "mdlm": 100.0}, seed=seed), n_boot=60, seed=seed
        )
        for fam, true, rel in (("ar", 15.0, 0.05), ("mdlm", 100.0, 0.25)):
            f = fits[fam]
            assert f.determined, f.reasons
            assert f.r_star == pytest.approx(true, rel=rel)
            assert f.interval["lo"] <= f.r_star <= f.interval["hi"]
            assert f.base.beta == pytest.approx(0.3, abs=0.03)
            covered[fam] += f.interval["lo"] <= true <= f.interval["hi"]
            d = f.to_dict()
            assert d["R_D_star"] == f.r_star and d["status"] == "ok"
    assert min(covered.values()) >= 6, covered  # percentile intervals undercover a little (README)


def test_repetition_as_good_as_fresh_is_not_determined():
    """R_D* = 1e6 (repeats worth fresh data): the optimum sits at the upper bound, and no number is given."""
    df = synthetic_results({"mdlm": 1e6}, noise=0.005, seed=0)
    f = fit_data_constrained(df, n_boot=30)["mdlm"]
    assert not f.determined and f.to_dict()["R_D_star"] is None
    assert any("bound" in r for r in f.reasons)
    assert f.to_dict()["status"] == "not determined"


def test_noise_larger_than_the_effect_is_not_determined():
    df = synthetic_results({"mdlm": 300.0}, noise=0.08, seed=3)
    f = fit_data_constrained(df, n_boot=40)["mdlm"]
    assert not f.determined and any("interval" in r or "bound" in r for r in f.reasons)


def test_without_bootstrap_there_is_no_result():
    f = fit_data_constrained(synthetic_results({"ar": 15.0}), n_boot=0)["ar"]
    assert f.r_star == pytest.approx(15.0, rel=0.1) and not f.determined
    assert f.reasons == ["no bootstrap interval (run with --bootstrap N)"]


def _frame(**cols):
    n = len(next(iter(cols.values())))
    return pd.DataFrame({"name": [f"r{i}" for i in range(n)], "family": "ar", "params": 1e5, **cols})


def test_bad_input_refused_in_one_line():
    with pytest.raises(ScalingInputError, match=r"missing column 'unique_tokens'") as e:
        check_input(_frame(tokens=[1e5], loss=[3.0]), "res.csv")
    assert "\n" not in str(e.value)
    with pytest.raises(
        ScalingInputError, match=r"res.csv: row 3 \(name=r1\): tokens \(5000\) < unique_tokens \(10000\)"
    ):
        check_input(_frame(tokens=[1e4, 5e3], unique_tokens=[1e4, 1e4], loss=[3.0, 3.1]), "res.csv")
    with pytest.raises(
        ScalingInputError, match=r"row 2 \(name=r0\): unique_tokens must be a positive number"
    ):
        check_input(_frame(tokens=[1e4], unique_tokens=[float("nan")], loss=[3.0]), "res.csv")
    with pytest.raises(ScalingInputError, match=r"single-epoch rows .* needs at least 4 rows"):
        fit_data_constrained(synthetic_results({"ar": 15.0}, ladder=(1e5, 1e6)), n_boot=0)
    with pytest.raises(ScalingInputError, match=r"0 repeated rows"):
        fit_data_constrained(synthetic_results({"ar": 15.0}, repeated=()), n_boot=0)


def test_cli_writes_json_and_figure(tmp_path, capsys):
    csv = tmp_path / "results.csv"
    synthetic_results({"mdlm": 300.0, "ar": 15.0}, seed=0).to_csv(csv, index=False)
    out = tmp_path / "fit.json"
    rc = main(["fit", str(csv), "--form", "data-constrained", "--json", str(out), "--plot", str(tmp_path / "p"),
               "--bootstrap", "40"])  # fmt: skip
    assert rc == 0
    doc = json.loads(out.read_text())
    assert doc["form"] == "data-constrained" and set(doc["families"]) == {"mdlm", "ar"}
    ar = doc["families"]["ar"]
    assert ar["status"] == "ok" and ar["R_D_star"] == pytest.approx(15.0, rel=0.15)
    assert ar["R_D_star_interval"]["lo"] < 15.0 < ar["R_D_star_interval"]["hi"]
    assert (tmp_path / "p" / "data_constrained.png").stat().st_size > 10_000
    assert "ar: R_D* = " in capsys.readouterr().out
    # a missing column: exit 2 and one line naming it
    pd.read_csv(csv).drop(columns="unique_tokens").to_csv(csv, index=False)
    assert main(["fit", str(csv), "--form", "data-constrained"]) == 2
    err = capsys.readouterr().err.strip()
    assert "missing column 'unique_tokens'" in err and "\n" not in err
    assert main(["fit", str(csv)]) == 2 and "--approach 1|2|3 or --form" in capsys.readouterr().err


def test_bounds_are_what_the_docs_say():
    assert R_BOUNDS == (1e-2, 1e4)


NB_DIR = Path(__file__).resolve().parents[2] / "notebooks"


def test_notebook_is_stripped_and_executes(monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(NB_DIR / "data_constrained.ipynb", as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, "outputs not stripped"
    monkeypatch.setenv("MDM_BOOTSTRAP", "20")
    monkeypatch.delenv("MDM_RESULTS", raising=False)  # the shipped synthetic example
    NotebookClient(
        nb, kernel_name="python3", timeout=300, resources={"metadata": {"path": str(NB_DIR)}}
    ).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "kernel python:" in text
    assert [o for o in outputs if "image/png" in o.get("data", {})]
    tables = "".join(o.get("data", {}).get("text/plain", "") for o in outputs)
    assert "R_D_star" in tables and "passes" in tables


def test_example_file_matches_its_generator():
    shipped = pd.read_csv(NB_DIR / "data_constrained_example.csv")
    regenerated = synthetic_results(seed=0)
    assert list(shipped.columns) == list(regenerated.columns)
    assert shipped["name"].tolist() == regenerated["name"].tolist()
    for c in ("params", "tokens", "unique_tokens", "loss"):
        assert np.allclose(shipped[c], regenerated[c], rtol=1e-12)


def test_rows_above_one_epoch_of_their_subset_are_left_out_and_named(tmp_path):
    """A small model memorising a small subset can end far above L(N, U), the law's worst case: that row is
    left out of stage 2 (named in a warning), and R_D* is recovered from the others."""
    df = synthetic_results({"ar": 15.0}, seed=0)
    worst = df.index[df["name"] == "ar-U32768-e64"][0]
    df.loc[worst, "loss"] = 5.6
    f = fit_data_constrained(df, n_boot=30)["ar"]
    assert f.excluded == ["ar-U32768-e64"] and f.n_repeated == 7
    assert f.r_star == pytest.approx(15.0, rel=0.05) and f.determined
    assert any("ar-U32768-e64" in w and "left out" in w for w in f.warnings)
    assert f.to_dict()["excluded_rows"] == ["ar-U32768-e64"]
    from scaling.data_constrained import plot_data_constrained
    from scaling.plots import save

    save(plot_data_constrained(df, {"ar": f}), tmp_path, "dc")  # the clipped marker draws
    # every repeated row above its ceiling: no R_D*, and the reason says so
    rep = df["tokens"] > df["unique_tokens"] * 1.05
    df.loc[rep, "loss"] = 6.0
    f = fit_data_constrained(df, n_boot=30)["ar"]
    assert not f.determined and f.to_dict()["R_D_star"] is None
    assert f.reasons == ["only 0 repeated rows within the law's range (R_D* needs 2)"]


def test_base_law_with_e_at_zero_is_warned_about():
    base = BaseLaw(E=-0.5, A=0.0, B=8.0, alpha=0.0, beta=0.08, n_sizes=1)  # the fit clamps E at 0
    f = fit_data_constrained(synthetic_results({"ar": 15.0}, base=base, noise=0.001), n_boot=0)["ar"]
    assert any("E is 0 (its bound)" in w for w in f.warnings)
    g = fit_data_constrained(synthetic_results({"ar": 15.0}), n_boot=0)["ar"]  # E = 2: no such warning
    assert not any("E is 0" in w for w in g.warnings)
