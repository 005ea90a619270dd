"""Sizes placed per budget around a stated N_opt guess, per-family budgets, the plan's warnings."""

from __future__ import annotations

import itertools
import math

import pytest

from mdm.sweep.plan import build_plan, format_plan, nopt_guess, place_sizes
from mdm.sweep.spec import NoptGuess, SweepError, load_spec

from .conftest import write_spec

SHAPES = ["1x16", "1x32", "2x32", "3x32", "2x64", "3x64", "4x64"]


def _brute(params, guess, k, span):
    targets = [math.log10(guess) - span + 2 * span * i / (k - 1) for i in range(k)]
    best = min(
        itertools.combinations(range(len(params)), k),
        key=lambda c: sum(abs(math.log10(params[j]) - t) for j, t in zip(c, targets)),
    )
    cost = sum(abs(math.log10(params[j]) - t) for j, t in zip(best, targets))
    return best, cost


@pytest.mark.parametrize("guess", [3e3, 2e4, 1e5, 7e5, 1e7])
@pytest.mark.parametrize("k", [2, 3, 5])
def test_place_sizes_is_the_optimal_ordered_assignment(guess, k):
    params = [3e3, 6e3, 1.2e4, 2.5e4, 3.7e4, 8.3e4, 1.5e5, 2e5, 3.3e5, 7.9e5]
    got = place_sizes(params, guess, k, 0.6)
    assert len(got) == k and got == sorted(set(got))
    targets = [math.log10(guess) - 0.6 + 1.2 * i / (k - 1) for i in range(k)]
    cost = sum(abs(math.log10(params[j]) - t) for j, t in zip(got, targets))
    _, best = _brute(params, guess, k, 0.6)
    assert cost == pytest.approx(best, abs=1e-12)


def test_nopt_guess_power_law():
    g = NoptGuess(at=1e12, params=7e4, exponent=0.5)
    assert nopt_guess(g, 1e12) == pytest.approx(7e4)
    assert nopt_guess(g, 1e14) == pytest.approx(7e5)


def _spec(tmp_path, **iso):
    base = {
        "shapes": SHAPES,
        "n_opt": {"at": 1e10, "params": 2.5e4, "exponent": 0.5},
        "sizes_per_budget": 3,
        "span_decades": 0.4,
        "min_steps": 2,
        "families": {"ar": {"budgets": [1e9, 4e9]}, "mdlm": {"budgets": [4e9, 1.6e10, 6.4e10]}},
    }
    base.update(iso)
    return load_spec(write_spec(tmp_path / "s.yaml", axes={"objective.name": ["mdlm", "ar"]}, isoflop=base))


def test_per_family_budgets_and_sizes_around_the_guess(tmp_path):
    spec = _spec(tmp_path)
    plan = build_plan(spec)
    by = {f: sorted({r.budget for r in plan.runs if r.family == f}) for f in ("ar", "mdlm")}
    assert by == {"ar": [1e9, 4e9], "mdlm": [4e9, 1.6e10, 6.4e10]}
    for budget in {r.budget for r in plan.runs}:
        for fam in ("ar", "mdlm"):
            rs = [r for r in plan.runs if r.budget == budget and r.family == fam]
            if not rs:
                continue
            assert len(rs) == 3
            guess = nopt_guess(spec.isoflop.n_opt, budget)
            logs = sorted(math.log10(r.params_non_embedding) for r in rs)
            # the window straddles the guess: the smallest below it, the largest above it
            assert logs[0] < math.log10(guess) < logs[-1]
            for r in rs:  # the shapes asked for, width and depth as given
                assert f"{r.depth}x{r.d_model}" in SHAPES
    # the larger budget gets larger models (the window moves with the guess)
    med = {
        b: sorted(r.params_non_embedding for r in plan.runs if r.family == "mdlm" and r.budget == b)[1]
        for b in by["mdlm"]
    }
    assert med[4e9] < med[1.6e10] < med[6.4e10]
    text = format_plan(plan)
    assert "isoFLOP ar: budgets ['1e+09', '4e+09']" in text and "isoFLOP mdlm" in text
    assert "tok/param" in text and "steps" in text and "precision:" in text


def test_warnings_band_and_window_cut_short(tmp_path):
    spec = _spec(tmp_path, tokens_per_param=[50, 60])
    plan = build_plan(spec)
    band = [w for w in plan.warnings if "outside the band [50, 60]" in w]
    assert band and len(band) == sum(1 for r in plan.runs if not 50 <= r.tokens_per_param <= 60)
    assert "WARNING" in format_plan(plan)
    # a guess far above every candidate: the window is cut short at the large end
    spec = _spec(tmp_path, n_opt={"at": 1e10, "params": 1e7, "exponent": 0.5})
    plan = build_plan(spec)
    assert any("short of the window" in w and "large end" in w for w in plan.warnings)


