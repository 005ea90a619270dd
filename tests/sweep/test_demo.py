"""`mdm demo` end to end on a seconds-long synthetic spec: sweep, collect, scaling report; a re-run
trains nothing."""

from __future__ import annotations

import subprocess
import sys

import pytest

from .conftest import REPO, python_env, write_spec


@pytest.mark.slow
def test_demo_pipeline_and_rerun(tmp_path):
    spec = write_spec(
        tmp_path / "demo.yaml",
        name="demo-test",
        base={"overrides": ["train.val_every=1000", "train.ckpt_every=1000", "train.val_batches=4"]},
        axes={"objective.name": ["mdlm", "ar"]},
        isoflop={"budgets": [3e9, 1e10], "depths": [1, 2, 3], "min_steps": 4},
    )
    cmd = [sys.executable, "-m", "mdm", "demo", "--spec", str(spec), "--bootstrap", "20"]
    first = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=python_env(), timeout=900)
    out = first.stdout + first.stderr
    assert first.returncode == 0, out[-4000:]
    report = tmp_path / "sweep" / "report"
    assert (report / "report.md").is_file(), out[-4000:]
    assert list(report.glob("*.png")), out[-4000:]
    assert (tmp_path / "sweep" / "results.csv").read_text().count("\n") == 13  # header + 12 runs
    assert f"report:  {report / 'report.md'}" in out

    again = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=python_env(), timeout=900)
    assert again.returncode == 0, again.stdout[-4000:] + again.stderr[-4000:]
    assert "skipping 12 completed run(s)" in again.stdout and "[sweep] start" not in again.stdout
