"""Sweep specs and plans: every shipped spec parses, the isoFLOP arithmetic, names, and bad input."""

from __future__ import annotations

import math

import pytest

from mdm.config import load
from mdm.rundir import run_name
from mdm.sweep.launch import write_config
from mdm.sweep.plan import build_plan, format_plan
from mdm.sweep.spec import SweepError, load_spec

from .conftest import REPO, write_spec

SPECS = sorted((REPO / "configs" / "sweeps").glob("*.yaml"))


@pytest.mark.parametrize("path", SPECS, ids=[p.name for p in SPECS])
def test_shipped_specs_load(path):
    spec = load_spec(path)
    assert spec.name and spec.base.files
    for f in spec.base.files:  # every base file is itself a loadable config
        load([f], spec.base.overrides)


def test_isoflop_plan_arithmetic(tmp_path):
    budgets, depths = [2e9, 6e9], [1, 2]
    spec = load_spec(
        write_spec(
            tmp_path / "s.yaml",
            axes={"objective.name": ["mdlm", "ar"]},
            isoflop={
                "budgets": budgets,
                "depths": depths,
                "min_steps": 2,
                "lr_rule": "inv_width",
                "lr_ref_width": 32,
            },
        )
    )
    plan = build_plan(spec)
    assert len(plan.runs) == 2 * len(budgets) * len(depths) and not plan.dropped
    assert len({r.name for r in plan.runs}) == len(plan.runs)
    tokens_per_step = 8 * 32  # debug.yaml: global_batch 8, seq_len 32
    for r in plan.runs:
        assert r.cfg.train.flops == r.budget and r.cfg.train.max_steps is None
        assert r.steps == math.ceil(r.budget / (r.flops_per_token * tokens_per_step))
        assert r.tokens == r.steps * tokens_per_step
        assert r.budget <= r.flops < r.budget + r.flops_per_token * tokens_per_step
        assert r.d_model == 32 * r.depth  # aspect_ratio 32
        assert r.lr == pytest.approx(3e-3 * 32 / r.d_model)
        assert r.cfg.train.runs_dir == str((tmp_path / "sweep" / "runs").resolve())
        # the written config reproduces the name, i.e. `mdm train <file>` trains into this run dir
        assert run_name(load([write_config(plan, r)])) == r.name
    by_family = {f: [r for r in plan.runs if r.family == f] for f in ("mdlm", "ar")}
    assert all(len(v) == 4 for v in by_family.values())
    text = format_plan(plan)
    for r in plan.runs:
        assert r.name in text


def test_grid_without_compute_plan(tmp_path):
    spec = load_spec(
        write_spec(tmp_path / "s.yaml", axes={"optim.lr": [1e-3, 3e-3], "train.seed": [0, 1, 2]})
    )
    plan = build_plan(spec)
    assert len(plan.runs) == 6
    assert {(r.cfg.optim.lr, r.cfg.train.seed) for r in plan.runs} == {
        (a, b) for a in (1e-3, 3e-3) for b in (0, 1, 2)
    }
    assert all(r.steps == 20 and r.budget is None for r in plan.runs)  # debug.yaml's max_steps


def test_unknown_axis_key(tmp_path):
    with pytest.raises(SweepError, match=r"'model\.dpth' is not a config key; did you mean model\.depth"):
        load_spec(write_spec(tmp_path / "s.yaml", axes={"model.dpth": [1, 2]}))
    with pytest.raises(SweepError, match="'model' is not a config key"):  # a section, not a key
        load_spec(write_spec(tmp_path / "s.yaml", axes={"model": [1, 2]}))


def test_unknown_spec_key_and_bad_values(tmp_path):
    with pytest.raises(SweepError, match="isoflops"):
        load_spec(write_spec(tmp_path / "s.yaml", isoflops={"budgets": [1e9]}))
    with pytest.raises(SweepError, match="axes.optim.lr must be a non-empty list"):
        load_spec(write_spec(tmp_path / "s.yaml", axes={"optim.lr": 0.1}))
    with pytest.raises(SweepError, match=r"axes \['model.depth'\] are set by the isoflop plan"):
        load_spec(
            write_spec(
                tmp_path / "s.yaml", axes={"model.depth": [1]}, isoflop={"budgets": [1e9], "depths": [1]}
            )
        )
    with pytest.raises(SweepError, match="lr_rule='sqrt' is not valid"):
        load_spec(
            write_spec(tmp_path / "s.yaml", isoflop={"budgets": [1e9], "depths": [1], "lr_rule": "sqrt"})
        )
    with pytest.raises(SweepError, match="file 'nope.yaml' not found"):
        load_spec(write_spec(tmp_path / "s.yaml", base={"files": ["nope.yaml"]}))
    with pytest.raises(SweepError, match="sweep spec not found"):
        load_spec(tmp_path / "missing.yaml")


def test_bad_axis_value_names_the_run(tmp_path):
    spec = load_spec(write_spec(tmp_path / "s.yaml", axes={"objective.name": ["mdlm", "diffusion9000"]}))
    with pytest.raises(SweepError, match=r"objective.name=diffusion9000.*choose one of"):
        build_plan(spec)


def test_budget_too_small_for_smallest_model(tmp_path):
    iso = {"budgets": [1e6, 1e10], "depths": [1, 2], "min_steps": 10}
    spec = load_spec(write_spec(tmp_path / "s.yaml", isoflop=iso))
    with pytest.raises(
        SweepError, match=r"budget C=1e\+06 is too small for the smallest model \(depth 1"
    ) as e:
        build_plan(spec)
    # the budget the message names as the smallest usable one does give min_steps to depth 1
    need = float(str(e.value).split("smallest usable budget is ")[1].split(" FLOPs")[0])
    iso["budgets"] = [need * 1.001]
    plan = build_plan(load_spec(write_spec(tmp_path / "s.yaml", isoflop=iso)))
    assert [r.depth for r in plan.runs] == [1] and plan.runs[0].steps >= 10
    assert len(plan.dropped) == 1 and "depth=2" in plan.dropped[0] and "min_steps=10" in plan.dropped[0]


def test_duplicate_run_names(tmp_path):
    spec = load_spec(
        write_spec(
            tmp_path / "s.yaml", base={"overrides": ["train.run_name=fixed"]}, axes={"train.seed": [0, 1]}
        )
    )
    with pytest.raises(SweepError, match="same name 'fixed'"):
        build_plan(spec)


def test_cli_plan_and_errors(tmp_path, capsys):
    from mdm.cli import main

    spec = write_spec(tmp_path / "s.yaml", axes={"train.seed": [0, 1]})
    assert main(["sweep", "plan", str(spec)]) == 0
    out = capsys.readouterr().out
    assert "sweep test: 2 runs" in out and "tok/param" in out
    bad = write_spec(tmp_path / "bad.yaml", axes={"train.sed": [0, 1]})
    assert main(["sweep", "run", str(bad), "--dry-run"]) == 2
    assert "'train.sed' is not a config key; did you mean train.seed" in capsys.readouterr().err
