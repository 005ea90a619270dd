"""The report refuses nonsense: each check of scaling.checks on a synthetic input built to trip it,
the Approach-2 point fit/bootstrap consistency (issue 12: a = 1.07 outside [0.45, 0.93]), the
two-family comparison at the reference's smallest budget, and what the figures show."""

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PathCollection

from scaling import checks, plots
from scaling.approach2 import fit_approach2
from scaling.approach3 import fit_approach3
from scaling.bootstrap import bootstrap_approach2
from scaling.cli import main
from scaling.forms import LossParams
from scaling.gap import compare_approach3, multiplier_arrays
from scaling.powerlaw import PowerLaw
from scaling.report import make_report
from scaling.results import validate
from scaling.synthetic import isoflop_sweep

GRID = {"a": [0, 5, 10], "b": [0, 5, 10], "e": [-1, 0, 1], "alpha": [0.3, 0.6], "beta": [0.3, 0.6]}
AR = LossParams(E=2.0, A=60.0, B=200.0, alpha=0.35, beta=0.30)
MDLM = LossParams(E=2.1, A=60.0, B=320.0, alpha=0.35, beta=0.30)


# --- the demo-like AR sweep of issue 12: widths 16-48, heads of 8, vocabulary 256, 64 tokens ----
def _demo_like(params, seed, noise, budgets=(2e11, 5e11, 1e12), family="ar"):
    """5 depths per budget with the demo's FLOP counting (head and attention FLOPs are not in the
    non-embedding N, so FLOPs per token / N falls from 14 to 7.8 over the sizes)."""
    rng = np.random.default_rng(seed)
    rows = []
    for c in budgets:
        for depth in (2, 3, 4, 5, 6):
            w = 8 * depth
            n = 12 * depth * w * w
            fpt = 3 * (2 * (n + 256 * w) + 4 * depth * w * 64)
            d = int(np.ceil(c / (fpt * 2048))) * 2048
            loss = float(params.loss(n, d)) * float(np.exp(noise * rng.standard_normal()))
            rows.append(dict(name=f"{family}_{c:.0e}_{depth}", family=family, params=n, tokens=d, flops=fpt * d,
                             budget=c, loss=loss))  # fmt: skip
    return pd.DataFrame(rows)


DEMO_AR = LossParams(E=1.2, A=25.0, B=200.0, alpha=0.35, beta=0.30)


def test_approach2_point_estimate_lies_inside_its_bootstrap_interval():
    # before the fix, the point fit used the 2e11 budget's vertex (extrapolated below the smallest
    # size) while the bootstrap dropped it in the resamples where it was not bracketed:
    # a = 0.86 with a 95% interval [-1.36, 0.54] on this sweep
    df = _demo_like(DEMO_AR, seed=20, noise=0.02)
    fit = fit_approach2(df, quiet=True)
    assert [b.used for b in fit.budgets] == [b.bracketed and b.coeffs[2] > 0 for b in fit.budgets]
    bootstrap_approach2(fit, df, n_boot=200, seed=0)
    for k in ("a", "b", "G"):
        iv = fit.intervals[k]
        assert iv["lo"] <= getattr(fit, k) <= iv["hi"], k
    # every successful draw holds a vertex at exactly the budgets the point fit used
    ok = np.isfinite(fit.samples["a"])
    used = np.array([b.used for b in fit.budgets])
    assert np.isfinite(fit.samples["n_opt"][ok][:, used]).all()
    assert np.isnan(fit.samples["n_opt"][:, ~used]).all()
    assert fit.bootstrap["n_failed"] == int((~ok).sum()) < 200


def test_a_resample_that_loses_a_used_budget_fails_instead_of_refitting_on_fewer():
    # noisy, shallow parabolas: a resample's vertex often leaves some budget's sampled sizes
    df = isoflop_sweep(AR, [1e12, 4e12, 1.6e13], sizes_per_budget=4, span=0.3, noise=0.03, seed=1)
    fit = fit_approach2(df, quiet=True)
    bootstrap_approach2(fit, df, n_boot=100, seed=0)
    ok = np.isfinite(fit.samples["a"])
    assert 0 < fit.bootstrap["n_failed"] == int((~ok).sum()) < 100
    assert fit.bootstrap["failed_share"] == pytest.approx((~ok).mean())
    assert sum(fit.bootstrap["failed_by_budget"]) >= fit.bootstrap["n_failed"]
    share = checks.check_allocation_fit(
        dataclasses.replace(fit, bootstrap={**fit.bootstrap, "n_failed": 51}), []
    )
    assert any("51 of 100 bootstrap resamples failed" in r for r in share)


