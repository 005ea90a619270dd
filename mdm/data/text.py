"""Text cleaning shared by the corpus recipes: Gutenberg boilerplate, whitespace, documents, splits."""

from __future__ import annotations

import hashlib
import re
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from mdm.data.meta import DataError

SPLITS = ("train", "validation", "test")

_START = re.compile(r"^\W*\*{3}\s*START OF (THIS|THE) PROJECT GUTENBERG[^\n]*$", re.I | re.M)
_END = re.compile(r"^\W*\*{3}\s*END OF (THIS|THE) PROJECT GUTENBERG[^\n]*$", re.I | re.M)
_SMALL_PRINT_END = re.compile(r"^\W*\*END\*\s*THE SMALL PRINT[^\n]*$", re.I | re.M)
_END_LINE = re.compile(r"^\s*End of (the )?Project Gutenberg[^\n]*$", re.I | re.M)
_PRODUCED_BY = re.compile(r"\A\s*(Produced|Prepared|Transcribed) by[^\n]*(\n[^\n]+)*\n\s*\n", re.I)


def strip_gutenberg(text: str) -> str:
    """Remove a Project Gutenberg header (up to the START marker or the end of the small print) and
    footer (from the END marker or an "End of Project Gutenberg" line). Text without markers is returned
    unchanged."""
    m = _START.search(text) or _SMALL_PRINT_END.search(text)
    if m:
        text = text[m.end() :]
        text = _PRODUCED_BY.sub("", text, count=1)
    m = _END.search(text)
    if m:
        text = text[: m.start()]
    m = _END_LINE.search(text)
    if m:
        text = text[: m.start()]
    return text


_OVERSTRIKE = re.compile(r".\x08")
_CTRL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def normalize(text: str) -> str:
    """Unicode BOM, CRLF, overstrike (``_\\bX``) and control characters removed; trailing spaces cut;
    runs of 3+ newlines cut to 2; stripped."""
    text = text.replace("\ufeff", "").replace("\r\n", "\n").replace("\r", "\n")
    if "\x08" in text:
        text = _OVERSTRIKE.sub("", text)
    text = _CTRL.sub("", text)
    if " \n" in text or "\t\n" in text:  # = re.sub(r"[ \t]+\n", "\n", text), several times faster
        lines = text.split("\n")
        text = "\n".join([line.rstrip(" \t") for line in lines[:-1]] + [lines[-1]])
    if "\n\n\n" in text:
        text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip()


def paragraphs(text: str) -> list[str]:
    return [p for p in re.split(r"\n\s*\n", text) if p.strip()]


def unwrap(par: str) -> str:
    """Join a hard-wrapped prose paragraph into one line."""
    return re.sub(r"\s*\n\s*", " ", par.strip())


def chunk_paragraphs(pars: list[str], target_chars: int) -> list[str]:
    """Group consecutive paragraphs into documents of at least ``target_chars`` characters (the last
    group may be shorter). Paragraphs keep their blank-line separation."""
    docs, cur, n = [], [], 0
    for p in pars:
        cur.append(p)
        n += len(p) + 2
        if n >= target_chars:
            docs.append("\n\n".join(cur))
            cur, n = [], 0
    if cur:
        docs.append("\n\n".join(cur))
    return docs


def split_of(doc_id: str, val_frac: float = 0.01, test_frac: float = 0.01) -> str:
    """Deterministic document-level split: sha256(doc_id) as a uniform number in [0, 1)."""
    u = int.from_bytes(hashlib.sha256(doc_id.encode()).digest()[:8], "big") / 2**64
    if u < val_frac:
        return "validation"
    if u < val_frac + test_frac:
        return "test"
    return "train"


class ParagraphDedup:
    """Drop exact repeats (whitespace- and case-normalised) of paragraphs at least ``min_chars`` long, so
    that overlapping editions never put the same passage in two splits."""

    def __init__(self, min_chars: int = 200):
        self.min_chars = min_chars
        self.seen: set[bytes] = set()
        self.dropped = 0

    def __call__(self, pars: list[str]) -> list[str]:
        out = []
        for p in pars:
            if len(p) >= self.min_chars:
                key = hashlib.sha1(" ".join(p.lower().split()).encode()).digest()
                if key in self.seen:
                    self.dropped += 1
                    continue
                self.seen.add(key)
            out.append(p)
        return out


@dataclass
class Doc:
    id: str
    text: str


def decode_utf8(raw: bytes, name: str | Path, on_bad_file: str) -> str | None:
    """Decode a file's bytes; empty or non-UTF-8 input is skipped with a warning naming the file, or
    raises DataError when ``on_bad_file == "error"``."""
    if on_bad_file not in ("skip", "error"):
        raise DataError(f"data.on_bad_file={on_bad_file!r} is not valid; choose one of: skip, error")
    problem = None
    text = None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        problem = f"is not valid UTF-8 ({e.reason} at byte {e.start})"
    if text is not None and not text.strip():
        problem = "is empty"
    if problem is None:
        return text
    msg = f"input file {name} {problem}"
    if on_bad_file == "error":
        raise DataError(msg + " (data.on_bad_file=error)")
    warnings.warn(msg + "; skipped (data.on_bad_file=skip)", stacklevel=2)
    return None


def by_split(docs: Iterable[Doc], val_frac: float = 0.01, test_frac: float = 0.01) -> dict[str, list[str]]:
    """Texts per split by :func:`split_of`. When there are at least 3 documents but validation or test
    came out empty, the training documents with the smallest hashes move there (still deterministic)."""
    docs = list(docs)
    us = [int.from_bytes(hashlib.sha256(d.id.encode()).digest()[:8], "big") / 2**64 for d in docs]
    assign = [split_of(d.id, val_frac, test_frac) for d in docs]
    if len(docs) >= 3:
        for split in ("validation", "test"):
            if split not in assign:
                i = min((u, i) for i, (u, a) in enumerate(zip(us, assign)) if a == "train")[1]
                assign[i] = split
    out: dict[str, list[str]] = {s: [] for s in SPLITS}
    for d, a in zip(docs, assign):
        out[a].append(d.text)
    return out


def iter_nonempty(texts: Iterable[str]) -> Iterator[str]:
    for t in texts:
        if t and t.strip():
            yield t
