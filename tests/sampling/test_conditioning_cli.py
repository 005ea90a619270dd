"""``mdm sample --prompt / --prompt-file / --suffix / --infill / --length`` on tiny runs with a char tokenizer.

Runs are made directly (random weights in the checkpoint layout ``mdm train`` writes) beside a prepared-data
folder holding only a character tokenizer and its meta.json, so decoding and encoding are real.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from mdm.cli import main
from mdm.config import load, to_dict
from mdm.data.meta import DataMeta
from mdm.data.tokenizer import CharTokenizer
from mdm.diffusion import build_objective
from mdm.io import read_jsonl
from mdm.vocab import Vocab

CHARS = sorted("abcdefghij .")
TOK = CharTokenizer(CHARS)
VOCAB = Vocab(size=64, mask_id=TOK.n_real, eos_id=TOK.eos_id, bos_id=TOK.bos_id, pad_id=TOK.pad_id)
L = 16


def write_data_dir(path):
    path.mkdir(parents=True)
    TOK.save(path)
    meta = DataMeta(
        name="files",
        tokenizer="char",
        vocab_size=64,
        mask_id=TOK.n_real,
        bos_id=TOK.bos_id,
        eos_id=TOK.eos_id,
        pad_id=TOK.pad_id,
        dtype="uint16",
        tokenizer_file="tokenizer.json",
    )
    meta.to_json(path / "meta.json")
    return path


def make_run(path, data_dir, *overrides):
    cfg = load(
        [],
        [
            "data.name=files",
            f"data.dir={data_dir}",
            "model.depth=1",
            "model.aspect_ratio=32",
            "model.head_dim=32",
            f"model.seq_len={L}",
            "model.cond_dim=16",
            *overrides,
        ],
    )
    obj = build_objective(cfg, VOCAB)
    torch.manual_seed(0)
    model = obj.build_model(cfg, VOCAB)
    (path / "checkpoints").mkdir(parents=True)
    ck = {
        "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
        "global_step": 3,
        "mdm": {"config": to_dict(cfg), "vocab": dataclasses.asdict(VOCAB), "ema": None},
    }
    torch.save(ck, path / "checkpoints" / "last.ckpt")
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("condruns")
    data = write_data_dir(root / "data")
    return {
        "mdlm": make_run(root / "mdlm", data, "objective.name=mdlm"),
        "radd": make_run(root / "radd", data, "objective.name=radd"),
        "sedd": make_run(root / "sedd", data, "objective.name=sedd"),
        "ar": make_run(root / "ar", data, "objective.name=ar"),
    }


def sample(runs, run, *extra, capsys=None):
    rc = main(["sample", str(runs[run]), "--n", "3", "--steps", "4", *extra])
    err = capsys.readouterr().err if capsys else ""
    assert rc == 0, err
    rows = read_jsonl(runs[run] / "eval" / "samples.jsonl")
    summary = json.loads((runs[run] / "eval" / "samples_summary.json").read_text())
    return rows, summary


@pytest.mark.parametrize(
    "run,sampler",
    [
        ("mdlm", "ancestral"),
        ("mdlm", "first_hitting"),
        ("mdlm", "semi_ar"),
        ("radd", "cached"),
        ("sedd", "analytic"),
        ("sedd", "euler"),
        ("ar", "ar"),
    ],
)
def test_prompt_is_kept_verbatim(runs, run, sampler, capsys):
    rows, summary = sample(
        runs, run, "--sampler", sampler, "--prompt", "abc d", "--length", "12", capsys=capsys
    )
    prompt = TOK.encode("abc d")
    for r in rows:
        assert len(r["tokens"]) == 12 and r["tokens"][:5] == prompt and r["text"].startswith("abc d")
        assert r["condition"]["kind"] == "prefix" and r["condition"]["fixed_tokens"] == prompt
        assert r["condition"]["text"] == {"prompt": "abc d"}
    assert summary["condition"]["fixed_positions"] == [0, 1, 2, 3, 4]
    assert summary["generated_tokens"] == 3 * 7 and summary["tokens_per_s"] > 0


@pytest.mark.parametrize("run", ["mdlm", "radd", "sedd"])
def test_infill_and_suffix_keep_every_fixed_token(runs, run, capsys):
    rows, summary = sample(runs, run, "--infill", "ab[MASK:3]cd[MASK]j", capsys=capsys)
    for r in rows:
        t = r["tokens"]
        assert len(t) == L
        assert t[:2] == TOK.encode("ab") and t[5:7] == TOK.encode("cd") and t[8] == TOK.encode("j")[0]
    assert summary["condition"]["kind"] == "infill"
    assert summary["condition"]["fixed_positions"] == [0, 1, 5, 6, 8]
    rows, summary = sample(runs, run, "--suffix", "the end.", "--length", "10", capsys=capsys)
    assert all(r["tokens"][-8:] == TOK.encode("the end.") for r in rows)
    assert summary["condition"]["kind"] == "suffix"


def test_prompt_file(runs, tmp_path, capsys):
    f = tmp_path / "p.txt"
    f.write_text("hij")
    rows, _ = sample(runs, "mdlm", "--prompt-file", str(f), capsys=capsys)
    assert all(r["tokens"][:3] == TOK.encode("hij") for r in rows)
    assert rows[0]["condition"]["text"] == {"prompt_file": str(f)}


def test_ar_sampler_is_the_default_for_ar_runs_and_reports_speed(runs, capsys):
    rows, summary = sample(runs, "ar", capsys=capsys)
    assert summary["sampler"] == "ar" and summary["condition"] is None
    assert all(r["tokens"][0] == TOK.bos_id for r in rows)  # starts from BOS
    assert summary["nfe_per_sequence"] == L - 1 and summary["tokens_per_s"] > 0
    plain, s2 = sample(runs, "ar", "--no-kv-cache", capsys=capsys)
    assert [r["tokens"] for r in plain] == [r["tokens"] for r in rows]  # same draws without the cache
    assert s2["options"] == {"kv_cache": False}


@pytest.mark.parametrize(
    "run,extra,message",
    [
        ("ar", ["--infill", "a[MASK]b"], r"prefix only"),
        ("ar", ["--suffix", "ab"], r"prefix only"),
        ("mdlm", ["--prompt", "abc", "--infill", "a[MASK]"], r"do not combine"),
        ("mdlm", ["--prompt", "a" * 20], r"do not fit --length 16"),
        ("mdlm", ["--infill", "abcdefghijabcdef"], r"nothing to generate"),
        ("mdlm", ["--prompt-file", "/nonexistent/p.txt"], r"--prompt-file .* not found"),
        ("mdlm", ["--temperature", "0.5"], r"--temperature applies to the ar sampler"),
    ],
)
def test_bad_conditioning_is_a_clear_error(runs, run, extra, message, capsys):
    import re

    assert main(["sample", str(runs[run]), "--n", "2", "--steps", "2", *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mdm sample: error:") and re.search(message, err), err
