"""Data: source recipes -> token shards + meta.json; a resumable, rank-sharded block loader.

Public interface: :func:`build_loader`, :func:`ensure_prepared`, :func:`resolve_data_dir`,
:class:`BlockLoader`, :class:`DataMeta`, :func:`load_meta`, ``SOURCES``. See ``mdm/data/meta.py`` for the
vocabulary convention (real ids < mask_id; vocab_size a multiple of 64).
"""

from mdm.data.datamodule import BlockLoader, build_loader, ensure_prepared, get_meta, resolve_data_dir
from mdm.data.meta import DataError, DataMeta, load_meta
from mdm.data.sources import SOURCES

__all__ = [
    "SOURCES",
    "BlockLoader",
    "DataError",
    "DataMeta",
    "build_loader",
    "ensure_prepared",
    "get_meta",
    "load_meta",
    "resolve_data_dir",
]
