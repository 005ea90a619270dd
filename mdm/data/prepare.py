"""Prepare a data directory atomically, idempotently and resumably.

The recipe writes into a hidden sibling ``.<key>.partial``; meta.json is written last and the directory
is renamed into place with :func:`os.replace`. A directory is complete iff it has a meta.json, so a
prepare killed at any point never looks complete; a file lock serialises concurrent prepares of the same
key (e.g. two DDP ranks) and the loser finds the winner's result. The partial directory survives a kill:
its ``progress.json`` records what made it (the config record and the shard layout settings) and, for the
text recipes, the tokenizer and the completed shards (:mod:`mdm.data.pipeline`), so re-running the same
prepare continues after the last completed shard; a partial directory made by another config is removed.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mdm.data.meta import META_FILE, DataError, DataMeta, load_meta
from mdm.data.sources import get_source

# DataConfig fields that shape the shards (the loader-time options wrap/add_bos are not among them).
SHARD_FIELDS = ("name", "tokenizer", "vocab_size", "path", "dtype", "on_bad_file", "books_sources")


def is_complete(data_dir: Path) -> bool:
    return (Path(data_dir) / META_FILE).is_file()


def cfg_record(cfg: Any) -> dict[str, Any]:
    """The plain-dict record of the config fields that decided a data directory's contents."""
    rec = {k: getattr(cfg, k) for k in SHARD_FIELDS if hasattr(cfg, k)}
    if cfg.name == "synthetic":
        rec["synthetic"] = dataclasses.asdict(cfg.synthetic)
        for k in ("tokenizer", "vocab_size", "path", "on_bad_file"):
            rec.pop(k, None)
    elif cfg.tokenizer != "bpe":
        rec.pop("vocab_size", None)
    if cfg.name in ("books", "synthetic"):
        rec.pop("path", None)
    if cfg.name != "books":
        rec.pop("books_sources", None)
    return rec


def check_matches(meta: DataMeta, cfg: Any, data_dir: Path) -> None:
    """Raise DataError when a prepared directory was made from a different data config."""
    want = cfg_record(cfg)
    have = meta.config
    diff = [k for k in want if k in have and have[k] != want[k]]
    if diff:
        detail = ", ".join(f"{k}: prepared {have[k]!r} vs requested {want[k]!r}" for k in diff)
        raise DataError(f"{data_dir} was prepared from a different data config ({detail})")


@contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def identity(cfg: Any) -> dict[str, Any]:
    """What a partial directory must have been made from to be resumed."""
    p = getattr(cfg, "prepare", None)
    layout = (
        {k: getattr(p, k) for k in ("shard_tokens", "batch_chars", "batch_docs", "tokenizer_from")}
        if p
        else {}
    )
    return {"config": cfg_record(cfg), "layout": layout}


def prepare(cfg: Any, data_dir: Path, progress: bool = True, force: bool = False) -> Path:
    """Make ``data_dir`` hold the prepared data for ``cfg``; a no-op when it already does."""
    data_dir = Path(data_dir)
    if is_complete(data_dir) and not force:
        check_matches(load_meta(data_dir), cfg, data_dir)
        return data_dir
    source = get_source(cfg.name)
    parent = data_dir.parent
    with _locked(parent / f".{data_dir.name}.lock"):
        if is_complete(data_dir) and not force:
            check_matches(load_meta(data_dir), cfg, data_dir)
            return data_dir
        if data_dir.exists() and not force and any(data_dir.iterdir()):
            raise DataError(
                f"{data_dir} exists, is not empty and has no {META_FILE}; remove it or choose another dir"
            )
        for stale in parent.glob(f".{data_dir.name}.tmp-*"):  # left by killed prepares (we hold the lock)
            shutil.rmtree(stale, ignore_errors=True)
        from mdm.data.pipeline import PROGRESS_FILE, read_progress, write_progress

        tmp = parent / f".{data_dir.name}.partial"
        ident = json.loads(json.dumps(identity(cfg)))  # as it reads back from JSON
        if tmp.exists() and (force or read_progress(tmp).get("identity") != ident):
            shutil.rmtree(tmp)
        if not tmp.exists():
            tmp.mkdir(parents=True)
            write_progress(tmp, {"identity": ident, "tokenizer": None, "splits": {}})
        elif progress:
            print(f"[mdm data] resuming the interrupted prepare in {tmp}")
        meta = source.load()(cfg, tmp, progress)
        meta.config = cfg_record(cfg)
        meta.check()
        (tmp / PROGRESS_FILE).unlink()
        meta.to_json(tmp / META_FILE)  # last file written: marks completeness
        _fsync_dir(tmp)
        if data_dir.exists():
            old = parent / f".{data_dir.name}.tmp-old-{uuid.uuid4().hex[:8]}"
            os.replace(data_dir, old)
            os.replace(tmp, data_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, data_dir)
    return data_dir


def _fsync_dir(d: Path) -> None:
    for p in d.iterdir():
        if p.is_file():
            with open(p, "rb") as f:
                os.fsync(f.fileno())
