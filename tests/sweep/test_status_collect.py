"""Status and collect on hand-made run directories (no training): states, rows, conventions, bad input."""

from __future__ import annotations

import csv
import fcntl
import json
import os

import pytest

from mdm.flops import FLOP_CONVENTION
from mdm.sweep.collect import COLUMNS, collect
from mdm.sweep.launch import select_runs
from mdm.sweep.plan import build_plan
from mdm.sweep.spec import SweepError, load_spec
from mdm.sweep.status import format_status, lock_path, sweep_states

from .conftest import write_spec


@pytest.fixture
def plan(tmp_path):
    spec = write_spec(
        tmp_path / "s.yaml",
        axes={"objective.name": ["mdlm", "ar"]},
        isoflop={"budgets": [4e9], "depths": [1, 2, 3], "min_steps": 2},
    )
    return build_plan(load_spec(spec))


def summary_for(run, loss: float, **extra) -> dict:
    tokens = run.tokens
    return {
        "status": "completed",
        "family": run.family,
        "params_total": run.params_total,
        "params_non_embedding": run.params_non_embedding,
        "tokens": tokens,
        "flops": run.flops,
        "flops_per_token": run.flops_per_token,
        "steps": run.steps,
        "val_loss": loss,
        "val_ppl_bound": float(2.718281828459045**loss),
        "wall_s": 1.5,
        "depth": run.depth,
        "d_model": run.d_model,
        **extra,
    }


def write_run(
    run, summary: dict | None = None, metrics: list[dict] | None = None, raw_summary: str | None = None
):
    rd = run.run_dir
    rd.path.mkdir(parents=True, exist_ok=True)
    if metrics is not None:
        rd.metrics.write_text("".join(json.dumps(m) + "\n" for m in metrics))
    if summary is not None:
        rd.summary.write_text(json.dumps(summary))
    if raw_summary is not None:
        rd.summary.write_text(raw_summary)


def test_states_and_table(plan):
    r = plan.runs
    write_run(r[0], summary_for(r[0], 3.0))
    write_run(
        r[1], {"status": "failed", "error": "NonFiniteLossError: non-finite training loss (nan) at step 7"}
    )
    write_run(
        r[2],
        metrics=[
            {"step": 1, "loss": 5.0},
            {"step": 2, "loss": 4.5},
            {"step": 2, "tokens": 512, "val_loss": 4.4},
        ],
    )
    lp = lock_path(plan, r[3].name)
    lp.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lp, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # a launcher holding the run
    try:
        states = {s.name: s for s in sweep_states(plan)}
    finally:
        os.close(fd)
    assert states[r[0].name].status == "completed" and states[r[0].name].val_loss == 3.0
    assert states[r[1].name].status == "failed" and "NonFiniteLossError" in states[r[1].name].error
    s2 = states[r[2].name]
    assert (s2.status, s2.step, s2.loss) == ("interrupted", 2, 4.5)
    assert states[r[3].name].status == "running"
    assert states[r[4].name].status == "pending" and states[r[5].name].status == "pending"
    table = format_status(plan, list(states.values()))
    assert "NonFiniteLossError" in table and "2/" in table
    assert "1 completed, 1 running, 1 interrupted, 2 pending, 1 failed (of 6)" in table
    # what a launcher would do: resume the interrupted one, start the pending ones, not the others
    sel = select_runs(plan)
    assert {x.name for x in sel.todo} == {r[2].name, r[3].name, r[4].name, r[5].name}  # lock released now
    assert [x.name for x, _ in sel.failed] == [r[1].name]
    assert {x.name for x in select_runs(plan, retry_failed=True).todo} >= {r[1].name}


def test_collect_rows_and_conventions(plan, tmp_path):
    losses = {}
    for i, run in enumerate(plan.runs[:4]):
        losses[run.name] = 3.0 + 0.1 * i
        write_run(run, summary_for(run, losses[run.name]))
    write_run(plan.runs[4], {"status": "failed", "error": "boom"})
    out = tmp_path / "out" / "results.csv"
    rows, missing = collect(plan, out)
    assert {m.status for m in missing} == {"failed", "pending"}
    with open(out) as f:
        table = list(csv.DictReader(f))
    assert list(table[0].keys()) == COLUMNS
    assert len(table) == 4
    by_name = {row["name"]: row for row in table}
    for run in plan.runs[:4]:
        row = by_name[run.name]
        assert float(row["loss"]) == losses[run.name]
        assert int(row["params"]) == run.params_non_embedding  # non-embedding by default
        assert int(row["params_total"]) == run.params_total
        assert int(row["tokens"]) == run.tokens and float(row["flops"]) == run.flops
        assert float(row["budget"]) == 4e9 and row["family"] == run.family
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["params"] == "params_non_embedding" and meta["flop_convention"] == FLOP_CONVENTION
    assert meta["n_rows"] == 4
    assert not list(out.parent.glob(".*.tmp"))  # atomic writes leave no temporaries

    collect(plan, out, params="total")
    with open(out) as f:
        assert {int(r["params"]) for r in csv.DictReader(f)} == {r.params_total for r in plan.runs[:4]}
    assert json.loads(out.with_suffix(".json").read_text())["params"] == "params_total"

    collect(plan, out, params="compute")  # N = FLOPs per token / 6: then 6 N D is the compute spent
    with open(out) as f:
        for r in csv.DictReader(f):
            assert 6 * float(r["params"]) * int(r["tokens"]) == pytest.approx(float(r["flops"]), rel=1e-12)
    assert json.loads(out.with_suffix(".json").read_text())["params"] == "params_compute"


def test_collected_file_reads_in_scaling(plan, tmp_path):
    scaling_results = pytest.importorskip("scaling.results")
    for i, run in enumerate(plan.runs):
        write_run(run, summary_for(run, 3.0 + 0.01 * i))
    out = tmp_path / "results.csv"
    collect(plan, out)
    res = scaling_results.load_results(out)
    assert len(res.df) == len(plan.runs) and set(res.families) == {"mdlm", "ar"}


def test_corrupt_summary_is_a_clear_error(plan, tmp_path):
    write_run(plan.runs[0], summary_for(plan.runs[0], 3.0))
    write_run(plan.runs[1], raw_summary='{"status": "compl')  # torn file
    states = {s.name: s for s in sweep_states(plan)}
    bad = states[plan.runs[1].name]
    assert bad.status == "corrupt" and str(plan.runs[1].run_dir.summary) in bad.error
    for call in (lambda: collect(plan, tmp_path / "r.csv"), lambda: select_runs(plan)):
        with pytest.raises(SweepError, match=r"corrupt summary file .*summary.json.*delete it to re-run"):
            call()


def test_collect_nothing_completed_and_bad_summary(plan, tmp_path):
    with pytest.raises(SweepError, match="no completed runs"):
        collect(plan, tmp_path / "r.csv")
    s = summary_for(plan.runs[0], 3.0)
    del s["flops"]
    write_run(plan.runs[0], s)
    with pytest.raises(SweepError, match=r"summary.json: completed summary lacks \['flops'\]"):
        collect(plan, tmp_path / "r.csv")
    with pytest.raises(SweepError, match="must end in .csv"):
        collect(plan, tmp_path / "r.txt")