def test_a_plus_b_follows_the_flop_convention():
    # noise-free demo-like sweep: FLOPs per token is not proportional to N, so a + b != 1, and the
    # relation a + b = 1 + a(1 - s) holds (s: slope of ln FLOPs/token against ln N)
    df = _demo_like(DEMO_AR, seed=0, noise=0.0, budgets=(2e11, 5e11, 1e12, 2e12))
    fit = fit_approach2(df, quiet=True)
    d = fit.to_dict()
    assert 0.7 < d["flops_per_token_slope"] < 0.9
    assert d["a_plus_b"] > 1.02
    assert d["a_plus_b"] == pytest.approx(d["a_plus_b_expected"], abs=0.02)
    assert not [r for r in checks.check_allocation_fit(fit, np.array([2e11, 1e12])) if "a + b" in r]
    # D_opt from another convention (b shifted by 0.3): flagged
    bad = dataclasses.replace(fit, d_law=PowerLaw(fit.d_law.coef, fit.d_law.exponent + 0.3, 0.0, 4))
    assert [r for r in checks.check_allocation_fit(bad, np.array([2e11, 1e12])) if "a + b" in r]
    # under C = 6ND (s = 1) the same check expects a + b = 1
    six = isoflop_sweep(AR, [1e12, 4e12, 1.6e13], sizes_per_budget=7, span=0.6)
    f6 = fit_approach2(six, quiet=True)
    assert f6.flops_per_token_slope == pytest.approx(1.0, abs=1e-12)
    assert f6.a + f6.b == pytest.approx(1.0, abs=1e-9)


# --- checks of an Approach-3 fit, each tripped by parameters built for it --------------------------
@pytest.fixture(scope="module")
def a3_fit():
    df = isoflop_sweep(AR, [1e12, 4e12, 1.6e13, 6.4e13], sizes_per_budget=5, span=0.6, noise=0.0)
    return fit_approach3(df["params"], df["tokens"], df["loss"], grid=GRID, quiet=True), df


BUDGETS = np.array([1e12, 6.4e13])


def _with(fit, **kw):
    p = dataclasses.replace(fit.params, **kw)
    return dataclasses.replace(fit, params=p, theta=p.to_log(), warnings=[], intervals=None, bootstrap=None)


def test_a_clean_fit_passes(a3_fit):
    fit, df = a3_fit
    assert fit.params.alpha == pytest.approx(AR.alpha, rel=1e-3)
    assert checks.check_approach3(fit, BUDGETS, float(df["loss"].min())) == []
    assert checks.verdict([]) == {"status": "ok", "reasons": [], "frontier_usable": True}


@pytest.mark.parametrize(
    "change, message",
    [
        ({"alpha": -0.1}, "non-positive exponent is not a law"),
        ({"beta": -0.2}, "non-positive exponent is not a law"),
        ({"E": 1e-22}, "irreducible term vanished"),
        ({"A": 1e-6, "B": 1e6}, "below one parameter"),  # G ~ 1e-20: N_opt < 1 at these budgets
    ],
)
def test_approach3_checks_trip(a3_fit, change, message):
    fit, df = a3_fit
    reasons = checks.check_approach3(_with(fit, **change), BUDGETS, float(df["loss"].min()))
    assert any(message in r for r in reasons), reasons
    assert checks.verdict(reasons)["status"] == "flagged"


def test_negative_or_complex_G_is_not_reported():
    a, b, G = 0.5, 0.5, float("nan")  # (alpha A / (beta B))^(1/(alpha+beta)) with beta < 0: no real root
    reasons = checks._allocation_reasons(a, b, G, np.array([]), np.array([]))
    assert any("G = nan is not a positive finite number" in r for r in reasons)
    assert checks._allocation_reasons(0.5, 0.5, -2.0, np.array([]), np.array([]))
    assert any(
        "a = -0.1 <= 0" in r for r in checks._allocation_reasons(-0.1, 1.1, 1.0, np.ones(1), np.ones(1))
    )


