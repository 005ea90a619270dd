"""Text corpus -> tokenizer -> shards. The recipes (books, files, HF datasets) build a :class:`Corpus`;
:func:`write_corpus` trains/loads the tokenizer, encodes every split in batches and returns the meta."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from mdm.data.meta import DataError, DataMeta, SplitInfo, dtype_for, padded_vocab_size
from mdm.data.shards import ShardWriter
from mdm.data.tokenizer import build_tokenizer

BATCH_DOCS = 256
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


def _batched(it: Iterable[str], n: int) -> Iterator[list[str]]:
    it = iter(it)
    while batch := list(itertools.islice(it, n)):
        yield batch


def write_corpus(cfg: Any, corpus: Corpus, out_dir: Path, progress: bool = True) -> DataMeta:
    if "train" not in corpus.splits:
        raise DataError(f"data.name={cfg.name}: the corpus has no train split")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
    train_texts = corpus.splits["train"]
    tok = build_tokenizer(cfg, lambda: _capped(train_texts(), TOKENIZER_TRAIN_CHARS), progress)
    dtype = dtype_for(tok.n_real, getattr(cfg, "dtype", "auto"))
    tokenizer_file = tok.save(out_dir)
    splits: dict[str, SplitInfo] = {}
    append_eos = corpus.layout == "flat-eos"
    for split, factory in corpus.splits.items():
        w = ShardWriter(out_dir, split, dtype, tok.n_real, tok.eos_id)
        total = corpus.sizes.get(split)
        with tqdm(total=total, desc=f"tokenize {cfg.name}/{split}", unit="doc", disable=not progress) as bar:
            for batch in _batched(factory(), BATCH_DOCS):
                for ids in tok.encode_batch(batch):
                    if ids:
                        w.add(ids, append_eos=append_eos)
                bar.update(len(batch))
        info = w.close()
        if info.tokens == 0:
            raise DataError(f"data.name={cfg.name}: split {split!r} is empty after tokenization")
        splits[split] = info
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
        tokenizer_file=tokenizer_file,
        sources=corpus.sources,
    )
