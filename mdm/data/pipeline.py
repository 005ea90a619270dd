"""Text corpus -> tokenizer -> shards. The recipes (books, files, HF datasets) build a :class:`Corpus`;
:func:`write_corpus` trains/loads the tokenizer, encodes every split in batches (in the main process or
over ``data.prepare.num_proc`` workers, :mod:`mdm.data.parallel`) and returns the meta.

Each split is written shard by shard: a shard is closed after the first batch that brings it to
``prepare.shard_tokens`` tokens, its files are fsynced and ``progress.json`` (atomically replaced) records
it and the number of input documents consumed. A prepare killed at any point resumes after the last
recorded shard (the tokenizer is reused, the consumed documents are skipped, later files are removed) and
writes exactly the bytes an uninterrupted prepare would: batch and shard boundaries depend only on the
document stream. A split that ends with one shard is renamed ``<split>.bin`` / ``.idx`` (the single-file
layout); otherwise ``SplitInfo.shards`` lists the shards and ``sha256`` is that of the whole stream.

Memory: the documents of at most ``2 * num_proc + 2`` batches of ``prepare.batch_chars`` characters (or
one document, when longer) plus their tokens, whatever the corpus size (and the BPE trainer's state when
a BPE is trained, on at most ``TOKENIZER_TRAIN_CHARS`` of text).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from mdm.data.meta import DataError, DataMeta, SplitInfo, dtype_for, padded_vocab_size
from mdm.data.parallel import TokenizerSpec, batches, encode_batches
from mdm.data.shards import ShardWriter, sha256_file
from mdm.data.tokenizer import (
    TOKENIZER_FILE,
    TextTokenizer,
    build_tokenizer,
    load_tokenizer,
    tokenizer_from_file,
)

PROGRESS_FILE = "progress.json"
TOKENIZER_TRAIN_CHARS = 200_000_000  # train the BPE / char vocabulary on at most this much text


@dataclass
class Corpus:
    """Documents per split. ``splits[name]()`` yields document texts (called once per pass)."""

    splits: dict[str, Callable[[], Iterable[str]]]
    sources: list[dict[str, Any]] = field(default_factory=list)
    sizes: dict[str, int | None] = field(default_factory=dict)  # documents per split, for progress bars
    aliases: dict[str, str] = field(default_factory=dict)  # split -> split whose shard it shares
    layout: str = "flat-eos"  # flat-eos: EOS after each document | stream: no EOS (one document per split)

    @classmethod
    def from_lists(cls, split_docs: dict[str, list[str]], sources: list[dict[str, Any]]) -> Corpus:
        """An in-memory corpus from ``{split: [document text, ...]}``."""

        def lister(docs: list[str]) -> Callable[[], Iterable[str]]:
            return lambda: iter(docs)

        return cls(
            splits={s: lister(v) for s, v in split_docs.items()},
            sources=sources,
            sizes={s: len(v) for s, v in split_docs.items()},
        )


def _capped(texts: Iterable[str], max_chars: int) -> Iterator[str]:
    n = 0
    for t in texts:
        yield t
        n += len(t)
        if n >= max_chars:
            return


def read_progress(out_dir: Path) -> dict[str, Any]:
    p = Path(out_dir) / PROGRESS_FILE
    return json.loads(p.read_text()) if p.is_file() else {"identity": None, "tokenizer": None, "splits": {}}


def write_progress(out_dir: Path, prog: dict[str, Any]) -> None:
    p = Path(out_dir) / PROGRESS_FILE
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(json.dumps(prog, indent=1) + "\n")
    os.replace(tmp, p)


def _prep(cfg: Any) -> Any:
    from mdm.config import PrepareConfig

    return getattr(cfg, "prepare", None) or PrepareConfig()


def _tokenizer(
    cfg: Any, corpus: Corpus, out_dir: Path, prog: dict[str, Any], progress: bool
) -> TextTokenizer:
    """The tokenizer recorded in progress.json (resume), else one built (trained) now and recorded."""
    rec = prog.get("tokenizer")
    path = Path(out_dir) / TOKENIZER_FILE
    if rec and path.is_file() and sha256_file(path) == rec["sha256"]:
        return tokenizer_from_file(path, rec["kind"], rec["eos_id"], rec["bos_id"], rec["pad_id"])
    src = _prep(cfg).tokenizer_from
    if src:
        tok = load_tokenizer(src)
        if tok.kind != cfg.tokenizer:
            raise DataError(
                f"data.prepare.tokenizer_from={src!r} holds a {tok.kind} tokenizer, not {cfg.tokenizer}"
            )
    else:
        train_texts = corpus.splits["train"]
        tok = build_tokenizer(cfg, lambda: _capped(train_texts(), TOKENIZER_TRAIN_CHARS), progress)
    tok.save(out_dir)
    prog["tokenizer"] = {"kind": tok.kind, "sha256": sha256_file(path), **tok.specials()}
    prog["splits"] = {}  # shards made with another tokenizer are void
    write_progress(out_dir, prog)
    return tok


def _shard_record(info: SplitInfo) -> dict[str, Any]:
    return {k: getattr(info, k) for k in ("file", "index_file", "tokens", "documents", "sha256")}


def _shard_name(split: str, k: int) -> str:
    return f"{split}-{k:05d}"


def _valid_shards(out_dir: Path, done: list[dict[str, Any]], itemsize: int) -> list[dict[str, Any]]:
    """The recorded shards whose files are still there with the recorded sizes (a prefix of ``done``)."""
    ok = []
    for sh in done:
        f, i = Path(out_dir) / sh["file"], Path(out_dir) / sh["index_file"]
        if not (f.is_file() and f.stat().st_size == sh["tokens"] * itemsize and i.is_file()):
            break
        ok.append(sh)
    return ok


def _write_split(
    cfg: Any,
    split: str,
    factory: Callable[[], Iterable[str]],
    total: int | None,
    spec: TokenizerSpec,
    mask_id: int,
    out_dir: Path,
    prog: dict[str, Any],
    progress: bool,
) -> SplitInfo:
    p = _prep(cfg)
    itemsize = np.dtype(spec.dtype).itemsize
    state = prog["splits"].get(split) or {"docs": 0, "shards": [], "info": None}
    if state.get("info") is not None:
        return SplitInfo(**state["info"])
    shards = _valid_shards(out_dir, state["shards"], itemsize)
    if len(shards) != len(state["shards"]):
        shards = []  # a recorded shard went missing (e.g. killed while renaming): redo the split
    docs = state["docs"] if shards else 0
    keep = {sh["file"] for sh in shards} | {sh["index_file"] for sh in shards}
    for f in list(Path(out_dir).glob(f"{split}-*.bin")) + list(Path(out_dir).glob(f"{split}-*.idx")):
        if f.name not in keep:
            f.unlink()
    for f in (f"{split}.bin", f"{split}.idx"):
        (Path(out_dir) / f).unlink(missing_ok=True)
    stream_hash = hashlib.sha256()
    for sh in shards:  # the whole-stream hash continues over the shards already written
        with open(Path(out_dir) / sh["file"], "rb") as fh:
            while b := fh.read(1 << 22):
                stream_hash.update(b)

    def save() -> None:
        prog["splits"][split] = {"docs": docs, "shards": shards, "info": None}
        write_progress(out_dir, prog)

    writer: ShardWriter | None = None
    stream = batches(itertools.islice(factory(), docs, None), p.batch_chars, p.batch_docs)
    with tqdm(
        total=total, initial=docs, desc=f"tokenize {cfg.name}/{split}", unit="doc", disable=not progress
    ) as bar:
        for flat, lengths, n in encode_batches(spec, stream, p.num_proc):
            if writer is None:
                writer = ShardWriter(
                    out_dir, _shard_name(split, len(shards)), spec.dtype, mask_id, spec.eos_id
                )
            writer.add_flat(flat, lengths)
            stream_hash.update(flat.tobytes())
            docs += n
            bar.update(n)
            if writer.tokens >= p.shard_tokens:
                shards.append(_shard_record(writer.close()))
                writer = None
                save()
    if writer is not None and (writer.tokens or not shards):
        shards.append(_shard_record(writer.close()))
    elif writer is not None:
        writer.close()
        for f in (writer.file, writer.index_file):
            (Path(out_dir) / f).unlink()
    tokens = sum(sh["tokens"] for sh in shards)
    if tokens == 0:
        raise DataError(f"data.name={cfg.name}: split {split!r} is empty after tokenization")
    if len(shards) == 1:  # the single-file layout
        os.replace(Path(out_dir) / shards[0]["file"], Path(out_dir) / f"{split}.bin")
        os.replace(Path(out_dir) / shards[0]["index_file"], Path(out_dir) / f"{split}.idx")
        info = SplitInfo(
            tokens=tokens,
            documents=shards[0]["documents"],
            file=f"{split}.bin",
            sha256=shards[0]["sha256"],
            index_file=f"{split}.idx",
        )
    else:
        info = SplitInfo(
            tokens=tokens,
            documents=sum(sh["documents"] for sh in shards),
            file=f"{split}-*.bin",
            sha256=stream_hash.hexdigest(),
            index_file=f"{split}-*.idx",
            shards=[
                {k: sh[k] for k in ("file", "index_file", "tokens", "documents", "sha256")} for sh in shards
            ],
        )
    prog["splits"][split] = {"docs": docs, "shards": shards, "info": dataclasses.asdict(info)}
    write_progress(out_dir, prog)
    return info


def write_corpus(cfg: Any, corpus: Corpus, out_dir: Path, progress: bool = True) -> DataMeta:
    if "train" not in corpus.splits:
        raise DataError(f"data.name={cfg.name}: the corpus has no train split")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
    out_dir = Path(out_dir)
    prog = read_progress(out_dir)
    tok = _tokenizer(cfg, corpus, out_dir, prog, progress)
    dtype = dtype_for(tok.n_real, getattr(cfg, "dtype", "auto"))
    spec = TokenizerSpec(
        str(out_dir / TOKENIZER_FILE),
        tok.kind,
        tok.eos_id,
        tok.bos_id,
        tok.pad_id,
        dtype,
        append_eos=corpus.layout == "flat-eos",
    )
    splits: dict[str, SplitInfo] = {}
    for split, factory in corpus.splits.items():
        splits[split] = _write_split(
            cfg, split, factory, corpus.sizes.get(split), spec, tok.n_real, out_dir, prog, progress
        )
    for split, target in corpus.aliases.items():
        splits[split] = splits[target]
    return DataMeta(
        name=cfg.name,
        tokenizer=tok.kind,
        vocab_size=padded_vocab_size(tok.n_real),
        mask_id=tok.n_real,
        bos_id=tok.bos_id,
        eos_id=tok.eos_id,
        pad_id=tok.pad_id,
        dtype=dtype,
        splits=splits,
        layout=corpus.layout,
        tokenizer_file=TOKENIZER_FILE,
        tokenizer_sha256=prog["tokenizer"]["sha256"],
        sources=corpus.sources,
    )
