"""Data-constrained sweeps: data.unique_tokens and epochs as axes (fixed sizes or the isoFLOP plan), the
plan's U / epochs / tokens, collect's unique_tokens and epochs columns, bad specs refused."""

from __future__ import annotations

import csv
from fractions import Fraction

import pytest

from mdm.sweep.collect import collect
from mdm.sweep.plan import build_plan, format_plan
from mdm.sweep.spec import SweepError, load_spec

from .conftest import write_spec
from .test_status_collect import summary_for, write_run

TOKENS_PER_STEP = 8 * 32  # debug config: 8 sequences of 32 tokens a step


def _plan(tmp_path, **spec):
    return build_plan(load_spec(write_spec(tmp_path / "s.yaml", **spec)))


def test_fixed_size_grid_of_unique_tokens_and_epochs(tmp_path):
    plan = _plan(
        tmp_path,
        axes={"model.depth": [1], "data.unique_tokens": [512, 600], "epochs": [1, 4]},
    )
    got = [(r.cfg.data.unique_tokens, r.unique_tokens, r.tokens, r.steps) for r in plan.runs]
    # 600 tokens -> ceil(600 / 32) = 19 blocks = 608 tokens; 4 epochs = 2432 -> 10 steps (2560 tokens)
    assert got == [(512, 512, 512, 2), (512, 512, 2048, 8), (600, 608, 768, 3), (600, 608, 2560, 10)]
    assert [r.epochs for r in plan.runs] == [1.0, 4.0, float(Fraction(768, 608)), float(Fraction(2560, 608))]
    assert all(r.cfg.train.max_steps is None and r.cfg.train.tokens for r in plan.runs)
    assert len({r.name for r in plan.runs}) == 4
    text = format_plan(plan)
    assert "unique data: U = data.unique_tokens' subset (rows x seq_len); epochs = tokens / U" in text
    row = next(line for line in text.splitlines() if plan.runs[3].name in line)
    assert row.split()[-2:] == ["608", "4.21"]
    assert not plan.warnings


def test_isoflop_plan_with_a_unique_tokens_axis(tmp_path):
    plan = _plan(
        tmp_path,
        axes={"objective.name": ["mdlm"], "data.unique_tokens": [1024, 100_000]},
        isoflop={"budgets": [4e9], "depths": [1, 2], "min_steps": 2},
    )
    assert [r.unique_tokens for r in plan.runs] == [1024, 1024, 100_000, 100_000]
    for r in plan.runs:
        assert r.epochs == r.tokens / r.unique_tokens and r.cfg.train.flops == 4e9
    assert plan.runs[0].epochs > 1
    # 100k unique tokens are more than these budgets train on: warned, not refused
    assert any("part of the subset is never seen" in w for w in plan.warnings)
    assert sum("never seen" in w for w in plan.warnings) == 2


def test_whole_split_plans_keep_their_table(tmp_path):
    plan = _plan(tmp_path, axes={"model.depth": [1, 2]})
    assert all(r.unique_tokens == 0 and r.epochs is None for r in plan.runs)
    assert "epochs" not in format_plan(plan)


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        (
            {"axes": {"objective.name": ["mdlm"], "data.unique_tokens": [512], "epochs": [2]},
             "isoflop": {"budgets": [4e9], "depths": [1], "min_steps": 2}},
            "axes.epochs sets each run's length, and so does the isoflop plan",
        ),
        ({"axes": {"epochs": [1, 2]}}, r"axes.epochs needs data.unique_tokens > 0"),
        ({"axes": {"data.unique_tokens": [512], "epochs": [0, 2]}}, r"axes.epochs must be positive numbers"),
        (
            {"axes": {"data.unique_tokens": [512], "epochs": [2], "train.tokens": [4096]}},
            r"axes.epochs sets train.tokens; remove \['train.tokens'\]",
        ),
        ({"axes": {"data.unique_tokens": [-4]}}, r"data.unique_tokens must be >= 0"),
    ],
)  # fmt: skip
def test_bad_data_constrained_specs(tmp_path, spec, match):
    with pytest.raises(SweepError, match=match):
        _plan(tmp_path, **spec)


