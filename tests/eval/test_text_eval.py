"""``mdm eval RUN --text FILE_OR_GLOB``: plain text, jsonl and parquet through the same protocols and standard
errors as the benchmarks, and the checks that flag or refuse a result with too few blocks or too much dropped.

The AR run's bound is exact, so its nats/token is recomputed directly from the protocol's blocks."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mdm.cli import main
from mdm.eval.bound import ratio_se
from mdm.eval.protocols import make_blocks
from mdm.eval.text import load_text
from mdm.loading import load_run
from tests.sampling.test_conditioning_cli import TOK, make_run, write_data_dir

DOCS = [("abc def ghij. " * (3 + i % 5)).strip() for i in range(40)]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    r = tmp_path_factory.mktemp("texteval")
    data = write_data_dir(r / "data")
    make_run(r / "ar", data, "objective.name=ar")
    make_run(r / "mdlm", data, "objective.name=mdlm")
    (r / "docs").mkdir()
    for i, d in enumerate(DOCS):
        (r / "docs" / f"{i:02d}.txt").write_text(d)
    with open(r / "docs.jsonl", "w") as f:
        for d in DOCS:
            f.write(json.dumps({"body": d, "id": 1}) + "\n")
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist([{"body": d} for d in DOCS]), r / "docs.parquet")
    return r


def evaluate(root, run, *extra):
    rc = main(["eval", str(root / run), "--no-lambada-acc", "--threads", "1", *extra])
    path = root / run / "eval" / "zero_shot.json"
    return rc, (json.loads(path.read_text()) if path.exists() else None)


def test_glob_jsonl_and_parquet_give_the_same_exact_ar_bound(root, capsys):
    rc, rep = evaluate(root, "ar", "--text", str(root / "docs" / "*.txt"), "--min-blocks", "1")
    assert rc == 0, capsys.readouterr().err
    entry = rep["results"][str(root / "docs" / "*.txt")]
    # recompute: rows -> EOS-joined stream -> mdlm blocks -> exact AR NLL per scored token
    loaded = load_run(root / "ar")
    blocks = make_blocks(TOK.encode_batch(DOCS), [len(d) for d in DOCS], 16, "mdlm", TOK.eos_id, TOK.bos_id)
    with torch.no_grad():
        nll = loaded.objective.sequence_loss(loaded.model, {"input_ids": blocks.tokens}).double().numpy()
    counts = np.full(len(nll), 15.0)  # L - 1 scored tokens per block
    assert entry["tokens_scored"] == counts.sum()
    assert entry["nats_per_token"] == pytest.approx(nll.sum() / counts.sum(), rel=1e-5)
    assert entry["se"] == pytest.approx(ratio_se(nll, counts), rel=1e-4)
    assert entry["status"] == "ok" and entry["flags"] == []
    for spec in ("docs.jsonl", "docs.parquet"):
        rc, rep = evaluate(
            root, "ar", "--text", str(root / spec), "--text-field", "body", "--min-blocks", "1"
        )
        assert rc == 0, capsys.readouterr().err
        assert rep["results"][spec]["nats_per_token"] == pytest.approx(entry["nats_per_token"], rel=1e-6)
        assert spec.split(".")[1] in rep["results"][spec]["release"]


def test_too_few_blocks_are_flagged_in_table_and_json_and_refused_when_strict(root, capsys):
    short = root / "short.txt"
    short.write_text("abc def ghij. " * 4)  # 56 characters: 4 blocks of 14
    rc, rep = evaluate(root, "mdlm", "--text", str(short), "--time-samples", "2")
    out = capsys.readouterr().out
    assert rc == 0
    entry = rep["results"]["short.txt"]
    assert entry["status"] == "flagged" and "only 4 mdlm blocks" in entry["flags"][0]
    assert entry["checks"]["min_blocks"] == 20 and entry["checks"]["blocks"] == 4
    assert "FLAGGED" in out and "! short.txt: only 4 mdlm blocks" in out
    rc, rep = evaluate(root, "mdlm", "--text", str(short), "--strict", "--no-write")
    assert rc == 2
    assert "refused" in capsys.readouterr().out
    # the sedd protocol on one tiny file drops most of it: flagged for the dropped share
    tiny = root / "tiny.txt"
    tiny.write_text("abcdefghij abcdefghij")  # 21 chars + EOS = 22 tokens: one 16-token block, 6 dropped
    rc, rep = evaluate(root, "mdlm", "--text", str(tiny), "--protocol", "sedd", "--max-dropped", "0.2")
    assert rc == 0
    flags = rep["results"]["tiny.txt"]["flags"]
    assert any("drops 27%" in f for f in flags), flags


def test_text_too_short_for_one_block_is_refused_naming_why(root, capsys):
    f = root / "one.txt"
    f.write_text("abc")
    rc, rep = evaluate(root, "mdlm", "--text", str(f), "--no-write")
    assert rc == 2
    captured = capsys.readouterr()
    assert "fewer than one mdlm block" in captured.out and "every result was refused" in captured.err


def test_bad_text_inputs_are_clear_errors(root, capsys):
    for spec, extra, msg in [
        (str(root / "nothing*.txt"), [], "no file matches"),
        (str(root / "docs.jsonl"), [], "has no 'text' field"),
        (str(root / "docs.parquet"), ["--text-field", "nope"], "has no column 'nope'"),
        (str(root / "docs"), [], "is a directory"),
    ]:
        assert main(["eval", str(root / "ar"), "--text", spec, *extra]) == 2
        assert msg in capsys.readouterr().err


def test_load_text_row_modes(tmp_path):
    f = tmp_path / "a.txt"
    f.write_text("one\ntwo\n\nthree\n")
    assert load_text(str(f))[1].rows == ["one\ntwo\n\nthree\n"]
    assert load_text(str(f), rows="lines")[1].rows == ["one", "two", "three"]
    assert load_text(str(f), rows="paragraphs")[1].rows == ["one\ntwo", "three"]
