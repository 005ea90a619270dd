"""Hugging Face datasets by name, through the real ``datasets`` code path.

================ ======================================== ==========================================
``data.name``    hub dataset (config)                     splits
================ ======================================== ==========================================
openwebtext      Skylion007/openwebtext                   train = all but the last 100k documents,
                                                          validation = the last 100k (as MDLM)
wikitext103      Salesforce/wikitext (wikitext-103-raw-v1) train/validation/test; rows (lines) are
                                                          grouped into articles at `` = Title = ``
lm1b             lm1b                                     train/test; validation = test (as MDLM)
text8            afmck/text8                              train/validation/test (90M/5M/5M chars),
                                                          stream layout (no EOS)
fineweb_edu      HuggingFaceFW/fineweb-edu (sample-10BT)  train; validation/test = 0.05% each by
                                                          sha256 of the document id
================ ======================================== ==========================================

``data.path`` replaces the hub id: a directory written by ``Dataset(Dict).save_to_disk``, a directory or
glob of data files ``datasets`` can read (parquet/jsonl/csv/txt, splits from file names), or another
hub id. These machines cannot reach the Hub: without a local copy the recipe fails fast with a clear
message (a quick connection probe runs first; set ``HF_HUB_OFFLINE=1`` to use the local HF cache).
"""

from __future__ import annotations

import glob
import os
import re
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from mdm.data.meta import DataError, DataMeta
from mdm.data.pipeline import Corpus, write_corpus
from mdm.data.text import split_of


@dataclass(frozen=True)
class HFSpec:
    hub_id: str
    config: str | None = None
    text_field: str = "text"
    licence: str = ""
    holdout_last: int = 0  # openwebtext: validation = last N training documents
    validation_from: str | None = None  # lm1b: validation shares this split's shard
    hash_split: float = 0.0  # fineweb: validation/test fractions from a hash of the id
    group: str | None = None  # wikitext: lines -> articles
    layout: str = "flat-eos"
    id_field: str | None = None


SPECS: dict[str, HFSpec] = {
    "openwebtext": HFSpec(
        "Skylion007/openwebtext", licence="CC0 1.0 (see the dataset card)", holdout_last=100_000
    ),
    "wikitext103": HFSpec(
        "Salesforce/wikitext", "wikitext-103-raw-v1", licence="CC BY-SA 3.0", group="wikitext"
    ),
    "lm1b": HFSpec("lm1b", licence="Apache-2.0 (see the dataset card)", validation_from="test"),
    "text8": HFSpec("afmck/text8", licence="text8: derived from Wikipedia (CC BY-SA)", layout="stream"),
    "fineweb_edu": HFSpec(
        "HuggingFaceFW/fineweb-edu", "sample-10BT", licence="ODC-By 1.0", hash_split=0.0005, id_field="id"
    ),
}


def _hub_reachable(timeout: float = 5.0) -> bool:
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _offline_env() -> bool:
    """HF offline mode as ``datasets`` sees it (read from HF_HUB_OFFLINE / HF_DATASETS_OFFLINE at import)."""
    import datasets

    return bool(getattr(datasets.config, "HF_HUB_OFFLINE", False))


def load_splits(spec: HFSpec, path: str | None) -> tuple[dict[str, Any], str]:
    """``{split: datasets.Dataset}`` and a description of where they came from."""
    import datasets

    where = path or spec.hub_id
    try:
        if (
            path
            and Path(path).expanduser().is_dir()
            and (
                (Path(path).expanduser() / "dataset_dict.json").is_file()
                or (Path(path).expanduser() / "dataset_info.json").is_file()
            )
        ):
            loaded = datasets.load_from_disk(str(Path(path).expanduser()))
        elif path and (Path(path).expanduser().exists() or glob.has_magic(path)):
            p = Path(path).expanduser()
            if p.is_dir():
                loaded = datasets.load_dataset(str(p))
            else:
                files = sorted(glob.glob(str(p))) if glob.has_magic(path) else [str(p)]
                if not files:
                    raise DataError(f"data.path={path!r} matches no files")
                builder = {
                    ".jsonl": "json",
                    ".json": "json",
                    ".parquet": "parquet",
                    ".txt": "text",
                    ".csv": "csv",
                }
                kind = builder.get(Path(files[0]).suffix)
                if kind is None:
                    raise DataError(f"data.path={path!r}: cannot tell the format of {files[0]}")
                loaded = datasets.load_dataset(kind, data_files={"train": files})
        else:
            if not _offline_env() and not _hub_reachable():
                raise DataError(
                    f"cannot reach the Hugging Face Hub to download {where!r} (this machine is offline or the "
                    "Hub is blocked). Download it elsewhere and set data.path to a local copy (a save_to_disk "
                    "directory or parquet/jsonl files), or set HF_HUB_OFFLINE=1 to use the local HF cache."
                )
            loaded = datasets.load_dataset(spec.hub_id if not path else path, spec.config)
    except DataError:
        raise
    except Exception as e:  # ConnectionError, FileNotFoundError, DatasetNotFoundError, ...
        raise DataError(
            f"could not load Hugging Face dataset {where!r}"
            f"{f' ({spec.config})' if spec.config and not path else ''}: {type(e).__name__}: {e}. "
            "Without network access set data.path to a local copy."
        ) from e
    if isinstance(loaded, datasets.Dataset):
        loaded = datasets.DatasetDict({"train": loaded})
    return dict(loaded), where


