"""The ``files`` recipe: local ``.txt`` / ``.jsonl`` / ``.parquet`` files (``data.path``: a directory, searched
recursively, or a glob).

* ``.txt``: one work per file, cut into documents of ~8,000 characters at paragraph boundaries;
* ``.jsonl``: one document per line, field ``text``;
* ``.parquet``: one document per row, column ``text``.

Empty or non-UTF-8 files are skipped with a warning naming them, or fatal with ``data.on_bad_file=error``.
Split: 1% validation, 1% test by sha256 of the document id (file path relative to the root + index).

Streaming: the files are read one at a time (parquet in row batches, jsonl line by line), once to assign
the splits (only counts and the two smallest training hashes are kept) and once per split to tokenize,
so memory does not grow with the corpus (a ``.txt`` file, one work, is read whole).
"""

from __future__ import annotations

import glob
import hashlib
import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from mdm.data.meta import DataError, DataMeta
from mdm.data.pipeline import Corpus, write_corpus
from mdm.data.text import SPLITS, Doc, chunk_paragraphs, decode_utf8, normalize, paragraphs, split_of

SUFFIXES = (".txt", ".jsonl", ".parquet")
DOC_CHARS = 8000


def list_files(path: str) -> tuple[Path, list[Path]]:
    """(root for relative ids, sorted data files) for a directory, a file or a glob."""
    p = Path(path).expanduser()
    if p.is_dir():
        root, files = p, [f for f in p.rglob("*") if f.is_file() and f.suffix in SUFFIXES]
    elif p.is_file():
        root, files = p.parent, [p]
    elif glob.has_magic(path):
        files = [Path(f) for f in glob.glob(str(p), recursive=True) if Path(f).is_file()]
        first_magic = next(i for i, part in enumerate(p.parts) if glob.has_magic(part))
        root = Path(*p.parts[:first_magic]) if first_magic else Path(".")
    else:
        raise DataError(f"data.path={path!r} does not exist")
    bad = [f for f in files if f.suffix not in SUFFIXES]
    if bad:
        raise DataError(f"data.path={path!r}: unsupported file {bad[0]} (use .txt, .jsonl or .parquet)")
    if not files:
        raise DataError(f"data.path={path!r} holds no .txt/.jsonl/.parquet files")
    return root, sorted(files)


def _rel(f: Path, root: Path) -> str:
    try:
        return str(f.relative_to(root))
    except ValueError:
        return str(f)


def _parquet_texts(f: Path, on_bad_file: str, warn: bool) -> Iterator[str] | None:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(f)
        if "text" not in pf.schema_arrow.names:
            raise KeyError("text")
    except Exception as e:  # ArrowInvalid, KeyError for a missing column, ...
        msg = f"input file {f} is not a parquet file with a 'text' column ({type(e).__name__}: {e})"
        if on_bad_file == "error":
            raise DataError(msg) from e
        if warn:
            import warnings

            warnings.warn(msg + "; skipped", stacklevel=3)
        return None
    return (t for b in pf.iter_batches(batch_size=1024, columns=["text"]) for t in b.column(0).to_pylist())


def read_docs(root: Path, files: list[Path], on_bad_file: str, warn: bool = True) -> Iterator[Doc]:
    """The documents of ``files`` in order, streamed (``warn``: report skipped files)."""
    for f in files:
        rel = _rel(f, root)
        if f.suffix == ".parquet":
            texts = _parquet_texts(f, on_bad_file, warn)
            if texts is None:
                continue
            i = 0
            for t in texts:
                if t and t.strip():
                    yield Doc(f"{rel}:{i}", normalize(t))
                    i += 1
            if i == 0 and (warn or on_bad_file == "error"):
                decode_utf8(b"", f, on_bad_file)  # reports the empty file
            continue
        if f.suffix == ".txt":
            text = decode_utf8(f.read_bytes(), f, on_bad_file) if warn else _quiet_decode(f, on_bad_file)
            if text is None:
                continue
            for i, chunk in enumerate(chunk_paragraphs(paragraphs(normalize(text)), DOC_CHARS)):
                yield Doc(f"{rel}:{i}", chunk)
            continue
        yield from _jsonl_docs(f, rel, on_bad_file, warn)


