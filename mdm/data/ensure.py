"""Preparing the data a data config names, on demand: one source, or every source of a mixture.

:func:`ensure_prepared` is what the loaders, ``mdm data prepare``, ``mdm train`` and the benches call; a
mixture (``data.mixture``, mdm/data/mixture.py) is split by :func:`components` into single-source configs,
each prepared as its own directory by :func:`prepare_all`, which checks that they share one tokenizer.
Importable without torch (the prepare path and its workers do not load it).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from mdm.data.meta import DataError, load_meta
from mdm.data.paths import resolve_data_dir
from mdm.data.prepare import prepare


def ensure_prepared(cfg: Any, progress: bool = True, force: bool = False) -> Path:
    """Prepare the data for ``cfg`` unless already done (idempotent, atomic); return its directory (a
    mixture: every source is prepared, and the first one's directory, whose vocabulary all share, is
    returned)."""
    if getattr(cfg, "mixture", None):
        return prepare_all(cfg, progress=progress)[0]
    return prepare(cfg, resolve_data_dir(cfg), progress=progress, force=force)


def components(cfg: Any) -> list[tuple[Any, float]]:
    """(single-source data config, normalised weight) per mixture entry, in order."""
    if not cfg.mixture:
        raise DataError("data.mixture is empty")
    total = 0.0
    for i, m in enumerate(cfg.mixture):
        if not m.weight > 0:
            raise DataError(f"data.mixture[{i}].weight={m.weight} must be positive")
        total += m.weight
    out = []
    for m in cfg.mixture:
        sub = dataclasses.replace(cfg, name=m.name, path=m.path, dir=m.dir, mixture=[])
        out.append((sub, m.weight / total))
    return out


def prepare_all(cfg: Any, progress: bool = True) -> list[Path]:
    """Prepare every source of a mixture (idempotent) and check they share one tokenizer; return their
    dirs."""
    dirs: list[Path] = []
    for i, (sub, _) in enumerate(components(cfg)):
        if i and sub.tokenizer in ("bpe", "char") and not sub.prepare.tokenizer_from:
            sub = dataclasses.replace(
                sub, prepare=dataclasses.replace(sub.prepare, tokenizer_from=str(dirs[0]))
            )
        dirs.append(ensure_prepared(sub, progress=progress))
    metas = [load_meta(d) for d in dirs]
    for i, m in enumerate(metas[1:], 1):
        for key in ("tokenizer_sha256", "mask_id", "vocab_size", "dtype", "eos_id", "bos_id", "pad_id"):
            if getattr(m, key) != getattr(metas[0], key):
                raise DataError(
                    f"data.mixture[{i}] ({dirs[i]}) has {key}={getattr(m, key)!r} but data.mixture[0] "
                    f"({dirs[0]}) has {getattr(metas[0], key)!r}: the sources of a mixture share one tokenizer"
                )
    return dirs