def test_collect_writes_unique_tokens_and_epochs(tmp_path):
    plan = _plan(tmp_path, axes={"data.unique_tokens": [512, 600], "epochs": [4]})
    for i, r in enumerate(plan.runs):
        write_run(r, summary_for(r, 3.0 - i * 0.1))
    rows, missing = collect(plan, tmp_path / "results.csv")
    assert not missing
    with open(tmp_path / "results.csv") as f:
        table = list(csv.DictReader(f))
    assert [int(t["unique_tokens"]) for t in table] == [512, 608]
    assert [float(t["epochs"]) for t in table] == [4.0, 2560 / 608]
    assert [int(t["tokens"]) for t in table] == [2048, 2560]
    meta = (tmp_path / "results.json").read_text()
    assert "unique_tokens" in meta and "tokens / unique_tokens" in meta


def test_collect_without_unique_data_has_no_such_columns(tmp_path):
    plan = _plan(tmp_path, axes={"model.depth": [1]})
    write_run(plan.runs[0], summary_for(plan.runs[0], 3.0))
    collect(plan, tmp_path / "results.csv")
    header = (tmp_path / "results.csv").read_text().splitlines()[0].split(",")
    assert "unique_tokens" not in header and "epochs" not in header


def test_grids_union_of_sub_grids(tmp_path):
    plan = _plan(
        tmp_path,
        axes={"model.depth": [1]},
        grids=[
            {"data.unique_tokens": [512, 1024, 2048], "epochs": [1]},  # the single-epoch ladder
            {"data.unique_tokens": [512], "epochs": [4, 8], "optim.lr": [1e-3]},
        ],
    )
    got = [(r.unique_tokens, r.epochs, r.cfg.optim.lr) for r in plan.runs]
    assert got == [(512, 1, 3e-3), (1024, 1, 3e-3), (2048, 1, 3e-3), (512, 4, 1e-3), (512, 8, 1e-3)]
    assert [r.values for r in plan.runs][3] == {
        "model.depth": 1,
        "data.unique_tokens": 512,
        "epochs": 4,
        "optim.lr": 1e-3,
    }


@pytest.mark.parametrize(
    ("grids", "match"),
    [
        ([{"model.depth": [2]}], r"grids\[0\] repeats \['model.depth'\] of axes"),
        ([{"data.unique_tokens": [512]}, {"modle.depth": [2]}], r"grids\[1\]: 'modle.depth' is not a config key"),
        ([{"data.unique_tokens": [512], "epochs": [-1]}], r"axes.epochs must be positive"),
        ([{"epochs": [2]}], r"axes.epochs needs data.unique_tokens > 0"),
        ([{}], r"grids must be a list of non-empty maps"),
    ],
)  # fmt: skip
def test_bad_grids(tmp_path, grids, match):
    with pytest.raises(SweepError, match=match):
        _plan(tmp_path, axes={"model.depth": [1]}, grids=grids)


def test_shipped_data_constrained_spec():
    """configs/sweeps/data-constrained.yaml: per family a single-epoch ladder of >= 5 rungs (AR over >= 64x;
    MDLM's over >= 16x, starting after its unigram plateau at >= 2^19 characters) and repeated subsets up
    to 32-64 epochs, each family at the demo's batch and lr, every run at two seeds (the bootstrap over
    runs then carries the seed-to-seed spread)."""
    from .conftest import REPO

    spec = load_spec(REPO / "configs" / "sweeps" / "data-constrained.yaml")
    combos = spec.combos()
    assert len(combos) == 54
    assert sorted(c["train.seed"] for c in combos) == [0] * 27 + [1] * 27
    for fam, batch, lr, span in (("mdlm", 16, 3e-3, 16), ("ar", 4, 7e-3, 64)):
        runs = [c for c in combos if c["objective.name"] == fam]
        assert {(c["train.global_batch"], c["optim.lr"]) for c in runs} == {(batch, lr)}
        ladder = [c["data.unique_tokens"] for c in runs if c["epochs"] == 1 and c["train.seed"] == 0]
        assert len(ladder) >= 5
        assert max(ladder) / min(ladder) >= span
        if fam == "mdlm":
            assert min(ladder) >= 2**19
        assert 32 <= max(c["epochs"] for c in runs) <= 64
        assert len({c["data.unique_tokens"] for c in runs if c["epochs"] > 1}) == 3
