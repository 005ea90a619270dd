"""`mdm eval` end to end on tiny CPU-trained runs: tables, zero_shot.json, exactness for AR, bad input."""

from __future__ import annotations

import json
import math

import pytest
import torch

from mdm.cli import main
from mdm.eval.bound import estimate_bound
from mdm.eval.lambada import lambada_examples, split_passage
from mdm.eval.protocols import make_blocks
from mdm.eval.tokenizer import VocabMismatchError, check_vocab, run_tokenizer
from mdm.vocab import Vocab


def test_mdm_eval_on_the_shared_benchmarks(mdlm_run, bench_dir, capsys):
    args = ["eval", str(mdlm_run), "--benchmarks", "lambada,wikitext2,ag_news", "--data-dir", str(bench_dir)]
    rc = main(
        [*args, "--max-blocks", "6", "--max-lambada", "12", "--time-samples", "2", "--batch-size", "12"]
    )
    out = capsys.readouterr().out
    assert rc == 0
    assert "protocol: mdlm (default)" in out and "± = one standard error" in out
    report = json.loads((mdlm_run / "eval" / "zero_shot.json").read_text())
    assert set(report["results"]) == {"lambada", "wikitext2", "ag_news"}
    for name, r in report["results"].items():
        assert r["protocol"] == "mdlm" and r["time_samples"] == 2 and r["tokens_scored"] == 6 * 32, name
        assert r["se"] > 0 and math.isfinite(r["nats_per_token"]) and r["bits_per_byte"] > 0
        assert r["ppl_bound"] == pytest.approx(math.exp(r["nats_per_token"]))
        assert r["ppl_ci95"][0] < r["ppl_bound"] < r["ppl_ci95"][1]
    assert report["results"]["wikitext2"]["split"] == "validation"
    assert "TOKENIZED" in report["results"]["wikitext2"]["release"]
    lam = report["results"]["lambada"]
    assert lam["lambada_n"] == 12 and 0 <= lam["lambada_acc"] <= 1 and "diffusion" in lam["lambada_method"]
    # a second evaluation replaces its benchmark's entry and keeps the others
    assert (
        main([*args[:3], "ag_news", "--data-dir", str(bench_dir), "--max-blocks", "4", "--protocol", "sedd"])
        == 0
    )
    report = json.loads((mdlm_run / "eval" / "zero_shot.json").read_text())
    assert (
        report["results"]["ag_news"]["protocol"] == "sedd"
        and report["results"]["lambada"]["protocol"] == "mdlm"
    )
    assert "(default: mdlm)" in capsys.readouterr().out


def test_ptb_and_wikitext103_in_their_published_formats(mdlm_run, tmp_path):
    sents = ["no it was n't black monday", "but while the new york stock exchange did n't fall apart"]
    (tmp_path / "ptb.valid.txt").write_text("".join(f" {s} \n" for s in sents * 8))
    (tmp_path / "wikitext-103-raw").mkdir()
    para = " The cat sees the red ball @-@ like toy , and the dog follows it . \n"
    (tmp_path / "wikitext-103-raw" / "wiki.valid.raw").write_text(" \n = Cats = \n \n" + para * 6)
    rc = main(
        ["eval", str(mdlm_run), "--benchmarks", "ptb,wikitext103", "--data-dir", str(tmp_path), "--no-write"]
    )
    assert rc == 0


def test_lm1b_through_the_hub_code_path(mdlm_run, tmp_path, hub_repo):
    rows = [
        {"text": "The cat sees the red ball today ."},
        {"text": "Her brother paints a green house , slowly ."},
    ]
    hub_repo(tmp_path / "mirror", "billion-word-benchmark/lm1b", {"plain_text": {"test": rows * 8}})
    args = [
        "eval",
        str(mdlm_run),
        "--benchmarks",
        "lm1b",
        "--hub-mirror",
        str(tmp_path / "mirror"),
        "--source",
        "hub",
    ]
    assert main(args) == 0
    r = json.loads((mdlm_run / "eval" / "zero_shot.json").read_text())["results"]["lm1b"]
    assert r["rows"] == 16 and r["split"] == "test" and "billion-word-benchmark/lm1b" in r["source"]


