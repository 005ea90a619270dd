"""Reading RESULTS.csv: bad input gives errors that name the problem."""

import json

import numpy as np
import pandas as pd
import pytest

from scaling.errors import ScalingInputError
from scaling.results import group_budgets, load_results, load_run_histories


def _csv(tmp_path, rows, name="results.csv"):
    p = tmp_path / name
    pd.DataFrame(rows).to_csv(p, index=False)
    return p


GOOD = {
    "name": ["r0", "r1", "r2"],
    "params": [1e6, 2e6, 4e6],
    "tokens": [1e8, 5e7, 2.5e7],
    "loss": [3.0, 2.9, 3.1],
}


def test_good_file_without_flops_uses_6nd_and_reads_companion_json(tmp_path):
    p = _csv(tmp_path, GOOD)
    (tmp_path / "results.json").write_text(json.dumps({"params": "non_embedding", "flops": "6*N*D"}))
    r = load_results(p)
    assert r.df["flops"].to_numpy() == pytest.approx(6 * np.array(GOOD["params"]) * np.array(GOOD["tokens"]))
    assert "6*N*D" in r.compute and "no flops column" in r.compute
    assert r.meta == {"params": "non_embedding", "flops": "6*N*D"}
    assert r.describe()["conventions"]["params"] == "non_embedding"
    assert r.families == ["all"]


def test_flops_column_is_used_and_named(tmp_path):
    rows = dict(GOOD, flops=[7e14, 7e14, 7e14])
    (tmp_path / "results.json").write_text(json.dumps({"flops": "6N+attention (PaLM)"}))
    r = load_results(_csv(tmp_path, rows))
    assert r.df["flops"].tolist() == [7e14] * 3
    assert r.compute == "flops column (6N+attention (PaLM))"


def test_missing_file(tmp_path):
    with pytest.raises(ScalingInputError, match="not found"):
        load_results(tmp_path / "nope.csv")


def test_missing_column(tmp_path):
    rows = {k: v for k, v in GOOD.items() if k != "loss"}
    with pytest.raises(ScalingInputError, match=r"missing required column\(s\) \['loss'\]"):
        load_results(_csv(tmp_path, rows))


@pytest.mark.parametrize(
    ("col", "bad", "pattern"),
    [
        ("loss", [3.0, np.nan, 3.1], r"'loss' has NaN/inf at row 3 \(name=r1\)"),
        ("params", [1e6, 0.0, 4e6], r"'params' must be > 0; non-positive at row 3 \(name=r1\)"),
        ("tokens", [1e8, -5.0, 2.5e7], r"'tokens' must be > 0"),
        ("tokens", [1e8, "many", 2.5e7], r"'tokens' has non-numeric values at row 3"),
    ],
)
def test_bad_values_name_column_and_row(tmp_path, col, bad, pattern):
    with pytest.raises(ScalingInputError, match=pattern):
        load_results(_csv(tmp_path, dict(GOOD, **{col: bad})))


def test_unknown_family(tmp_path):
    p = _csv(tmp_path, dict(GOOD, family=["ar", "ar", "mdlm"]))
    with pytest.raises(ScalingInputError, match=r"\['sedd'\] not found; families present: \['ar', 'mdlm'\]"):
        load_results(p, families=["sedd"])


def test_bad_companion_json(tmp_path):
    p = _csv(tmp_path, GOOD)
    (tmp_path / "results.json").write_text("{not json")
    with pytest.raises(ScalingInputError, match="results.json: companion JSON is not valid JSON"):
        load_results(p)


def test_group_budgets_tolerates_rounding():
    c = np.array([1e15, 1.03e15, 0.98e15, 1e16, 1.05e16, 1e17])
    assert group_budgets(c).tolist() == [0, 0, 0, 1, 1, 2]


def _run_dir(root, name, n, rows, **summary):
    d = root / name
    d.mkdir()
    (d / "summary.json").write_text(json.dumps({"params_non_embedding": n, "params_total": 2 * n, **summary}))
    (d / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return d


def test_load_run_histories(tmp_path):
    rows = [
        {"step": 1, "tokens": 100, "loss": 5.0},
        {"step": 2, "tokens": 200, "val_loss": 4.0},
        {"step": 3, "tokens": 300, "loss": 4.5},
    ]
    d = _run_dir(tmp_path, "a", 1000, rows, flops_per_token=7000, objective="mdlm")
    h = load_run_histories([d])
    assert h["tokens"].tolist() == [100, 300]  # the val-only row is skipped
    assert h["flops"].tolist() == [6 * 1000 * 100, 6 * 1000 * 300]
    assert h["family"].iloc[0] == "mdlm"
    h2 = load_run_histories([d], compute="summary", params_key="params_total")
    assert h2["flops"].tolist() == [7000 * 100, 7000 * 300] and h2["params"].iloc[0] == 2000


def test_load_run_histories_errors(tmp_path):
    d = tmp_path / "empty"
    d.mkdir()
    with pytest.raises(ScalingInputError, match="missing summary.json"):
        load_run_histories([d])
    d2 = _run_dir(tmp_path, "b", 1000, [{"tokens": 1, "loss": 1}])
    (d2 / "metrics.jsonl").write_text('{"tokens": 1, "loss": 2}\n{broken\n')
    with pytest.raises(ScalingInputError, match="line 2 is not valid JSON"):
        load_run_histories([d2])
    with pytest.raises(ScalingInputError, match="missing key 'flops_per_token'"):
        load_run_histories([_run_dir(tmp_path, "c", 10, [{"tokens": 1, "loss": 1}])], compute="summary")