def _quiet_decode(f: Path, on_bad_file: str) -> str | None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return decode_utf8(f.read_bytes(), f, on_bad_file)


def _utf8_problem(f: Path) -> str | None:
    """Why ``f`` is not usable text (not UTF-8, or blank), checked in 4 MiB chunks; None when it is."""
    import codecs

    dec = codecs.getincrementaldecoder("utf-8")()
    pos, blank = 0, True
    with open(f, "rb") as fh:
        while True:
            b = fh.read(1 << 22)
            try:
                t = dec.decode(b, final=not b)
            except UnicodeDecodeError as e:
                return f"is not valid UTF-8 ({e.reason} at byte {pos + e.start})"
            blank = blank and not t.strip()
            pos += len(b)
            if not b:
                break
    return "is empty" if blank else None


def _jsonl_docs(f: Path, rel: str, on_bad_file: str, warn: bool) -> Iterator[Doc]:
    problem = _utf8_problem(f)
    if problem is not None:
        msg = f"input file {f} {problem}"
        if on_bad_file == "error":
            raise DataError(msg + " (data.on_bad_file=error)")
        if warn:
            import warnings

            warnings.warn(msg + "; skipped (data.on_bad_file=skip)", stacklevel=3)
        return
    with open(f, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                t = obj["text"]
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise DataError(
                    f"{f}:{n}: expected a JSON object with a 'text' field ({type(e).__name__})"
                ) from e
            if isinstance(t, str) and t.strip():
                yield Doc(f"{rel}:{n}", normalize(t))


def _u(doc_id: str) -> float:
    return int.from_bytes(hashlib.sha256(doc_id.encode()).digest()[:8], "big") / 2**64


def assign_splits(docs: Iterable[Doc]) -> tuple[dict[str, int], dict[str, str]]:
    """One streaming pass: documents per split by :func:`split_of`, and the moves :func:`by_split` makes
    (id -> split) when validation or test came out empty (the training documents of smallest hash)."""
    counts = {s: 0 for s in SPLITS}
    smallest: list[tuple[float, str]] = []  # the two smallest training hashes
    for d in docs:
        s = split_of(d.id)
        counts[s] += 1
        if s == "train":
            smallest = sorted([*smallest, (_u(d.id), d.id)])[:2]
    moves: dict[str, str] = {}
    if sum(counts.values()) >= 3:
        for split in ("validation", "test"):
            if counts[split] == 0:
                _, doc_id = smallest.pop(0)
                moves[doc_id] = split
                counts[split] += 1
                counts["train"] -= 1
    return counts, moves


def prepare_files(cfg: Any, out_dir: Path, progress: bool = True) -> DataMeta:
    if not cfg.path:
        raise DataError("data.name=files needs data.path (a directory or glob of .txt/.jsonl/.parquet)")
    root, files = list_files(cfg.path)
    counts, moves = assign_splits(read_docs(root, files, cfg.on_bad_file))
    if not sum(counts.values()):
        raise DataError(f"data.path={cfg.path!r}: no usable documents")

    def split_docs(split: str) -> Callable[[], Iterator[str]]:
        def it() -> Iterator[str]:
            for d in read_docs(root, files, cfg.on_bad_file, warn=False):
                if moves.get(d.id, split_of(d.id)) == split:
                    yield d.text

        return it

    source = {
        "name": "files",
        "path": str(Path(cfg.path).expanduser()),
        "files": len(files),
        "file_list": [{"file": _rel(f, root), "bytes": f.stat().st_size} for f in files],
        "licence": "as the input files",
        "sha256": None,
    }
    corpus = Corpus({s: split_docs(s) for s in SPLITS}, sources=[source], sizes=dict(counts))
    return write_corpus(cfg, corpus, out_dir, progress)