def test_ar_bound_is_exact_and_matches_the_objective(ar_loaded, tok):
    rows = ["The cat sees the red ball today.", "A dog follows her brother at night."] * 4
    ids = tok.encode_batch(rows)
    b = make_blocks(ids, [len(r) for r in rows], ar_loaded.cfg.model.seq_len, "mdlm", tok.eos_id, tok.bos_id)
    res = estimate_bound(
        ar_loaded.objective, ar_loaded.model, b.tokens, K=4, seed=3, batch_size=2, nbytes=b.bytes
    )
    s = res.summary()
    assert s["exact"] and s["time_samples"] == 1
    with torch.no_grad():
        direct = (
            ar_loaded.objective.sequence_loss(ar_loaded.model, {"input_ids": b.tokens}, None).sum().item()
        )
    assert s["nats_per_token"] == pytest.approx(direct / (len(b) * (b.seq_len - 1)), rel=1e-5)
    assert s["bits_per_byte"] == pytest.approx(direct / math.log(2) / b.bytes.sum(), rel=1e-5)


def test_blocks_decode_back_to_the_detokenized_text(tok, mdlm_loaded):
    docs = ["The cat sees the red ball today.", " = Title = \n", "", "Her brother paints a green house."]
    ids = tok.encode_batch(docs)
    b = make_blocks(ids, [len(d.encode()) for d in docs], 8, "mdlm", tok.eos_id, tok.bos_id)
    body = b.tokens[:, 1:-1].reshape(-1).tolist()  # strip each block's [BOS] ... [EOS]
    stream = [t for d in ids for t in (*d, tok.eos_id)]
    assert body == stream[: len(body)] and len(stream) - len(body) == b.tokens_dropped
    assert tok.decode(ids[0]) == docs[0]


def test_lambada_context_longer_than_the_model_is_left_truncated(tok):
    long = " ".join(["the old man sees the quiet garden"] * 40) + " again"
    ex, truncated = lambada_examples([long, "The cat likes the red ball"], tok, seq_len=32)
    assert truncated == 1
    (ctx, tgt), (ctx2, tgt2) = ex
    assert len(ctx) + len(tgt) == 32 and ctx[0] == tok.bos_id
    assert tok.decode(tgt) == " again" and tok.decode(tgt2) == " ball"
    assert tok.decode(ctx2[1:]) == "The cat likes the red"
    assert split_passage("He said \u201chi\u201d to Anna ") == ('He said "hi" to', " Anna")


def test_ar_lambada_accuracy_is_exact_greedy(ar_run, bench_dir, capsys):
    rc = main(["eval", str(ar_run), "--benchmarks", "lambada", "--data-dir", str(bench_dir), "--max-blocks", "2",
               "--max-lambada", "8", "--no-write"])  # fmt: skip
    assert rc == 0 and "LAMBADA acc" in capsys.readouterr().out


def test_bad_input_from_the_command_line(mdlm_run, tmp_path, capsys):
    assert main(["eval", str(mdlm_run), "--benchmarks", "lambada,wiki"]) == 2
    err = capsys.readouterr().err
    assert "unknown benchmark(s) 'wiki'" in err and "wikitext103" in err and "ag_news" in err
    assert (
        main(
            [
                "eval",
                str(mdlm_run),
                "--benchmarks",
                "ag_news",
                "--data-dir",
                str(tmp_path),
                "--source",
                "local",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "ag_news_test.csv" in err and str(tmp_path) in err
    assert main(["eval", str(tmp_path / "no-run"), "--benchmarks", "ptb"]) == 2
    assert "no run directory or checkpoint" in capsys.readouterr().err


def test_vocabulary_mismatch_is_refused(mdlm_run, mdlm_loaded, eval_root, capsys):
    from mdm.config import DataConfig
    from mdm.data.datamodule import ensure_prepared

    char_dir = ensure_prepared(
        DataConfig(
            name="files", path=str(eval_root / "corpus"), tokenizer="char", dir=str(eval_root / "data-char")
        ),
        progress=False,
    )
    assert main(["eval", str(mdlm_run), "--benchmarks", "lambada", "--tokenizer-dir", str(char_dir)]) == 2
    err = capsys.readouterr().err
    assert "does not match" in err and f"mask_id={mdlm_loaded.vocab.mask_id}" in err
    with pytest.raises(VocabMismatchError):
        run_tokenizer(mdlm_loaded.cfg, mdlm_loaded.vocab, char_dir)

    class Tok:
        n_real, eos_id, bos_id = 319, 5, 5

    with pytest.raises(VocabMismatchError, match="EOS id 5 vs 0"):
        check_vocab(Tok(), Vocab(size=320, mask_id=319, eos_id=0, bos_id=0))