def test_ill_determined_diagnosis_flags(a3_fit):
    fit, df = a3_fit
    sick = dataclasses.replace(fit, warnings=["ill-determined Approach-3 fit: 900 of 4500 starts ..."])
    assert any("ill-determined" in r for r in checks.check_approach3(sick, BUDGETS, 2.0))


def test_point_outside_its_interval_and_wide_intervals_are_flagged(a3_fit):
    fit, df = a3_fit
    p = fit.params
    iv = {k: {"lo": v * 0.99, "hi": v * 1.01} for k, v in p.as_dict().items()}
    assert checks.check_approach3(dataclasses.replace(fit, intervals=iv), BUDGETS, 2.0) == []
    iv_out = {**iv, "alpha": {"lo": p.alpha * 1.1, "hi": p.alpha * 1.2}}
    r = checks.check_approach3(dataclasses.replace(fit, intervals=iv_out), BUDGETS, 2.0)
    assert any("alpha = 0.35 lies outside its own bootstrap interval [0.385, 0.42]" in x for x in r), r
    iv_wide = {**iv, "a": {"lo": -0.2, "hi": 0.9}}
    r = checks.check_approach3(dataclasses.replace(fit, intervals=iv_wide), BUDGETS, 2.0)
    assert any("interval of a, [-0.2, 0.9], is wider than 0.5" in x for x in r), r


def test_only_wide_exponents_leave_the_frontier_usable_for_the_comparison():
    from scaling.gap import _blockers

    wide = checks.width_reasons({"a": {"lo": 0.1, "hi": 0.9}, "b": {"lo": 0.3, "hi": 0.5}})
    assert len(wide) == 1 and "interval of a" in wide[0]
    v = checks.verdict(wide, allocation_only=wide)
    assert v["status"] == "flagged" and v["frontier_usable"]
    assert _blockers("ar", {"approach3": v}, "approach3", object()) == []
    v = checks.verdict([*wide, "E vanished"], allocation_only=wide)
    assert not v["frontier_usable"]
    assert _blockers("ar", {"approach3": v}, "approach3", object())[0].startswith("ar approach3 flagged")
    assert (
        "skipped"
        in _blockers("ar", {"approach3": checks.verdict([], skipped="2 points")}, "approach3", None)[0]
    )


def test_too_many_failed_resamples_are_flagged(a3_fit):
    fit, _ = a3_fit
    r = checks.check_approach3(dataclasses.replace(fit, bootstrap={"n": 100, "n_failed": 51}), BUDGETS, 2.0)
    assert any("51 of 100 bootstrap resamples failed" in x for x in r)
    assert (
        checks.check_approach3(dataclasses.replace(fit, bootstrap={"n": 100, "n_failed": 50}), BUDGETS, 2.0)
        == []
    )


def test_ratio_checks():
    assert checks.ratio_reasons(5.0, [4.0, 6.0], "multiplier") == []
    assert "spans 1.3 decades" in checks.ratio_reasons(5.0, [1.0, 20.0], "multiplier")[0]
    assert "outside its own bootstrap interval" in checks.ratio_reasons(3e-7, [1.0, 2.0], "multiplier")[0]
    assert "undetermined" in checks.ratio_reasons(5.0, [1.0, float("inf")], "multiplier")[0]
    assert "not a positive finite number" in checks.ratio_reasons(float("nan"), None, "multiplier")[0]


