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
import sys
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


def load_splits(
    spec: HFSpec, path: str | None, streaming: bool = False, revision: str | None = None
) -> tuple[dict[str, Any], str, list[str]]:
    """``{split: datasets.Dataset or IterableDataset (streaming)}``, a description of where they came from
    and the local data files (empty for the Hub and save_to_disk directories)."""
    import datasets

    where = path or spec.hub_id
    files: list[str] = []
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
                files = sorted(str(f) for f in p.rglob("*") if f.is_file() and not f.name.startswith("."))
                loaded = datasets.load_dataset(str(p), streaming=streaming)
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
                loaded = datasets.load_dataset(kind, data_files={"train": files}, streaming=streaming)
        else:
            if not _offline_env() and not _hub_reachable():
                raise DataError(
                    f"cannot reach the Hugging Face Hub to download {where!r} (this machine is offline or the "
                    "Hub is blocked). Download it elsewhere and set data.path to a local copy (a save_to_disk "
                    "directory or parquet/jsonl files), or set HF_HUB_OFFLINE=1 to use the local HF cache."
                )
            loaded = datasets.load_dataset(
                spec.hub_id if not path else path, spec.config, streaming=streaming, revision=revision
            )
    except DataError:
        raise
    except Exception as e:  # ConnectionError, FileNotFoundError, DatasetNotFoundError, ...
        raise DataError(
            f"could not load Hugging Face dataset {where!r}"
            f"{f' ({spec.config})' if spec.config and not path else ''}: {type(e).__name__}: {e}. "
            "Without network access set data.path to a local copy."
        ) from e
    if isinstance(loaded, datasets.Dataset | datasets.IterableDataset):
        loaded = {"train": loaded}
    return dict(loaded), where, files


def _columns(ds: Any) -> list[str]:
    cols = ds.column_names
    if cols is None:  # a streaming dataset whose features are not known before reading
        cols = list(next(iter(ds.take(1))).keys()) if hasattr(ds, "take") else []
    return list(cols)


def _rows(ds: Any, cols: list[str], start: int = 0, stop: int | None = None) -> Iterator[Any]:
    """Rows ``[start, stop)`` of a Dataset or IterableDataset as pyarrow Tables of up to 1000 rows, in
    order (Arrow batches: a consumer converts to Python only the cells it uses)."""
    missing = [c for c in cols if c not in _columns(ds)]
    if missing:
        raise DataError(f"dataset has no {missing[0]!r} column (columns: {', '.join(_columns(ds))})")
    ds = ds.select_columns(cols).with_format("arrow")
    if hasattr(ds, "__len__") and hasattr(ds, "__getitem__"):  # Arrow-backed: slice directly
        stop = len(ds) if stop is None else stop
        for i in range(start, stop, 1000):
            yield ds[i : min(i + 1000, stop)]
        return
    i = 0
    for tbl in ds.iter(batch_size=1000):
        n = tbl.num_rows
        lo, hi = max(start - i, 0), n if stop is None else min(n, stop - i)
        if lo < hi:
            yield tbl.slice(lo, hi - lo) if (lo, hi) != (0, n) else tbl
        i += n
        if stop is not None and i >= stop:
            return


def _texts(ds: Any, field_name: str, start: int = 0, stop: int | None = None) -> Iterator[str]:
    for tbl in _rows(ds, [field_name], start, stop):
        for t in tbl.column(field_name).to_pylist():
            if t:
                yield t


def num_rows(ds: Any, files: list[str]) -> int:
    """Rows of a split: len() of a Dataset; for streaming, the dataset info or the parquet metadata."""
    if hasattr(ds, "__len__"):
        return len(ds)
    splits = getattr(getattr(ds, "info", None), "splits", None) or {}
    for info in splits.values() if hasattr(splits, "values") else []:
        if getattr(info, "num_examples", None):
            return int(info.num_examples)
    if files and all(f.endswith(".parquet") for f in files):
        import pyarrow.parquet as pq

        return sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    raise DataError(
        "a streaming dataset of unknown length cannot hold out its last documents; "
        "set data.prepare.streaming=false or use parquet files"
    )


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


def build_corpus(
    name: str,
    spec: HFSpec,
    dsets: dict[str, Any],
    where: str,
    files: list[str] | None = None,
    revision: str | None = None,
) -> Corpus:
    tf = spec.text_field
    factories: dict[str, Callable[[], Iterator[str]]] = {}
    sizes: dict[str, int | None] = {}
    aliases: dict[str, str] = {}
    if "train" not in dsets:
        raise DataError(f"{where}: no train split (found: {', '.join(dsets)})")
    if spec.holdout_last:
        train = dsets["train"]
        n = num_rows(train, [f for f in files or [] if "train" in Path(f).name] or files or [])
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
        with_id = bool(idf) and idf in _columns(train)

        def part(split: str) -> Callable[[], Iterator[str]]:
            def it() -> Iterator[str]:
                i = 0
                for tbl in _rows(train, [tf] + ([idf] if with_id else [])):
                    ids = tbl.column(idf).to_pylist() if with_id else range(i, i + tbl.num_rows)
                    keep = [j for j, doc_id in enumerate(ids) if split_of(str(doc_id), frac, frac) == split]
                    i += tbl.num_rows
                    if keep:  # only the texts of this split are converted to Python
                        for t in tbl.column(tf).take(keep).to_pylist():
                            if t:
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
                    sizes[split] = len(ds) if hasattr(ds, "__len__") else None
        if spec.validation_from and "validation" not in factories and spec.validation_from in factories:
            aliases["validation"] = spec.validation_from
    source = {"name": name, "dataset": where, "config": spec.config, "licence": spec.licence, "sha256": None}
    source["revision"] = revision
    source["fingerprints"] = {s: getattr(d, "_fingerprint", None) for s, d in dsets.items()}
    if files:
        source["files"] = [{"file": f, "bytes": Path(f).stat().st_size} for f in files]
    return Corpus(factories, sources=[source], sizes=sizes, aliases=aliases, layout=spec.layout)


def prepare_hf(cfg: Any, out_dir: Path, progress: bool = True) -> DataMeta:
    if cfg.name not in SPECS:
        raise DataError(
            f"data.name={cfg.name!r} is not a Hugging Face source; choose one of: {', '.join(SPECS)}"
        )
    spec = SPECS[cfg.name]
    p = getattr(cfg, "prepare", None)
    streaming, revision = (p.streaming, p.revision) if p is not None else (False, None)
    import datasets

    # datasets' IterableDataset imports torch when it is installed (seconds, ~300 MB per process, for a
    # shared-memory epoch counter of DataLoader workers we do not use): keep it out of the prepare
    torch_available = datasets.config.TORCH_AVAILABLE
    datasets.config.TORCH_AVAILABLE = torch_available and "torch" in sys.modules
    try:
        dsets, where, files = load_splits(spec, cfg.path, streaming=streaming, revision=revision)
        corpus = build_corpus(cfg.name, spec, dsets, where, files, revision)
        return write_corpus(cfg, corpus, out_dir, progress)
    finally:
        datasets.config.TORCH_AVAILABLE = torch_available
