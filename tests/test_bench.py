"""``mdm bench train``: argument handling and the rows it returns, on a tiny shape with 2-step windows.

No timing assertions: a benchmark prints figures; here only its plumbing is checked.
"""

from __future__ import annotations

import argparse
import json

import pytest
import torch

from mdm.bench import Shape, _fmt, run_train_bench
from mdm.commands import bench as bench_cmd

TINY = Shape(width=32, depth=1, head_dim=16, seq_len=16, batch=4, vocab=16)


def _parse(*argv):
    p = argparse.ArgumentParser()
    bench_cmd.add_parser(p.add_subparsers())
    return p.parse_args(["bench", *argv])


def test_defaults_are_widths_64_128_and_threads_1_2():
    a = _parse("train")
    assert bench_cmd._ints("--widths", a.widths) == (64, 128)
    assert bench_cmd._ints("--threads", a.threads) == (1, 2)
    assert bench_cmd._ints("--precision-widths", a.precision_widths) == (64, 128, 256)
    assert bench_cmd._ints("--precision-widths", "") == ()


@pytest.mark.parametrize("text", ["64,x", "64,-1", "0"])
def test_bad_integer_lists_fail_naming_the_flag(text):
    with pytest.raises(SystemExit, match="--widths"):
        bench_cmd._ints("--widths", text)


def test_bad_steps_fail(tmp_path):
    with pytest.raises(SystemExit, match="--steps"):
        bench_cmd.run(_parse("train", "--steps", "0", "--work-dir", str(tmp_path)))


def test_tiny_bench_rows(tmp_path):
    torch_threads = torch.get_num_threads()
    lines: list[str] = []
    r = run_train_bench(
        widths=(32,),
        steps=2,
        rounds=2,
        threads=(1, 2),  # the same config twice: each full-loop row trains a fresh run
        shape=TINY,
        layout=False,
        precision_widths=(32,),
        work_dir=str(tmp_path),
        log=lines.append,
    )
    assert torch.get_num_threads() == torch_threads  # restored
    assert len(list((tmp_path / "runs").iterdir())) == 2  # one fresh full-loop run dir per row
    whats = [row["what"] for row in r["rows"]]
    assert whats == ["bare(mdlm)", "full(mdlm)", "ours(ar)", "minimal(ar)"] * 2
    assert [row["threads"] for row in r["rows"]] == [1] * 4 + [2] * 4
    for row in r["rows"]:
        assert row["width"] == 32 and row["depth"] == 1
        assert row["tokens_per_s"] > 0 and row["peak_gflops"] > 0
        assert row["gflops"] == pytest.approx(row["tokens_per_s"] * row["flops_per_token"] / 1e9)
        assert row["mfu"] == pytest.approx(row["gflops"] / row["peak_gflops"])
    bare, full, ours, mini = r["rows"][:4]
    assert full["full_over_bare"] > 0 and ours["ours_over_minimal"] > 0
    assert bare["flops_per_token"] == full["flops_per_token"]  # the same shape
    assert ours["flops_per_token"] == mini["flops_per_token"]
    # the minimal GPT has the same matmul weights; it adds a position table (seq_len x width)
    assert mini["params_total"] == ours["params_total"] + TINY.seq_len * TINY.width
    text = "\n".join(lines)
    assert "RE-MEASURED" in text and "full/bare" in text and "ours/minimal" in text
    (prec,) = r["precision"]
    assert prec["width"] == 32 and prec["threads"] == 1 and prec["fp32_tokens_per_s"] > 0
    table = _fmt(r["rows"][:4], header=True).splitlines()
    assert table[0].split()[:4] == ["thr", "width", "depth", "what"] and len(table) == 5


@pytest.mark.slow  # spawns three processes (~10 s on an idle machine, a minute on a loaded one)
def test_cli_json_and_thread_layout(tmp_path):
    out = tmp_path / "bench.json"
    args = _parse(
        "train",
        "--widths", "32", "--threads", "1", "--steps", "2", "--rounds", "1", "--depth", "1",
        "--head-dim", "16", "--seq-len", "16", "--batch", "4", "--vocab", "16",
        "--precision-widths", "", "--no-full", "--no-minimal",
        "--work-dir", str(tmp_path / "w"), "--json", str(out),
    )  # fmt: skip
    assert bench_cmd.run(args) == 0
    r = json.loads(out.read_text())
    assert [row["what"] for row in r["rows"]] == ["bare(mdlm)"]
    (lay,) = r["layout"]
    assert lay["width"] == 32
    assert lay["two_procs_1_thread_tokens_per_s"] > 0 and lay["one_proc_2_threads_tokens_per_s"] > 0
    assert r["precision"] == []
