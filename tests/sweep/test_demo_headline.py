"""The demo's closing lines state the comparison as fit.json does: numbers only when they passed."""

from __future__ import annotations

import json

from mdm.commands.demo import headline


def _write(tmp_path, comparison):
    p = tmp_path / "fit.json"
    p.write_text(json.dumps({"comparison": comparison}))
    return p


def test_headline_reports_passed_numbers_and_withholds_the_rest(tmp_path):
    comp = {
        "family": "mdlm",
        "reference": "ar",
        "C_reference": {"flops": 3e9},
        "multiplier": {"status": "ok", "value": 412.0, "ci95": [350.0, 480.0], "method": "approach2"},
        "nopt_ratio": {"status": "extrapolation", "value": None, "reasons": ["C outside mdlm's budgets"]},
        "nopt_ratio_matched_loss": {"status": "flagged", "value": None, "reasons": ["interval > 1 decade"]},
    }
    lines = headline(_write(tmp_path, comp))
    text = "\n".join(lines)
    assert "C = 3e+09" in lines[0]
    assert "compute multiplier mdlm/ar: 412 [350, 480]" in text
    assert "at equal compute: not reported (extrapolation: C outside mdlm's budgets)" in text
    assert "at equal loss: not reported (flagged: interval > 1 decade)" in text


def test_headline_without_comparison(tmp_path):
    assert headline(_write(tmp_path, {})) == ["no comparison of the two families (see the report)"]
    assert "unreadable" in headline(tmp_path / "missing.json")[0]