def test_below_min_steps_dropped_and_listed(tmp_path):
    plan = build_plan(_spec(tmp_path, min_steps=40))
    assert plan.dropped and all("< min_steps=40" in d for d in plan.dropped)
    assert all(r.steps >= 40 for r in plan.runs)
    assert "dropped" in format_plan(plan)


@pytest.mark.parametrize(
    "iso, match",
    [
        ({"shapes": ["2by64"]}, "not DEPTHxWIDTH"),
        ({"depths": [1, 2]}, "exactly one of depths or shapes"),
        ({"families": {"sedd": {"budgets": [1e9]}}}, r"families.sedd: not a value of axes.objective.name"),
        ({"families": {"ar": {"budgets": [1e9], "bugdets": [1]}}}, "bugdets"),
        ({"sizes_per_budget": 9}, "sizes_per_budget=9 must be between 2 and the 7 candidate sizes"),
        ({"n_opt": {"at": 1e10, "params": 0.5}}, r"n_opt needs at > 0, params >= 1"),
        ({"tokens_per_param": [60, 50]}, r"tokens_per_param must be \[lo, hi\]"),
        ({"families": {"ar": {"budgets": [1e9]}}}, "gives no budgets for mdlm"),
    ],
)
def test_bad_placement_specs(tmp_path, iso, match):
    with pytest.raises(SweepError, match=match):
        _spec(tmp_path, **iso)


def test_one_precision_per_sweep(tmp_path):
    with pytest.raises(SweepError, match="one precision per sweep"):
        load_spec(write_spec(tmp_path / "s.yaml", axes={"train.precision": ["32-true", "bf16-mixed"]}))


def test_family_shapes(tmp_path):
    fam = {
        "ar": {"budgets": [1e9, 4e9]},
        "mdlm": {"budgets": [4e9, 1.6e10], "shapes": ["1x64", "2x64", "3x64"]},
    }
    plan = build_plan(_spec(tmp_path, families=fam))
    assert {f"{r.depth}x{r.d_model}" for r in plan.runs if r.family == "mdlm"} <= {"1x64", "2x64", "3x64"}
    assert any(r.d_model < 64 for r in plan.runs if r.family == "ar")
    assert "shapes ['1x64', '2x64', '3x64']" in format_plan(plan)
    with pytest.raises(SweepError, match="between 2 and the 2 candidate sizes"):
        _spec(tmp_path, families={**fam, "mdlm": {"budgets": [4e9], "shapes": ["1x64", "2x64"]}})


def test_family_overrides(tmp_path):
    fam = {"ar": {"budgets": [1e9], "overrides": ["train.global_batch=4"]}, "mdlm": {"budgets": [4e9]}}
    plan = build_plan(_spec(tmp_path, families=fam))
    ar = [r for r in plan.runs if r.family == "ar"]
    md = [r for r in plan.runs if r.family == "mdlm"]
    assert all(r.cfg.train.global_batch == 4 for r in ar) and all(r.cfg.train.global_batch == 8 for r in md)
    for r in ar:  # steps follow the family's own batch: 4 sequences of 32 tokens
        assert r.steps == math.ceil(r.budget / (r.flops_per_token * 4 * 32))
    assert "overrides ['train.global_batch=4']" in format_plan(plan)
    for bad, match in [
        (["train.global_bach=4"], "not a config key"),
        (["model.depth=3"], "not a key the plan sets"),
        (["train.precision=bf16-mixed"], "not a key the plan sets"),
    ]:
        with pytest.raises(SweepError, match=match):
            _spec(tmp_path, families={**fam, "ar": {"budgets": [1e9], "overrides": bad}})


def test_family_sizes_per_budget_and_span(tmp_path):
    fam = {
        "ar": {"budgets": [1e9, 4e9]},
        "mdlm": {"budgets": [4e9, 1.6e10], "sizes_per_budget": 5, "span_decades": 0.9},
    }
    plan = build_plan(_spec(tmp_path, families=fam))
    per_budget = {}
    for r in plan.runs:
        per_budget.setdefault((r.family, r.budget), []).append(r)
    assert {len(v) for (f, _), v in per_budget.items() if f == "mdlm"} == {5}
    assert {len(v) for (f, _), v in per_budget.items() if f == "ar"} == {3}  # the top level's
    text = format_plan(plan)
    assert "5 sizes per budget over N_opt(C) x 10^[-0.9, +0.9]" in text
    assert "3 sizes per budget over N_opt(C) x 10^[-0.4, +0.4]" in text
    with pytest.raises(SweepError, match=r"families.mdlm.sizes_per_budget=8 must be between 2 and the 7"):
        _spec(tmp_path, families={**fam, "mdlm": {"budgets": [4e9], "sizes_per_budget": 8}})
    with pytest.raises(SweepError, match=r"families.mdlm.span_decades must be > 0"):
        _spec(tmp_path, families={**fam, "mdlm": {"budgets": [4e9], "span_decades": 0}})
