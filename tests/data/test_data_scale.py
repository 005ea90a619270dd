"""Data at scale: parallel, sharded, streaming and resumable prepares give the bytes of a plain one;
memory does not grow with the corpus."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import datasets
import numpy as np
import pytest

from mdm.config import DataConfig, PrepareConfig
from mdm.data import BlockLoader, ensure_prepared, load_meta
from mdm.data.parallel import batches
from mdm.data.shards import ShardedTokens

from .conftest import make_texts

REPO = Path(__file__).resolve().parents[2]


def _files(d: Path) -> dict[str, bytes]:
    """Every file of a prepared dir except meta.json (which records the shard layout)."""
    return {f.name: f.read_bytes() for f in sorted(d.iterdir()) if f.name != "meta.json"}


def _stream(d: Path, split: str) -> bytes:
    meta = load_meta(d)
    info = meta.splits[split]
    names = [s["file"] for s in info.shards] if info.shards else [info.file]
    return b"".join((d / n).read_bytes() for n in names)


def _jsonl_corpus(root: Path, n_docs: int, seed: int = 0, words: int = 60, per_file: int = 50) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    texts = make_texts(n_docs, seed=seed, words_per_doc=words)
    for k in range(0, n_docs, per_file):
        with open(root / f"part{k // per_file:04d}.jsonl", "w") as f:
            for t in texts[k : k + per_file]:
                f.write(json.dumps({"text": t}) + "\n")
    return root


def test_batches_cut_by_characters_and_count():
    docs = ["a" * 3, "b" * 5, "c", "d" * 10, "e", "f", "g"]
    assert list(batches(docs, batch_chars=8, batch_docs=3)) == [
        ["aaa", "bbbbb"],
        ["c", "d" * 10],
        ["e", "f", "g"],
    ]
    assert sum(list(batches(iter(docs), 1 << 20, 2)), []) == docs


def test_sharded_tokens_reads_across_boundaries():
    whole = np.arange(23, dtype=np.uint16)
    st = ShardedTokens([whole[:5], whole[5:6], whole[6:17], whole[17:]])
    assert len(st) == 23
    for a, b in [(0, 23), (3, 9), (5, 6), (4, 18), (22, 23), (7, 7)]:
        assert np.array_equal(st[a:b], whole[a:b])
    idx = np.array([[0, 5, 6], [22, 16, 17]])
    assert np.array_equal(st[idx], whole[idx])
    assert np.array_equal(np.asarray(st), whole)
    with pytest.raises(IndexError):
        st[np.array([23])]


@pytest.mark.parametrize("tokenizer", ["char", "bpe"])
def test_parallel_sharded_prepare_equals_plain(tmp_path, tokenizer):
    src = _jsonl_corpus(tmp_path / "corpus", 300, seed=1)
    plain = DataConfig(
        name="files", path=str(src), tokenizer=tokenizer, vocab_size=320, dir=str(tmp_path / "a")
    )
    a = ensure_prepared(plain, progress=False)
    sharded = DataConfig(
        name="files",
        path=str(src),
        tokenizer=tokenizer,
        vocab_size=320,
        dir=str(tmp_path / "b"),
        prepare=PrepareConfig(num_proc=2, shard_tokens=5000, batch_chars=3000, batch_docs=7),
    )
    b = ensure_prepared(sharded, progress=False)
    ma, mb = load_meta(a), load_meta(b)
    assert ma.splits["train"].shards is None and ma.splits["train"].file == "train.bin"
    shards = mb.splits["train"].shards
    assert shards is not None and len(shards) >= 3
    assert all(sh["tokens"] >= 5000 for sh in shards[:-1])
    assert sorted(f.name for f in b.iterdir() if f.name.startswith("train")) == sorted(
        [sh["file"] for sh in shards] + [sh["index_file"] for sh in shards]
    )
    for split in ("train", "validation", "test"):
        assert _stream(a, split) == _stream(b, split)
        assert ma.splits[split].sha256 == mb.splits[split].sha256  # the whole-stream hash
        assert ma.splits[split].tokens == mb.splits[split].tokens
        assert ma.splits[split].documents == mb.splits[split].documents
    assert ma.tokenizer_sha256 == mb.tokenizer_sha256 and len(ma.tokenizer_sha256) == 64
    # the loader serves identical batches from either layout, wrap and no-wrap
    for kw in (dict(train=True), dict(train=True, wrap=False), dict(train=False, add_bos=True)):
        la = iter(BlockLoader(a, "train", 48, 5, seed=3, **kw))
        lb = iter(BlockLoader(b, "train", 48, 5, seed=3, **kw))
        for _ in range(40):
            xa, xb = next(la), next(lb)
            assert all(np.array_equal(xa[k].numpy(), xb[k].numpy()) for k in xa)
    # a corrupted shard is caught by its own checksum
    p = b / shards[1]["file"]
    raw = bytearray(p.read_bytes())
    raw[0] ^= 1
    p.write_bytes(bytes(raw))
    with pytest.raises(Exception, match=f"corrupt shard .*{shards[1]['file']}"):
        BlockLoader(b, "train", 48, 5)


def _hf_parquet(tmp_path: Path, n: int = 120) -> Path:
    d = tmp_path / "fw"
    d.mkdir()
    texts = make_texts(n, seed=5, words_per_doc=20)
    for k in range(3):  # three parquet files, as a Hub download of fineweb-edu is
        part = slice(k * n // 3, (k + 1) * n // 3)
        ids = [f"<urn:{i}>" for i in range(n)][part]
        datasets.Dataset.from_dict({"text": texts[part], "id": ids}).to_parquet(
            str(d / f"{k:03d}_00000.parquet")
        )
    return d


def test_hf_streaming_parallel_parquet_equals_arrow(tmp_path, monkeypatch):
    """The README recipe's code path (fineweb_edu: local parquet copy, streaming, 2 workers, shards)
    gives the bytes of the plain Arrow path; so does openwebtext's hold-out of the last documents."""
    import dataclasses

    from mdm.data import hf as hf_mod

    d = _hf_parquet(tmp_path)
    monkeypatch.setitem(
        hf_mod.SPECS, "fineweb_edu", dataclasses.replace(hf_mod.SPECS["fineweb_edu"], hash_split=0.1)
    )
    monkeypatch.setitem(
        hf_mod.SPECS, "openwebtext", dataclasses.replace(hf_mod.SPECS["openwebtext"], holdout_last=17)
    )
    for name in ("fineweb_edu", "openwebtext"):
        base = dict(name=name, path=str(d / "*.parquet"), tokenizer="bpe", vocab_size=320)
        a = ensure_prepared(DataConfig(**base, dir=str(tmp_path / f"{name}-a")), progress=False)
        fast = PrepareConfig(num_proc=2, streaming=True, shard_tokens=2000, batch_chars=1500)
        b = ensure_prepared(DataConfig(**base, dir=str(tmp_path / f"{name}-b"), prepare=fast), progress=False)
        ma, mb = load_meta(a), load_meta(b)
        assert set(ma.splits) == set(mb.splits)
        for split in ma.splits:
            assert _stream(a, split) == _stream(b, split), (name, split)
            assert ma.splits[split].sha256 == mb.splits[split].sha256
        assert mb.splits["train"].shards is not None
        assert [f["file"] for f in mb.sources[0]["files"]] == sorted(str(f) for f in d.glob("*.parquet"))
        if name == "openwebtext":
            assert ma.n_documents["validation"] == 17


