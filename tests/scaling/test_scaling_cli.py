"""`python -m scaling fit | report`: outputs, recovered parameters, and errors that name the problem."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scaling.cli import main
from scaling.synthetic import CHINCHILLA, isoflop_sweep, random_sweep, training_curves

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "notebooks" / "example_results.csv"
SMALL = [
    "--grid",
    "a=0,10,20",
    "--grid",
    "b=0,10,20",
    "--grid",
    "e=-1,0,1",
    "--grid",
    "alpha=0.5,1",
    "--grid",
    "beta=0.5,1",
]
KEYS = {"E", "A", "B", "alpha", "beta", "a", "b", "G", "objective", "n_points"}


def _write(tmp_path, df, name="results.csv"):
    p = tmp_path / name
    df.to_csv(p, index=False)
    return str(p)


def test_fit_approach3_recovers_parameters_and_writes_json(tmp_path, capsys):
    csv = _write(tmp_path, random_sweep(CHINCHILLA, 40, seed=2))
    out = tmp_path / "fit.json"
    assert main(["fit", csv, "--approach", "3", "--json", str(out), *SMALL]) == 0
    d = json.loads(out.read_text())
    assert KEYS <= set(d)
    for k in ("E", "A", "B", "alpha", "beta", "a", "b", "G"):
        assert d[k] == pytest.approx(CHINCHILLA.as_dict()[k], rel=1e-3), k
    assert d["n_points"] == 40 and d["input"]["compute"].startswith("flops column")
    printed = capsys.readouterr().out
    assert "alpha" in printed and "objective" in printed
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # atomic write left nothing behind


def test_fit_with_bootstrap_reports_intervals(tmp_path):
    csv = _write(tmp_path, random_sweep(CHINCHILLA, 40, noise=0.01, seed=3))
    out = tmp_path / "fit.json"
    assert (
        main(["fit", csv, "--approach", "3", "--bootstrap", "8", "--seed", "1", "--json", str(out), *SMALL])
        == 0
    )
    d = json.loads(out.read_text())
    for k in ("E", "A", "B", "alpha", "beta", "a", "b", "G"):
        assert {"se", "lo", "hi"} <= set(d["intervals"][k])
    assert d["bootstrap"]["n"] == 8 and d["bootstrap"]["seed"] == 1


def test_fit_approach2_with_plots(tmp_path):
    csv = _write(tmp_path, isoflop_sweep(CHINCHILLA, [1e18, 1e19, 1e20], sizes_per_budget=7, span=0.8))
    out = tmp_path / "a2.json"
    assert (
        main(
            [
                "fit",
                csv,
                "--approach",
                "2",
                "--json",
                str(out),
                "--plot",
                str(tmp_path / "figs"),
                "--bootstrap",
                "5",
            ]
        )
        == 0
    )
    d = json.loads(out.read_text())
    assert KEYS <= set(d) and d["E"] is None
    assert d["a"] == pytest.approx(CHINCHILLA.a, abs=5e-3)
    for stem in ("isoflop", "allocation"):
        for ext in ("png", "svg"):
            assert (tmp_path / "figs" / f"{stem}.{ext}").stat().st_size > 1000


def test_fit_approach1_from_history_csv(tmp_path):
    sizes = np.logspace(7, 9.5, 12)
    csv = _write(
        tmp_path, training_curves(CHINCHILLA, sizes, [1e21 / (6 * n) for n in sizes], points_per_run=40)
    )
    out = tmp_path / "a1.json"
    assert main(["fit", csv, "--approach", "1", "--json", str(out), "--plot", str(tmp_path)]) == 0
    assert json.loads(out.read_text())["a"] == pytest.approx(CHINCHILLA.a, abs=0.02)
    assert (tmp_path / "envelope.png").is_file() and (tmp_path / "envelope.svg").is_file()


@pytest.mark.parametrize(
    ("df", "args", "message"),
    [
        (
            pd.DataFrame({"params": [1.0, 2.0], "tokens": [1.0, 2.0]}),
            ["--approach", "3"],
            "missing required column(s) ['loss']",
        ),
        (
            pd.DataFrame({"params": [1e6, 2e6], "tokens": [1e8, 1e8], "loss": [3.0, float("nan")]}),
            ["--approach", "3"],
            "'loss' has NaN/inf at row 3",
        ),
        (
            pd.DataFrame({"params": [1e6, -2e6], "tokens": [1e8, 1e8], "loss": [3.0, 2.0]}),
            ["--approach", "3"],
            "'params' must be > 0",
        ),
        (random_sweep(CHINCHILLA, 4), ["--approach", "3"], "only 4 points; need at least 5"),
        (
            isoflop_sweep(CHINCHILLA, [1e19], sizes_per_budget=6),
            ["--approach", "2"],
            "at least 2 compute budgets",
        ),
        (
            pd.concat(
                [
                    random_sweep(CHINCHILLA, 8).assign(family="ar"),
                    random_sweep(CHINCHILLA, 8).assign(family="mdlm"),
                ]
            ),
            ["--approach", "3"],
            "holds 2 families (ar, mdlm); choose one with --family",
        ),  # fmt: skip
    ],
)
def test_bad_input_exits_2_with_a_clear_message(tmp_path, capsys, df, args, message):
    csv = _write(tmp_path, df)
    assert main(["fit", csv, *args]) == 2
    assert message in capsys.readouterr().err


def test_report_two_families(tmp_path, capsys):
    out = tmp_path / "rep"
    assert (
        main(
            ["report", str(EXAMPLE), "--out", str(out), "--bootstrap", "10", "--families", "mdlm,ar", *SMALL]
        )
        == 0
    )
    doc = json.loads((out / "fit.json").read_text())
    assert list(doc["families"]) == ["mdlm", "ar"]
    for fam in ("mdlm", "ar"):
        for key in ("approach2", "approach3"):
            assert "intervals" in doc["families"][fam][key]
        assert len(doc["families"][fam]["tokens_per_param"]) == 4
    assert len(doc["gap"]["at_budgets"]) == 4
    assert doc["input"]["conventions"]["flops"] == "6*N*D"
    md = (out / "report.md").read_text()
    for text in (
        "Approach 2",
        "Approach 3",
        "Compute multiplier",
        "tokens per parameter",
        "alpha",
        "![isoflop.png](isoflop.png)",
    ):
        assert text in md
    for stem in ("isoflop", "frontier", "allocation", "contours_mdlm", "contours_ar", "multiplier"):
        assert (out / f"{stem}.png").is_file() and (out / f"{stem}.svg").is_file()
    assert "multiplier mdlm vs ar" in capsys.readouterr().out


def test_report_survives_too_little_data(tmp_path, capsys):
    # one budget of 5 sizes, one family: Approach 2 and the multiplier are skipped, not crashed
    csv = _write(tmp_path, isoflop_sweep(CHINCHILLA, [1e19], sizes_per_budget=5, noise=0.01, family="mdlm"))
    out = tmp_path / "rep"
    assert main(["report", csv, "--out", str(out), "--bootstrap", "4", *SMALL]) == 0
    doc = json.loads((out / "fit.json").read_text())
    assert "at least 2 compute budgets" in doc["families"]["mdlm"]["approach2"]["skipped"]
    assert "needs two families" in doc["gap"]["skipped"]
    md = (out / "report.md").read_text()
    assert "**Skipped:**" in md and "at least 2 compute budgets" in md
    assert "SKIPPED" in capsys.readouterr().out


def test_module_entry_point_and_no_torch(tmp_path):
    csv = _write(tmp_path, isoflop_sweep(CHINCHILLA, [1e18, 1e19, 1e20], sizes_per_budget=5))
    # -X importtime lists every module imported on stderr: the whole CLI run must not touch torch
    cmd = [sys.executable, "-X", "importtime", "-m", "scaling", "fit", csv, "--approach", "2"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "objective" in r.stdout
    imported = [
        line.rsplit("|", 1)[-1].strip() for line in r.stderr.splitlines() if line.startswith("import time:")
    ]
    assert "scaling.cli" in imported and "scaling.plots" in imported  # the whole package was imported
    assert not [m for m in imported if m == "torch" or m.startswith("torch.")]


def _run_dirs(root, df, points=25):
    """A run directory per row: summary.json + a metrics.jsonl training curve ending at its tokens."""
    for _, row in df.iterrows():
        d = root / row["name"]
        d.mkdir(parents=True)
        n = float(row["params"])
        (d / "summary.json").write_text(
            json.dumps({"params_non_embedding": n, "params_total": n, "flops_per_token": 6 * n})
        )
        toks = np.logspace(np.log10(row["tokens"]) - 1.5, np.log10(row["tokens"]), points)
        lines = [
            json.dumps({"step": i, "tokens": float(t), "loss": float(CHINCHILLA.loss(n, t))})
            for i, t in enumerate(toks)
        ]
        (d / "metrics.jsonl").write_text("\n".join(lines) + "\n")


def test_report_with_runs_root_adds_approach1(tmp_path):
    df = isoflop_sweep(CHINCHILLA, [1e18, 1e19, 1e20], sizes_per_budget=5, span=0.8, family="mdlm")
    csv = _write(tmp_path, df)
    _run_dirs(tmp_path / "runs", df)
    out = tmp_path / "rep"
    runs = ["--runs-root", str(tmp_path / "runs"), "--no-plots", *SMALL]
    assert main(["report", csv, "--out", str(out), "--bootstrap", "4", *runs]) == 0
    doc = json.loads((out / "fit.json").read_text())
    a1 = doc["families"]["mdlm"]["approach1"]
    assert a1["n_runs"] == 15 and a1["a"] == pytest.approx(CHINCHILLA.a, abs=0.1)
    assert "Approach 1" in (out / "report.md").read_text()
    # a missing run directory skips Approach 1 with the reason, the rest of the report still runs
    (tmp_path / "runs" / df["name"].iloc[0] / "metrics.jsonl").unlink()
    assert main(["report", csv, "--out", str(out), "--bootstrap", "0", *runs]) == 0
    doc = json.loads((out / "fit.json").read_text())
    assert "missing metrics.jsonl" in doc["families"]["mdlm"]["approach1"]["skipped"]
    assert "a" in doc["families"]["mdlm"]["approach3"]


@pytest.mark.parametrize(("value", "message"), [("wide", "'wide'"), ("-3", ">= 0, got -3")])
def test_bad_smooth_window_is_a_clear_error(tmp_path, capsys, value, message):
    sizes = np.logspace(7, 9.5, 4)
    csv = _write(
        tmp_path, training_curves(CHINCHILLA, sizes, [1e21 / (6 * n) for n in sizes], points_per_run=10)
    )
    with pytest.raises(SystemExit) as e:
        main(["fit", csv, "--approach", "1", "--smooth", value])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "--smooth" in err and message in err and "Traceback" not in err
