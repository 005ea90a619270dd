"""Where data lives on disk (importable without torch: used by the prepare path and its workers)."""

from __future__ import annotations

import os
from pathlib import Path


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
