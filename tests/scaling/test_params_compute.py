"""N = FLOPs per token / 6 for Approach 1's run histories: then 6 N D is the compute spent."""

from __future__ import annotations

import json

import pytest

from scaling.results import PARAMS_COMPUTE, load_run_histories


def test_params_compute_from_flops_per_token(tmp_path):
    rd = tmp_path / "run"
    rd.mkdir()
    (rd / "summary.json").write_text(json.dumps({"params_non_embedding": 1000, "flops_per_token": 9000.0}))
    (rd / "metrics.jsonl").write_text(
        "\n".join(json.dumps({"step": s, "tokens": 100 * s, "loss": 3.0 - 0.1 * s}) for s in (1, 2, 3))
    )
    h = load_run_histories([rd], params_key=PARAMS_COMPUTE)
    assert set(h["params"]) == {1500.0}
    assert h["flops"].tolist() == pytest.approx((6 * 1500.0 * h["tokens"]).tolist())
    h_ne = load_run_histories([rd])
    assert set(h_ne["params"]) == {1000.0}
