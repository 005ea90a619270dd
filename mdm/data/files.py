"""The ``files`` recipe: local ``.txt`` / ``.jsonl`` / ``.parquet`` files (``data.path``: a directory, searched
recursively, or a glob).

* ``.txt``: one work per file, cut into documents of ~8,000 characters at paragraph boundaries;
* ``.jsonl``: one document per line, field ``text``;
* ``.parquet``: one document per row, column ``text``.

Empty or non-UTF-8 files are skipped with a warning naming them, or fatal with ``data.on_bad_file=error``.
Split: 1% validation, 1% test by sha256 of the document id (file path relative to the root + index).
"""

from __future__ import annotations

import glob
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mdm.data.meta import DataError, DataMeta
from mdm.data.pipeline import Corpus, write_corpus
from mdm.data.text import Doc, by_split, chunk_paragraphs, decode_utf8, normalize, paragraphs

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


def read_docs(root: Path, files: list[Path], on_bad_file: str) -> Iterator[Doc]:
    for f in files:
        rel = _rel(f, root)
        if f.suffix == ".parquet":
            import pyarrow.parquet as pq

            try:
                table = pq.read_table(f, columns=["text"])
            except Exception as e:  # ArrowInvalid, KeyError for a missing column, ...
                msg = f"input file {f} is not a parquet file with a 'text' column ({type(e).__name__}: {e})"
                if on_bad_file == "error":
                    raise DataError(msg) from e
                import warnings

                warnings.warn(msg + "; skipped", stacklevel=2)
                continue
            texts = [t for t in table.column("text").to_pylist() if t and t.strip()]
            if not texts:
                decode_utf8(b"", f, on_bad_file)  # reports the empty file
            for i, t in enumerate(texts):
                yield Doc(f"{rel}:{i}", normalize(t))
            continue
        text = decode_utf8(f.read_bytes(), f, on_bad_file)
        if text is None:
            continue
        if f.suffix == ".txt":
            for i, chunk in enumerate(chunk_paragraphs(paragraphs(normalize(text)), DOC_CHARS)):
                yield Doc(f"{rel}:{i}", chunk)
        else:  # .jsonl
            for n, line in enumerate(text.splitlines(), 1):
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


def prepare_files(cfg: Any, out_dir: Path, progress: bool = True) -> DataMeta:
    if not cfg.path:
        raise DataError("data.name=files needs data.path (a directory or glob of .txt/.jsonl/.parquet)")
    root, files = list_files(cfg.path)
    docs = list(read_docs(root, files, cfg.on_bad_file))
    if not docs:
        raise DataError(f"data.path={cfg.path!r}: no usable documents")
    split_docs = by_split(docs)
    source = {
        "name": "files",
        "path": str(Path(cfg.path).expanduser()),
        "files": len(files),
        "licence": "as the input files",
        "sha256": None,
    }
    corpus = Corpus.from_lists(split_docs, [source])
    return write_corpus(cfg, corpus, out_dir, progress)
