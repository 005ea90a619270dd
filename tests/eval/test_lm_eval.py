"""The lm-evaluation-harness adapter on a local task file (a tiny custom YAML task over a local jsonl)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

DOCS = [
    {"context": "The cat sees the red", "target": " ball", "text": "The cat sees the red ball today."},
    {
        "context": "Her brother paints a green",
        "target": " house",
        "text": "Her brother paints a green house. " * 6,
    },
    {"context": "A dog follows the long", "target": " road", "text": "A dog follows the long road at night."},
]


@pytest.fixture
def task_dir(tmp_path):
    data = tmp_path / "tiny.jsonl"
    data.write_text("".join(json.dumps(d) + "\n" for d in DOCS))
    common = f"dataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {data}\ntest_split: test\n"
    (tmp_path / "tiny_ll.yaml").write_text(
        "task: mdm_tiny_ll\n" + common + "output_type: loglikelihood\n"
        'doc_to_text: "{{context}}"\ndoc_to_target: "{{target}}"\n'
        "metric_list:\n  - metric: perplexity\n    aggregation: perplexity\n    higher_is_better: false\n"
        "  - metric: acc\n    aggregation: mean\n    higher_is_better: true\n"
    )
    (tmp_path / "tiny_rolling.yaml").write_text(
        "task: mdm_tiny_rolling\n" + common + "output_type: loglikelihood_rolling\n"
        'doc_to_text: ""\ndoc_to_target: "{{text}}"\n'
        "metric_list:\n  - metric: word_perplexity\n  - metric: byte_perplexity\n  - metric: bits_per_byte\n"
    )
    return tmp_path


def _run(lm, task_dir):
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    tm = TaskManager(include_path=str(task_dir), include_defaults=False)
    out = simple_evaluate(
        model=lm, tasks=["mdm_tiny_ll", "mdm_tiny_rolling"], task_manager=tm, log_samples=False
    )
    return out["results"]


def test_rolling_pairs_cover_every_token_once():
    from mdm.eval.lm_eval_adapter import rolling_pairs, split_context

    pairs = rolling_pairs(list(range(10, 30)), prefix=1, seq_len=8)
    assert [t for _, c in pairs for t in c] == list(range(10, 30))
    assert all(ctx and len(ctx) + len(c) <= 8 for ctx, c in pairs)
    assert pairs[0][0] == [1] and pairs[-1][0][-1] == pairs[-1][1][0] - 1  # max context for the last piece
    assert len(pairs[-1][0]) + len(pairs[-1][1]) == 8
    assert split_context("a b ", "c") == ("a b", " c")


def test_adapter_is_exact_for_ar(ar_loaded, tok, task_dir):
    from mdm.eval.lm_eval_adapter import MDMLM

    lm = MDMLM(loaded=ar_loaded, tokenizer=tok, time_samples=4)
    res = _run(lm, task_dir)
    # rolling: every token of [BOS] + enc(text) scored once; the texts that fit equal the AR objective's NLL
    L = ar_loaded.cfg.model.seq_len
    nats, nbytes = 0.0, 0
    for d in DOCS:
        ids = [tok.bos_id, *tok.encode(d["text"])]
        with torch.no_grad():
            if len(ids) <= L:
                nats += float(
                    ar_loaded.objective.sequence_loss(
                        ar_loaded.model, {"input_ids": torch.tensor([ids])}, None
                    )
                )
            else:  # long text: lm-eval rolling windows, checked against the adapter's own pieces
                nats += -lm.loglikelihood_rolling([_Req((d["text"],))])[0]
        nbytes += len(d["text"].encode())
    assert res["mdm_tiny_rolling"]["bits_per_byte,none"] == pytest.approx(
        nats / nbytes / math.log(2), rel=1e-5
    )
    # loglikelihood: -log p(target | [BOS] + context), exact; acc = greedy
    ll = [lm.loglikelihood([_Req((d["context"], d["target"]))])[0] for d in DOCS]
    direct = []
    for d in DOCS:
        ctx, whole = tok.encode(d["context"]), tok.encode(d["context"] + d["target"])
        ids = [tok.bos_id, *whole]
        with torch.no_grad():
            logp = ar_loaded.objective.log_probs(ar_loaded.model, torch.tensor([ids[:-1]]))[0]
        direct.append(sum(float(logp[i - 1, ids[i]]) for i in range(len(ctx) + 1, len(ids))))
    assert np.allclose([x for x, _ in ll], direct, rtol=1e-5)
    assert res["mdm_tiny_ll"]["perplexity,none"] == pytest.approx(math.exp(-np.mean(direct)), rel=1e-4)
    assert res["mdm_tiny_ll"]["acc,none"] == pytest.approx(np.mean([g for _, g in ll]))


def test_adapter_bounds_diffusion_models(mdlm_loaded, tok, task_dir):
    from mdm.eval.lm_eval_adapter import MDMLM

    lm = MDMLM(loaded=mdlm_loaded, tokenizer=tok, time_samples=2)
    res = _run(lm, task_dir)
    bpb = res["mdm_tiny_rolling"]["bits_per_byte,none"]
    assert math.isfinite(bpb) and bpb > 0
    assert math.isfinite(res["mdm_tiny_ll"]["perplexity,none"]) and 0 <= res["mdm_tiny_ll"]["acc,none"] <= 1
    with pytest.raises(NotImplementedError, match="mdm sample"):
        lm.generate_until([_Req(("x", {}))])
    with pytest.raises(ValueError, match="does not fit"):
        lm.loglikelihood([_Req(("a", " b" * 100))])


class _Req:
    def __init__(self, args):
        self.args = args
