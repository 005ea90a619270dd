"""Benchmark loaders: local files in their published formats, the Hub code path (through a local mirror
laid out like the Hub repositories), and the errors for bad input."""

from __future__ import annotations

import json

import pytest

from mdm.eval.benchmarks import (
    BENCHMARKS,
    BenchmarkError,
    load_benchmark,
    parse_benchmarks,
    wikitext_rows,
)
from mdm.eval.detokenizers import ptb, wikitext


def _offline() -> bool:
    return False


def test_unknown_benchmark_lists_valid_names():
    with pytest.raises(BenchmarkError) as e:
        parse_benchmarks("lambada,wikitext3")
    msg = str(e.value)
    assert "'wikitext3'" in msg
    for name in ("lambada", "wikitext2", "ptb", "wikitext103", "lm1b", "ag_news", "pubmed", "arxiv"):
        assert name in msg
    assert [b.name for b in parse_benchmarks(" ptb , lm1b ")] == ["ptb", "lm1b"]


def test_wikitext_rows_match_the_hub_layout():
    assert wikitext_rows(" \n = A = \n \n text here . \n") == ["", " = A = \n", "", " text here . \n"]


def test_local_formats(tmp_path):
    d = tmp_path
    (d / "lambada_test.jsonl").write_text(
        json.dumps({"text": "He opened the \u201cdoor\u201d and saw Anna"})
        + "\n"
        + json.dumps({"text": "x y"})
        + "\n"
    )
    (d / "wikitext-103-raw").mkdir()
    (d / "wikitext-103-raw" / "wiki.valid.raw").write_text(" \n = Title = \n \n It is 1 @,@ 000 km long . \n")
    (d / "ptb.valid.txt").write_text(" no it was n't black monday \n the company 's N shares \n")
    (d / "ag_news_test.csv").write_text('label,title,description\n3,"Wall St","Bears, claw back"\n')
    (d / "pubmed_validation.jsonl").write_text(
        json.dumps({"article_text": ["First line .", "Second ( a ) ."]}) + "\n"
    )
    (d / "lm1b_test.txt").write_text("Hello , world .\n\nIt costs $ 5 .\n")

    lam = load_benchmark("lambada", data_dir=d, source="local")
    assert lam.split == "test" and lam.rows[0] == "He opened the \u201cdoor\u201d and saw Anna"
    assert lam.docs[0] == '\nHe opened the "door" and saw Anna' and lam.release.startswith("OpenAI")

    wt = load_benchmark("wikitext103", data_dir=d, source="local")  # auto split = validation
    assert wt.split == "validation" and "raw release" in wt.release
    assert wt.rows == ["", " = Title = \n", "", " It is 1 @,@ 000 km long . \n"]
    assert wt.docs == [wikitext(r) for r in wt.rows] and wt.docs[3] == " It is 1,000 km long.\n"

    p = load_benchmark("ptb", data_dir=d, source="local")
    assert p.rows == ["no it was n't black monday", "the company 's N shares"]
    assert p.docs == [ptb(r) for r in p.rows]
    with pytest.raises(BenchmarkError, match="ptb.test.txt"):
        load_benchmark("ptb", split="test", data_dir=d, source="local")

    ag = load_benchmark("ag_news", data_dir=d, source="local")
    assert ag.rows == ["Wall St Bears, claw back"] and ag.docs == ag.rows
    (d / "ag_news_test.csv").write_text('3,"Wall St","Bears"\n1,"A","B"\n')  # original release: no header
    assert load_benchmark("ag_news", data_dir=d, source="local").rows == ["Wall St Bears", "A B"]

    pm = load_benchmark("pubmed", data_dir=d, source="local")
    assert pm.rows == ["First line .\nSecond ( a ) ."] and pm.docs == [
        "First line .\nSecond (a) ."
    ]  # the rules match " . " and a final " word ." only

    lm = load_benchmark("lm1b", data_dir=d, source="local")
    assert lm.rows == ["Hello , world .", "It costs $ 5 ."] and lm.docs == ["Hello, world.", "It costs $5."]


def test_tokenized_wikitext_release_is_labelled(tmp_path):
    (tmp_path / "wikitext2_test.tokens").write_text(" = A = \n the <unk> runs . \n")
    wt = load_benchmark("wikitext2", split="test", data_dir=tmp_path, source="local")
    assert "TOKENIZED" in wt.release and wt.docs[1] == " the <unk> runs.\n"


def test_missing_file_and_offline_hub_errors(tmp_path):
    with pytest.raises(BenchmarkError) as e:
        load_benchmark("lambada", data_dir=tmp_path, source="local")
    assert "lambada_test.jsonl" in str(e.value) and str(tmp_path) in str(e.value)
    with pytest.raises(BenchmarkError) as e:
        load_benchmark("arxiv", data_dir=tmp_path, source="auto", reachable=_offline)
    msg = str(e.value)
    assert "not reachable" in msg and "arxiv_validation.jsonl" in msg and "--data-dir" in msg
    with pytest.raises(BenchmarkError, match="does not exist"):
        load_benchmark("ptb", data_dir=tmp_path / "nope")
    with pytest.raises(BenchmarkError, match="no split 'train'"):
        load_benchmark("ptb", split="train", data_dir=tmp_path)
    (tmp_path / "lambada_test.jsonl").write_text('{"text": "a b"}\nnot json\n')
    with pytest.raises(BenchmarkError, match="line 2 is not valid JSON"):
        load_benchmark("lambada", data_dir=tmp_path)


def test_hub_code_path_through_a_mirror(tmp_path, hub_repo):
    mirror = tmp_path / "mirror"
    hub_repo(
        mirror,
        "billion-word-benchmark/lm1b",
        {"plain_text": {"test": [{"text": "Hello , world ."}, {"text": "Is it ?"}]}},
    )
    paper = {"article": "We show ( a ) result @-@ free .", "abstract": "x", "section_names": "intro"}
    hub_repo(
        mirror,
        "armanc/scientific_papers",
        {"pubmed": {"validation": [paper]}, "arxiv": {"validation": [paper, paper]}},
    )
    hub_repo(
        mirror,
        "ptb-text-only/ptb_text_only",
        {"penn_treebank": {"validation": [{"sentence": "it was n't N"}]}},
    )
    cache = str(tmp_path / "hf-cache")

    lm = load_benchmark("lm1b", hub_mirror=mirror, source="hub", cache_dir=cache)
    assert lm.rows == ["Hello , world .", "Is it ?"] and lm.docs == ["Hello, world.", "Is it?"]
    assert "billion-word-benchmark/lm1b" in lm.source
    pm = load_benchmark("pubmed", hub_mirror=mirror, source="hub", cache_dir=cache)
    assert pm.rows == [paper["article"]] and pm.docs == ["We show (a) result-free ."]
    ax = load_benchmark("arxiv", hub_mirror=mirror, source="hub", cache_dir=cache)
    assert len(ax.rows) == 2 and ax.split == "validation"
    pt = load_benchmark("ptb", hub_mirror=mirror, source="hub", cache_dir=cache)
    assert pt.docs == ["it wasn't N"]  # " N " rule needs surrounding spaces, as in the papers
    with pytest.raises(BenchmarkError, match="cannot load ag_news"):
        load_benchmark("ag_news", hub_mirror=mirror, source="hub", cache_dir=cache)


def test_every_benchmark_declares_local_and_hub_sources():
    for b in BENCHMARKS.values():
        assert b.local and b.hub and b.auto_split in b.splits, b.name