# --- the comparison -------------------------------------------------------------------------------
def test_multiplier_recovers_the_truth_and_flags_extrapolation():
    b = [1e12, 4e12, 1.6e13, 6.4e13]
    sweeps = {f: isoflop_sweep(p, b, sizes_per_budget=5, span=0.6) for f, p in (("mdlm", MDLM), ("ar", AR))}
    fits = {
        f: fit_approach3(d["params"], d["tokens"], d["loss"], grid=GRID, quiet=True)
        for f, d in sweeps.items()
    }
    out = compare_approach3("mdlm", "ar", fits["mdlm"], fits["ar"], np.array(b), 1e12, [])
    m = out["multiplier"]
    true_m = multiplier_arrays(MDLM.to_log()[None], AR.to_log()[None], np.array([1e12]))[0, 0]
    assert m["status"] == "flagged"  # no bootstrap draws: no interval, so not a result
    assert m["value"] is None and m["diagnostic"]["value"] == pytest.approx(true_m, rel=1e-3)
    assert "no bootstrap draws" in m["reasons"][0]
    true_r = AR.n_opt(1e12) / MDLM.n_opt(1e12)
    assert out["nopt_ratio"]["diagnostic"]["value"] == pytest.approx(true_r, rel=1e-3)
    # the family sampled only at budgets below the compute where it reaches the reference: extrapolation
    ext = compare_approach3("mdlm", "ar", fits["mdlm"], fits["ar"], np.array([1e12, 2e12]), 1e12, [])
    assert ext["multiplier"]["status"] == "extrapolation" and ext["multiplier"]["value"] is None
    assert "outside mdlm's sampled budgets" in ext["multiplier"]["reasons"][0]


@pytest.fixture(scope="module")
def two_family_report(tmp_path_factory):
    b = [1e12, 4e12, 1.6e13, 6.4e13]
    df = pd.concat(
        [
            isoflop_sweep(MDLM, b, sizes_per_budget=5, span=0.6, noise=0.005, seed=1, family="mdlm"),
            isoflop_sweep(AR, b, sizes_per_budget=5, span=0.6, noise=0.005, seed=2, family="ar"),
        ],
        ignore_index=True,
    )
    out = tmp_path_factory.mktemp("rep")
    doc = make_report(validate(df), out, n_boot=60, families=["mdlm", "ar"], a3_options={"grid": GRID},
                      progress=lambda s: None)  # fmt: skip
    return doc, out


def test_comparison_is_reported_with_intervals_when_everything_passes(two_family_report):
    doc, out = two_family_report
    for f in ("mdlm", "ar"):
        for k in ("approach2", "approach3"):
            assert doc["families"][f][k]["status"] == "ok", doc["families"][f][k]["reasons"]
    c = doc["comparison"]
    true_m = float(multiplier_arrays(MDLM.to_log()[None], AR.to_log()[None], np.array([1e12]))[0, 0])
    for key, truth in (("multiplier", true_m), ("nopt_ratio", AR.n_opt(1e12) / MDLM.n_opt(1e12))):
        e = c[key]
        assert e["status"] == "ok" and e["method"] == "approach3"
        lo, hi = e["ci95"]
        assert lo <= e["value"] <= hi and np.log10(hi / lo) < 1
        assert e["value"] == pytest.approx(truth, rel=0.25)
    assert c["by_method"]["approach2"]["multiplier"]["status"] == "ok"
    saved = json.loads((out / "fit.json").read_text())
    assert saved["comparison"]["multiplier"]["value"] == c["multiplier"]["value"]
    md = (out / "report.md").read_text()
    assert "## Comparison" in md and f"| {c['multiplier']['value']:.3g} |" in md


def test_a_flagged_family_blocks_the_comparison_and_its_numbers(tmp_path):
    # AR's Approach 3 fitted on data without an irreducible floor (E -> 0) is flagged; nothing
    # that rests on it is printed or plotted, every family's runs still are
    b = [1e12, 4e12, 1.6e13]
    floorless = LossParams(E=1e-12, A=60.0, B=200.0, alpha=0.35, beta=0.30)
    df = pd.concat(
        [
            isoflop_sweep(MDLM, b, sizes_per_budget=5, span=0.6, noise=0.005, seed=1, family="mdlm"),
            isoflop_sweep(floorless, b, sizes_per_budget=5, span=0.6, noise=0.0, family="ar"),
        ],
        ignore_index=True,
    )
    grid = {**GRID, "e": [-30, -1, 0]}
    doc = make_report(validate(df), tmp_path, n_boot=20, families=["mdlm", "ar"], a3_options={"grid": grid},
                      progress=lambda s: None)  # fmt: skip
    a3 = doc["families"]["ar"]["approach3"]
    assert a3["status"] == "flagged" and any("vanished" in r for r in a3["reasons"]), a3["reasons"]
    e = doc["comparison"]["by_method"]["approach3"]["multiplier"]
    assert e["status"] == "invalid" and e["value"] is None and e["ci95"] is None
    assert "ar approach3 flagged" in e["reasons"][0]
    assert "skipped" in doc["gap"] and "multiplier.png" not in doc["figures"]
    assert "contours_ar.png" not in doc["figures"] and "contours_mdlm.png" in doc["figures"]
    assert all("a3_n_opt" not in r for r in doc["families"]["ar"]["tokens_per_param"])
    md = (tmp_path / "report.md").read_text()
    assert "**Flagged — not a result:**" in md and "allocation a, b, G is withheld" in md