def _texts(ds: Any, field_name: str, start: int = 0, stop: int | None = None) -> Iterator[str]:
    stop = len(ds) if stop is None else stop
    if field_name not in ds.column_names:
        raise DataError(f"dataset has no {field_name!r} column (columns: {', '.join(ds.column_names)})")
    for i in range(start, stop, 1000):
        for t in ds[i : min(i + 1000, stop)][field_name]:
            if t:
                yield t


_WIKI_TITLE = re.compile(r"^ = [^=].* = \n?$")


def wikitext_articles(lines: Iterator[str]) -> Iterator[str]:
    """Group wikitext rows (lines, each ending in a newline) into articles at top-level headings."""
    cur: list[str] = []
    for line in lines:
        if _WIKI_TITLE.match(line) and cur:
            yield "".join(cur).strip("\n")
            cur = []
        cur.append(line)
    if cur and "".join(cur).strip():
        yield "".join(cur).strip("\n")


def build_corpus(name: str, spec: HFSpec, dsets: dict[str, Any], where: str) -> Corpus:
    tf = spec.text_field
    factories: dict[str, Callable[[], Iterator[str]]] = {}
    sizes: dict[str, int | None] = {}
    aliases: dict[str, str] = {}
    if "train" not in dsets:
        raise DataError(f"{where}: no train split (found: {', '.join(dsets)})")
    if spec.holdout_last:
        train = dsets["train"]
        n = len(train)
        if n <= spec.holdout_last:
            raise DataError(
                f"{where}: {n} documents, fewer than the {spec.holdout_last} held out for validation"
            )
        cut = n - spec.holdout_last
        factories["train"] = lambda: _texts(train, tf, 0, cut)
        factories["validation"] = lambda: _texts(train, tf, cut, n)
        sizes = {"train": cut, "validation": spec.holdout_last}
    elif spec.hash_split:
        train, idf, frac = dsets["train"], spec.id_field, spec.hash_split

        def part(split: str) -> Callable[[], Iterator[str]]:
            def it() -> Iterator[str]:
                cols = [tf] + ([idf] if idf and idf in train.column_names else [])
                for i in range(0, len(train), 1000):
                    rows = train[i : i + 1000]
                    for j, t in enumerate(rows[tf]):
                        doc_id = rows[idf][j] if len(cols) > 1 else str(i + j)
                        if t and split_of(str(doc_id), frac, frac) == split:
                            yield t

            return it

        factories = {s: part(s) for s in ("train", "validation", "test")}
        sizes = {s: None for s in factories}
    else:
        for split in ("train", "validation", "test"):
            if split in dsets:
                ds = dsets[split]
                if spec.group == "wikitext":
                    factories[split] = (lambda d: lambda: wikitext_articles(iter(_texts(d, tf))))(ds)
                    sizes[split] = None
                else:
                    factories[split] = (lambda d: lambda: _texts(d, tf))(ds)
                    sizes[split] = len(ds)
        if spec.validation_from and "validation" not in factories and spec.validation_from in factories:
            aliases["validation"] = spec.validation_from
    source = {"name": name, "dataset": where, "config": spec.config, "licence": spec.licence, "sha256": None}
    fingerprints = {s: getattr(d, "_fingerprint", None) for s, d in dsets.items()}
    source["fingerprints"] = fingerprints
    return Corpus(factories, sources=[source], sizes=sizes, aliases=aliases, layout=spec.layout)


def prepare_hf(cfg: Any, out_dir: Path, progress: bool = True) -> DataMeta:
    if cfg.name not in SPECS:
        raise DataError(
            f"data.name={cfg.name!r} is not a Hugging Face source; choose one of: {', '.join(SPECS)}"
        )
    spec = SPECS[cfg.name]
    dsets, where = load_splits(spec, cfg.path)
    return write_corpus(cfg, build_corpus(cfg.name, spec, dsets, where), out_dir, progress)
