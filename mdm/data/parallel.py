"""Batched tokenization in order, in the main process or over worker processes, with bounded memory.

:func:`batches` cuts a document stream into tokenizer batches of at most ``batch_chars`` characters
(one longer document makes a batch alone) and ``batch_docs`` documents; the cut depends only on the
stream, never on the number of workers. :func:`encode_batches` turns each batch into one flat token
array (every non-empty document followed by EOS when ``append_eos``) and the documents' lengths, in
input order. With ``num_proc > 1`` at most ``2 * num_proc`` batches are in flight (submitted and not
yet consumed), so the text and tokens held at once are bounded by ``(2 * num_proc + 1)`` batches,
whatever the corpus size.

Workers are forked (no re-import of torch) and load the tokenizer from its saved file; each runs the
``tokenizers`` library single-threaded. In the main process (``num_proc == 1``) the library's own
thread pool is used as ``TOKENIZERS_PARALLELISM`` / ``RAYON_NUM_THREADS`` allow.
"""

from __future__ import annotations

import functools
import itertools
import multiprocessing as mp
import os
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mdm.data.tokenizer import TextTokenizer, tokenizer_from_file


@dataclass(frozen=True)
class TokenizerSpec:
    """What a worker needs to rebuild the tokenizer: its saved file and meta fields."""

    path: str
    kind: str
    eos_id: int | None
    bos_id: int | None
    pad_id: int | None
    dtype: str
    append_eos: bool = True

    def load(self) -> TextTokenizer:
        st = os.stat(self.path)
        return _load(self, st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=4)
def _load(spec: TokenizerSpec, mtime_ns: int, size: int) -> TextTokenizer:  # once per file version
    return tokenizer_from_file(Path(spec.path), spec.kind, spec.eos_id, spec.bos_id, spec.pad_id)


def batches(docs: Iterable[str], batch_chars: int, batch_docs: int) -> Iterator[list[str]]:
    """Consecutive runs of documents, closed once they reach ``batch_chars`` characters or
    ``batch_docs`` documents."""
    cur: list[str] = []
    n = 0
    for d in docs:
        cur.append(d)
        n += len(d)
        if n >= batch_chars or len(cur) >= batch_docs:
            yield cur
            cur, n = [], 0
    if cur:
        yield cur


def encode(
    tok: TextTokenizer, texts: list[str], dtype: str, append_eos: bool
) -> tuple[np.ndarray, np.ndarray]:
    """(flat tokens of ``dtype``, lengths int64) of the non-empty encodings of ``texts``."""
    ids = [x for x in tok.encode_batch(texts) if x]
    if append_eos:
        ids = [x + [tok.eos_id] for x in ids]
    lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
    flat = np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int64, count=int(lengths.sum()))
    return flat.astype(dtype), lengths


_WORKER: dict[str, object] = {}


def _init_worker(spec: TokenizerSpec) -> None:
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one thread per worker process
    _WORKER["tok"] = spec.load()
    _WORKER["spec"] = spec


def _work(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    spec: TokenizerSpec = _WORKER["spec"]  # type: ignore[assignment]
    return encode(_WORKER["tok"], texts, spec.dtype, spec.append_eos)  # type: ignore[arg-type]


def encode_batches(
    spec: TokenizerSpec, stream: Iterable[list[str]], num_proc: int = 1, window: int | None = None
) -> Iterator[tuple[np.ndarray, np.ndarray, int]]:
    """Yield ``(flat tokens, lengths, documents in the batch)`` for each batch of ``stream``, in order."""
    if num_proc <= 1:
        tok = spec.load()
        for texts in stream:
            yield (*encode(tok, texts, spec.dtype, spec.append_eos), len(texts))
        return
    window = window or 2 * num_proc
    ctx = mp.get_context("fork")
    with ctx.Pool(num_proc, initializer=_init_worker, initargs=(spec,)) as pool:
        pending: deque = deque()
        for texts in stream:
            pending.append((pool.apply_async(_work, (texts,)), len(texts)))
            if len(pending) >= window:
                res, n = pending.popleft()
                yield (*res.get(), n)
        while pending:
            res, n = pending.popleft()
            yield (*res.get(), n)
