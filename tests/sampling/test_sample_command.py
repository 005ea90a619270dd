"""``mdm sample``: files written, metrics, generative perplexity under an AR run, and bad input.

Run directories are made directly (a tiny model saved in the checkpoint layout ``mdm train`` writes), so
the test takes seconds; training itself is tested elsewhere.
"""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch

from mdm.cli import main
from mdm.config import load, to_dict
from mdm.diffusion import build_objective
from mdm.io import read_jsonl
from mdm.sampling.metrics import generative_perplexity, unigram_entropy
from mdm.vocab import Vocab

VOCAB = Vocab(size=64, mask_id=17, eos_id=16)
TINY = [
    "data.name=synthetic",
    "model.depth=1",
    "model.aspect_ratio=32",
    "model.head_dim=32",
    "model.seq_len=12",
    "model.cond_dim=16",
]


def make_run(path, *overrides):
    cfg = load([], TINY + list(overrides))
    obj = build_objective(cfg, VOCAB)
    torch.manual_seed(0)
    model = obj.build_model(cfg, VOCAB)
    (path / "checkpoints").mkdir(parents=True)
    ck = {
        "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
        "global_step": 7,
        "mdm": {"config": to_dict(cfg), "vocab": dataclasses.asdict(VOCAB), "ema": None},
    }
    torch.save(ck, path / "checkpoints" / "last.ckpt")
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    return {
        "radd": make_run(root / "radd", "objective.name=radd"),
        "sedd": make_run(root / "sedd", "objective.name=sedd"),
        "sedd_uniform": make_run(root / "sedd_u", "objective.name=sedd", "objective.graph=uniform"),
        "ar": make_run(root / "ar", "objective.name=ar"),
    }


@pytest.mark.parametrize(
    "run,sampler",
    [
        ("radd", "ancestral"),
        ("radd", "cached"),
        ("radd", "first_hitting"),
        ("radd", "semi_ar"),
        ("sedd", "analytic"),
        ("sedd", "euler"),
        ("sedd", "first_hitting"),
        ("sedd_uniform", "analytic"),
        ("sedd_uniform", "euler"),
    ],
)
def test_sample_writes_samples_and_summary(runs, run, sampler, capsys):
    rc = main(
        ["sample", str(runs[run]), "--sampler", sampler, "--n", "5", "--batch-size", "3", "--steps", "6"]
    )
    assert rc == 0, capsys.readouterr().err
    rows = read_jsonl(runs[run] / "eval" / "samples.jsonl")
    summary = json.loads((runs[run] / "eval" / "samples_summary.json").read_text())
    assert len(rows) == 5 and all(len(r["tokens"]) == 12 for r in rows)
    tokens = torch.tensor([r["tokens"] for r in rows])
    assert ((tokens >= 0) & (tokens < VOCAB.mask_id)).all()
    torch.testing.assert_close(
        torch.tensor([r["unigram_entropy_nats"] for r in rows], dtype=torch.float64), unigram_entropy(tokens)
    )
    assert summary["sampler"] == sampler and summary["n"] == 5 and summary["network_calls"] > 0
    assert json.loads(capsys.readouterr().out)["samples_file"] == summary["samples_file"]


def test_generative_perplexity_under_an_ar_run(runs, capsys):
    out = runs["radd"] / "eval" / "ar.jsonl"
    args = [
        "sample",
        str(runs["radd"]),
        "--n",
        "4",
        "--steps",
        "4",
        "--evaluator",
        str(runs["ar"]),
        "--out",
        str(out),
    ]
    assert main(args) == 0, capsys.readouterr().err
    rows = read_jsonl(out)
    summary = json.loads(out.with_name("ar_summary.json").read_text())
    nll = torch.tensor([r["ar_nll_nats"] for r in rows], dtype=torch.float64)
    counts = torch.tensor([r["ar_scored_tokens"] for r in rows], dtype=torch.float64)
    assert (counts == 11).all()  # the AR model scores tokens 2..L
    assert summary["gen_ppl"] == pytest.approx(math.exp(nll.sum() / counts.sum()))
    assert summary["gen_ppl"] == pytest.approx(generative_perplexity(nll, counts))
    # the AR model's own NLL of those tokens, recomputed directly
    from mdm.loading import load_run

    ar = load_run(runs["ar"])
    tokens = torch.tensor([r["tokens"] for r in rows])
    with torch.no_grad():
        direct = ar.objective.sequence_loss(ar.model, {"input_ids": tokens}).double()
    torch.testing.assert_close(nll, direct, rtol=1e-5, atol=1e-5)


def test_unigram_entropy_in_nats():
    x = torch.tensor([[0, 0, 0, 0], [0, 1, 2, 3], [0, 0, 1, 1]])
    torch.testing.assert_close(
        unigram_entropy(x), torch.tensor([0.0, math.log(4), math.log(2)], dtype=torch.float64)
    )


@pytest.mark.parametrize(
    "run,extra,message",
    [
        ("radd", ["--sampler", "nope"], r"unknown sampler 'nope'; valid: .*ancestral.*cached"),
        ("sedd", ["--sampler", "cached"], r"time-agnostic network.*samplers that fit: .*analytic"),
        ("sedd_uniform", ["--sampler", "ancestral"], r"samplers that fit: analytic, euler"),
        ("radd", ["--sampler", "euler"], r"score-based"),
        ("ar", ["--sampler", "ancestral"], r"does not fit objective 'ar'.*samplers that fit: ar"),
        ("radd", ["--evaluator", "RADD"], r"must be an 'ar' run"),
        ("radd", ["--length", "99"], r"--length 99"),
        ("radd", ["--n", "0"], r"--n must be >= 1"),
        ("sedd_uniform", ["--top-p", "0.9"], r"does not support top_p"),
    ],
)
def test_bad_input_is_a_clear_error(runs, run, extra, message, capsys):
    extra = [str(runs["radd"]) if e == "RADD" else e for e in extra]
    assert main(["sample", str(runs[run]), "--n", "2", "--steps", "2", *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mdm sample: error:")
    import re

    assert re.search(message, err), err


def test_missing_run_is_a_clear_error(tmp_path, capsys):
    assert main(["sample", str(tmp_path / "nowhere")]) == 2
    assert "no run directory or checkpoint" in capsys.readouterr().err