def test_isoflop_figure_shows_every_family_and_parabolas_only_where_valid():
    b = [1e12, 4e12, 1.6e13]
    ok = isoflop_sweep(AR, b, sizes_per_budget=5, span=0.6, family="ar")
    one = isoflop_sweep(MDLM, [1e12], sizes_per_budget=5, span=0.6, family="mdlm")  # Approach 2 impossible
    fit = fit_approach2(ok, quiet=True)
    fig = plots.plot_isoflop({"mdlm": (one, None), "ar": (ok, fit), "ar2": (ok, fit)}, valid={"ar2": False})
    ax_m, ax_a, ax_f = fig.axes[:3]

    def points(ax):
        return sum(len(c.get_offsets()) for c in ax.collections if isinstance(c, PathCollection))

    assert points(ax_m) == 5 and not ax_m.lines  # runs, no parabola
    assert points(ax_a) == 15 + 3 and len(ax_a.lines) == 3  # runs + vertices, one parabola per budget
    assert points(ax_f) == 15 and not ax_f.lines  # flagged: runs only
    colours = {tuple(np.round(ax.collections[0].get_facecolor()[0], 3)) for ax in (ax_m, ax_a)}
    assert len(colours) == 2  # the families are told apart by colour


# --- the command line -----------------------------------------------------------------------------
def test_report_on_one_row_exits_2_with_one_line(tmp_path, capsys):
    p = tmp_path / "one.csv"
    pd.DataFrame([{"name": "r", "family": "ar", "params": 1e4, "tokens": 1e6, "loss": 3.0}]).to_csv(
        p, index=False
    )
    out = tmp_path / "rep"
    assert main(["report", str(p), "--out", f"{out}/", "--bootstrap", "0", "--no-plots"]) == 2
    cap = capsys.readouterr()
    errors = [line for line in cap.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "every fit was skipped" in errors[0]
    assert f"wrote {out}/report.md" in cap.out and "//" not in cap.out


def test_multiplier_curve_rows_carry_their_own_status():
    from scaling.report import _row_status

    assert _row_status({"C": 1e12, "multiplier": 5.0, "lo": 4.0, "hi": 6.0})["status"] == "ok"
    wide = _row_status({"C": 1e12, "multiplier": 3e-7, "lo": 1e-16, "hi": 2e16})  # issue 12's printout
    assert wide["status"] == "flagged" and any("decades" in r for r in wide["reasons"])
    ext = _row_status({"C": 1e12, "multiplier": 5.0, "lo": 4.0, "hi": 6.0, "extrapolation": True})
    assert ext["status"] == "extrapolation"


def test_allocation_laws_beyond_the_sampled_budgets_are_drawn_dotted():
    df = isoflop_sweep(AR, [1e18, 1e19, 1e20], sizes_per_budget=6, noise=0.0)
    fit = fit_approach2(df, quiet=True)
    fig = plots.plot_allocation({}, {"ar": fit}, c_range=(1e16, 1e22))
    ax = fig.axes[0]
    solid = [ln for ln in ax.lines if ln.get_linestyle() == "--"]
    dotted = [ln for ln in ax.lines if ln.get_linestyle() == ":"]
    assert solid and dotted and "beyond the sampled budgets" in ax.get_title()
    assert max(solid[0].get_xdata()) <= 1e20 * 1.01 and min(solid[0].get_xdata()) >= 1e18 / 1.01
    assert np.isnan(
        dotted[0].get_ydata()[(dotted[0].get_xdata() > 1.01e18) & (dotted[0].get_xdata() < 0.99e20)]
    ).all()
