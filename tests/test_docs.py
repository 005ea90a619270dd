"""The documents the code cites exist in the repository, with the sections it names.

Citations look like ``docs/MATH.md "Section"`` or ``CONTRIBUTING.md, "Section"`` (the quoted name may
wrap onto the next docstring line); each named section must be a ``## `` heading of that file. No file
may cite a document outside the repository or by a path that does not exist here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("mdm", "scaling", "bench", "tests", "configs", "docs")
TOP_FILES = ("README.md", "CONTRIBUTING.md", "Makefile", "pyproject.toml")
CITED_DOCS = ("docs/MATH.md", "CONTRIBUTING.md")
CITATION = re.compile(r"(docs/MATH\.md|CONTRIBUTING\.md),?\s+\"([^\"]+)\"")
BARE = re.compile(r"(?<![\w/.])(MATH|DESIGN)\.md")  # a design note cited without a repository path
OUTSIDE = re.compile(r"\.\./[\w./-]*\.md|shared/design")  # a document outside the repository


def tree_files() -> list[Path]:
    files = [ROOT / f for f in TOP_FILES if (ROOT / f).exists()]
    for d in SOURCES:
        files += [p for p in (ROOT / d).rglob("*") if p.suffix in (".py", ".md", ".yaml", ".yml")]
    return sorted(f for f in files if f.resolve() != Path(__file__).resolve())


def headings(doc: str) -> set[str]:
    text = (ROOT / doc).read_text(encoding="utf-8")
    return {m.group(1).strip() for m in re.finditer(r"^## (.+)$", text, re.M)}


def citations(text: str) -> list[tuple[str, str]]:
    """(document, section) pairs, the section's whitespace (docstring line breaks, '#' of comments) folded."""
    out = []
    for m in CITATION.finditer(text):
        section = " ".join(m.group(2).replace("#", " ").split())
        out.append((m.group(1), section))
    return out


@pytest.mark.parametrize("doc", CITED_DOCS)
def test_cited_documents_exist_with_sections(doc):
    assert (ROOT / doc).is_file(), f"{doc} is cited but missing"
    assert len(headings(doc)) >= 5, f"{doc} has too few '## ' sections"


def test_every_cited_section_exists():
    found, bad = 0, []
    known = {d: headings(d) for d in CITED_DOCS}
    for f in tree_files():
        for doc, section in citations(f.read_text(encoding="utf-8", errors="replace")):
            found += 1
            if section not in known[doc]:
                bad.append(f'{f.relative_to(ROOT)}: {doc} "{section}" (sections: {sorted(known[doc])})')
    assert not bad, "citations of missing sections:\n" + "\n".join(bad)
    assert found >= 20, f"only {found} citations found: the pattern no longer matches the tree"


def test_no_citation_outside_the_repository():
    bad = []
    for f in tree_files():
        for n, line in enumerate(f.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if BARE.search(line) or OUTSIDE.search(line):
                bad.append(f"{f.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not bad, "cite docs/MATH.md or CONTRIBUTING.md by their repository paths:\n" + "\n".join(bad)


def test_the_citation_pattern_catches_what_it_should():
    text = 'a (docs/MATH.md, "Schedules") b docs/MATH.md "SEDD score\n    entropy") c CONTRIBUTING.md, "X"'
    assert citations(text) == [
        ("docs/MATH.md", "Schedules"),
        ("docs/MATH.md", "SEDD score entropy"),
        ("CONTRIBUTING.md", "X"),
    ]
    assert BARE.search("see MATH.md") and BARE.search("(DESIGN.md principle 5)")
    assert not BARE.search("see docs/MATH.md")
    assert OUTSIDE.search("../shared/design/MATH.md") and OUTSIDE.search("../notes.md")
