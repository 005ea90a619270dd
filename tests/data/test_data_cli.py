"""``mdm data prepare|info``: overrides, idempotence, errors."""

from __future__ import annotations

import json

from mdm.cli import main


def test_prepare_synthetic_then_noop_then_info(capsys, tmp_path):
    args = [
        "data",
        "prepare",
        "synthetic",
        "synthetic.num_tokens=5000",
        "synthetic.eval_tokens=500",
        "--quiet",
    ]
    assert main(args) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["tokens_per_split"] == {"train": 5000, "validation": 500, "test": 500}
    assert first["entropy_per_token"] > 0 and first["mask_id"] == 17
    mtime = (tmp_path / "cache").stat().st_mtime_ns
    assert main(args) == 0  # second run: a no-op
    assert json.loads(capsys.readouterr().out)["dir"] == first["dir"]
    assert (tmp_path / "cache").stat().st_mtime_ns == mtime
    assert main(["data", "info", "synthetic", "synthetic.num_tokens=5000", "synthetic.eval_tokens=500"]) == 0
    assert json.loads(capsys.readouterr().out)["synthetic"]["vocab"] == 16


def test_prepare_reports_data_errors(capsys, tmp_path):
    assert (
        main(["data", "prepare", "files", f"path={tmp_path / 'missing'}", "tokenizer=char", "--quiet"]) == 1
    )
    assert "does not exist" in capsys.readouterr().err
    assert main(["data", "info", "synthetic", "synthetic.seed=99"]) == 1
    assert "not prepared" in capsys.readouterr().err
    assert main(["data", "prepare", "nosuchsource"]) == 2  # config error names the valid choices
    assert "data.name" in capsys.readouterr().err