_PREPARE_SCRIPT = r"""
import json, os, resource, sys, time
from mdm.config import DataConfig, PrepareConfig
from mdm.data.prepare import prepare
import mdm.data.shards as shards
args = json.loads(sys.argv[1])
if args.get("slow"):
    add = shards.ShardWriter.add_flat
    def slow_add(self, *a):
        time.sleep(args["slow"])
        return add(self, *a)
    shards.ShardWriter.add_flat = slow_add
cfg = DataConfig(name="files", path=args["path"], tokenizer=args["tokenizer"], vocab_size=320,
                 prepare=PrepareConfig(**args["prepare"]))
prepare(cfg, __import__("pathlib").Path(args["out"]), progress=False)
# this process's peak from VmHWM (ru_maxrss survives exec on Linux: it would be the parent's), the
# forked workers' from RUSAGE_CHILDREN
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
rss = max(hwm, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
print(json.dumps({"maxrss_kib": rss}))
"""


def _run_prepare(args: dict, wait: bool = True) -> subprocess.Popen | dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-c", _PREPARE_SCRIPT, json.dumps(args)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if not wait:
        return proc
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


def test_resume_after_sigkill_is_byte_identical(tmp_path):
    src = _jsonl_corpus(tmp_path / "corpus", 400, seed=2)
    prep = dict(num_proc=2, shard_tokens=4000, batch_chars=2000, batch_docs=16)
    base = dict(path=str(src), tokenizer="bpe", prepare=prep)
    _run_prepare({**base, "out": str(tmp_path / "whole")})
    out = tmp_path / "resumed"
    partial = tmp_path / ".resumed.partial"
    proc = _run_prepare({**base, "out": str(out), "slow": 0.05}, wait=False)
    deadline = time.time() + 300
    done = 0
    while time.time() < deadline and proc.poll() is None:
        try:
            prog = json.loads((partial / "progress.json").read_text())
            done = len(prog["splits"].get("train", {}).get("shards", []))
        except (OSError, ValueError):
            done = 0
        if done >= 3:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the prepare finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists() and partial.is_dir()
    first = partial / "train-00000.bin"
    stamp = first.stat().st_mtime_ns
    _run_prepare({**base, "out": str(out)})  # the same command again: resumes
    assert (out / "train-00000.bin").stat().st_mtime_ns == stamp  # the completed shards were kept
    assert _files(out) == _files(tmp_path / "whole")
    assert (
        json.loads((out / "meta.json").read_text())["splits"]
        == json.loads((tmp_path / "whole" / "meta.json").read_text())["splits"]
    )
    assert not partial.exists() and not (out / "progress.json").exists()


