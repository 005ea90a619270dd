"""Where data lives on disk (importable without torch: used by the prepare path and its workers, and by
the sweep planner, which reads a prepared directory's meta.json and prepares nothing)."""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path
from typing import Any

from mdm.data.meta import DataError

TOKENIZER_FILE = "tokenizer.json"  # a prepared directory's tokenizer (mdm/data/tokenizer.py)


def repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


def cache_root() -> Path:
    """``$MDM_DATA_DIR`` or ``<repo>/data/cache`` (``./data/cache`` when not run from a checkout)."""
    env = os.environ.get("MDM_DATA_DIR")
    if env:
        return Path(env).expanduser()
    root = repo_root()
    if (root / "pyproject.toml").is_file():
        return root / "data" / "cache"
    return Path.cwd() / "data" / "cache"


def data_key(cfg: Any) -> str:
    """Directory name for a data config: source + tokenizer (+ BPE size, synthetic params, path hash)."""
    if cfg.name == "synthetic":
        s = cfg.synthetic
        key = (
            f"synthetic-v{s.vocab}-k{s.order}-a{s.concentration:g}-n{s.num_tokens}-e{s.eval_tokens}-s{s.seed}"
        )
    else:
        key = f"{cfg.name}-{cfg.tokenizer}"
        if cfg.tokenizer == "bpe":
            key += str(cfg.vocab_size)
        if cfg.name == "files" and not cfg.path:
            raise DataError("data.name=files needs data.path (a directory or glob of .txt/.jsonl/.parquet)")
        if cfg.path and cfg.name not in ("books", "synthetic"):
            key += "-" + hashlib.sha1(str(Path(cfg.path).expanduser().resolve()).encode()).hexdigest()[:10]
    tok_from = getattr(getattr(cfg, "prepare", None), "tokenizer_from", None)
    if tok_from and cfg.name != "synthetic":  # another dir's tokenizer: the key says which one
        from mdm.data.shards import sha256_file

        key += "-tok" + sha256_file(Path(tok_from).expanduser() / TOKENIZER_FILE)[:10]
    if getattr(cfg, "dtype", "auto") != "auto":
        key += f"-{cfg.dtype}"
    if getattr(cfg, "on_bad_file", "skip") != "skip" and cfg.name != "synthetic":
        key += f"-{cfg.on_bad_file}"
    if cfg.name == "books" and getattr(cfg, "books_sources", "auto") != "auto":
        key += f"-{cfg.books_sources}"
    return key


def resolve_data_dir(cfg: Any) -> Path:
    """``data.dir`` if set, else ``$MDM_DATA_DIR/<key>``, else ``<repo>/data/cache/<key>`` (a mixture:
    its first source's)."""
    if getattr(cfg, "mixture", None):  # the first entry as a single source (mdm.data.mixture.components)
        m = cfg.mixture[0]
        return resolve_data_dir(dataclasses.replace(cfg, name=m.name, path=m.path, dir=m.dir, mixture=[]))
    if cfg.dir:
        return Path(cfg.dir).expanduser()
    return cache_root() / data_key(cfg)
