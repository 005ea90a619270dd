"""Data: source recipes -> token shards + meta.json; a resumable, rank-sharded block loader.

Public interface: :func:`build_loader`, :func:`ensure_prepared`, :func:`resolve_data_dir`,
:class:`BlockLoader`, :class:`DataMeta`, :func:`load_meta`, ``SOURCES``. See ``mdm/data/meta.py`` for the
vocabulary convention (real ids < mask_id; vocab_size a multiple of 64). The names are imported lazily,
so that preparing data (and its worker processes) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "BlockLoader": "mdm.data.datamodule",
    "build_loader": "mdm.data.datamodule",
    "ensure_prepared": "mdm.data.ensure",
    "get_meta": "mdm.data.datamodule",
    "resolve_data_dir": "mdm.data.datamodule",
    "DataError": "mdm.data.meta",
    "DataMeta": "mdm.data.meta",
    "load_meta": "mdm.data.meta",
    "SOURCES": "mdm.data.sources",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mdm.data' has no attribute {name!r}")