def test_peak_memory_does_not_grow_with_the_corpus(tmp_path):
    """maxrss of a 2-worker prepare (main process and workers) for corpora of ~4 MB and ~24 MB of text:
    the larger corpus may not cost more than a small fraction of its extra size."""
    rss = {}
    sizes = {}
    for n_docs in (1000, 6000):
        src = _jsonl_corpus(tmp_path / f"c{n_docs}", n_docs, seed=3, words=600, per_file=500)
        sizes[n_docs] = sum(f.stat().st_size for f in src.iterdir())
        prep = dict(num_proc=2, shard_tokens=1 << 20, batch_chars=1 << 18)
        r = _run_prepare(
            {"path": str(src), "tokenizer": "char", "prepare": prep, "out": str(tmp_path / f"o{n_docs}")}
        )
        rss[n_docs] = r["maxrss_kib"] * 1024
    extra = sizes[6000] - sizes[1000]
    assert extra > 15e6
    assert rss[6000] - rss[1000] < 0.3 * extra, (rss, sizes)


def test_normalize_fast_path_equals_its_regex_definition():
    """normalize() strips trailing blanks per line without a regex (4x faster); same output as before."""
    import random
    import re

    from mdm.data.text import _CTRL, _OVERSTRIKE, normalize

    def reference(text: str) -> str:
        text = text.replace("\ufeff", "").replace("\r\n", "\n").replace("\r", "\n")
        if "\x08" in text:
            text = _OVERSTRIKE.sub("", text)
        text = _CTRL.sub("", text)
        text = re.sub(r"[ \t]+\n", "\n", text)
        text = re.sub(r"\n{3,}", "\n\n", text)
        return text.strip()

    rng = random.Random(0)
    alphabet = ["a", "é", " ", "\t", "\n", "\r", "\x0c", "\x08", "_", "\ufeff"]
    for _ in range(5000):
        t = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        assert normalize(t) == reference(t), repr(t)
