"""Token shards: one flat ``<split>.bin`` per split (numpy memmap) plus ``<split>.idx`` document offsets.

Writing streams documents to disk (constant memory) and hashes as it goes; reading checks the size
against meta.json and, for files up to ``VERIFY_LIMIT`` bytes (or always with ``verify=True``), the sha256.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from mdm.data.meta import DataError, DataMeta, SplitInfo

VERIFY_LIMIT = 1 << 30  # sha256-check shards up to 1 GiB on every open (~1 s/GiB)


class ShardWriter:
    """Append documents (token id arrays) to ``<dir>/<split>.bin``; :meth:`close` returns SplitInfo."""

    def __init__(self, out_dir: Path, split: str, dtype: str, mask_id: int, eos_id: int | None):
        self.dir = Path(out_dir)
        self.split = split
        self.dtype = np.dtype(dtype)
        self.mask_id = mask_id
        self.eos_id = eos_id
        self.file = f"{split}.bin"
        self.index_file = f"{split}.idx"
        self._f = open(self.dir / self.file, "wb")  # noqa: SIM115 (closed in close())
        self._hash = hashlib.sha256()
        self._offsets = [0]
        self.tokens = 0

    def add(self, ids: np.ndarray | list[int], append_eos: bool = True) -> None:
        arr = np.asarray(ids, dtype=np.int64)
        if arr.size and (arr.min() < 0 or arr.max() >= self.mask_id):
            bad = int(arr.max() if arr.max() >= self.mask_id else arr.min())
            raise DataError(f"token id {bad} outside [0, {self.mask_id}) while writing split {self.split!r}")
        if append_eos:
            if self.eos_id is None:
                raise DataError("append_eos=True but the tokenizer has no EOS id")
            arr = np.append(arr, self.eos_id)
        b = arr.astype(self.dtype).tobytes()
        self._f.write(b)
        self._hash.update(b)
        self.tokens += int(arr.size)
        self._offsets.append(self.tokens)

    def add_flat(self, flat: np.ndarray, lengths: np.ndarray) -> None:
        """Append documents already joined into one array of ``self.dtype`` (their EOS included), of
        ``lengths`` tokens each: the batch form of :meth:`add` used by the parallel pipeline."""
        if flat.dtype != self.dtype:
            raise DataError(
                f"add_flat got {flat.dtype} tokens for a {self.dtype} shard of split {self.split!r}"
            )
        if flat.size and int(flat.max()) >= self.mask_id:
            raise DataError(f"token id {int(flat.max())} outside [0, {self.mask_id}) in split {self.split!r}")
        b = flat.tobytes()
        self._f.write(b)
        self._hash.update(b)
        ends = self.tokens + np.cumsum(lengths, dtype=np.int64)
        self._offsets.extend(ends.tolist())
        self.tokens += int(flat.size)

    def close(self) -> SplitInfo:
        self._f.flush()
        os.fsync(self._f.fileno())
        self._f.close()
        np.asarray(self._offsets, dtype=np.int64).tofile(self.dir / self.index_file)
        return SplitInfo(
            tokens=self.tokens,
            documents=len(self._offsets) - 1,
            file=self.file,
            sha256=self._hash.hexdigest(),
            index_file=self.index_file,
        )


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while b := f.read(chunk):
            h.update(b)
    return h.hexdigest()


class ShardedTokens:
    """Several token memmaps read as one stream: ``len``, ``t[a:b]`` and ``t[int array]`` (what the
    loader uses) across shard boundaries."""

    def __init__(self, parts: list[np.ndarray]):
        self.parts = parts
        self.starts = np.concatenate([[0], np.cumsum([len(p) for p in parts])]).astype(np.int64)
        self.dtype = parts[0].dtype

    def __len__(self) -> int:
        return int(self.starts[-1])

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, slice):
            a, b, step = key.indices(len(self))
            if step != 1:
                raise IndexError("ShardedTokens supports contiguous slices only")
            if b <= a:
                return np.zeros(0, dtype=self.dtype)
            i, j = (int(np.searchsorted(self.starts, x, "right")) - 1 for x in (a, b - 1))
            if i == j:
                return np.asarray(self.parts[i][a - self.starts[i] : b - self.starts[i]])
            return np.concatenate(
                [
                    self.parts[k][
                        max(a, self.starts[k]) - self.starts[k] : min(b, self.starts[k + 1]) - self.starts[k]
                    ]
                    for k in range(i, j + 1)
                ]
            )
        idx = np.asarray(key, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            raise IndexError(f"token index out of range [0, {len(self)})")
        shard = np.searchsorted(self.starts, idx, "right") - 1
        out = np.empty(idx.shape, dtype=self.dtype)
        for k in np.unique(shard):
            sel = shard == k
            out[sel] = self.parts[k][idx[sel] - self.starts[k]]
        return out

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = np.concatenate([np.asarray(p) for p in self.parts])
        return out.astype(dtype) if dtype is not None else out


def _open_file(
    data_dir: Path,
    file: str,
    index_file: str | None,
    tokens: int,
    documents: int,
    sha256: str,
    dtype: str,
    verify: bool,
) -> tuple[np.ndarray, np.ndarray]:
    path = Path(data_dir) / file
    if not path.is_file():
        raise DataError(f"shard {path} is missing")
    itemsize = np.dtype(dtype).itemsize
    size = path.stat().st_size
    if size % itemsize:
        raise DataError(f"corrupt shard {path}: size {size} bytes is not a multiple of {dtype}")
    if size // itemsize != tokens:
        raise DataError(f"corrupt shard {path}: holds {size // itemsize} tokens, meta.json says {tokens}")
    if verify:
        digest = sha256_file(path)
        if digest != sha256:
            raise DataError(f"corrupt shard {path}: sha256 {digest[:16]}... != meta.json {sha256[:16]}...")
    arr = np.memmap(path, dtype=dtype, mode="r") if tokens else np.zeros(0, dtype=dtype)
    if index_file is not None:
        ipath = Path(data_dir) / index_file
        if not ipath.is_file() or ipath.stat().st_size != 8 * (documents + 1):
            raise DataError(f"corrupt document index {ipath}: expected {documents + 1} int64 offsets")
        offsets = np.fromfile(ipath, dtype=np.int64)
        if offsets[0] != 0 or offsets[-1] != tokens or np.any(np.diff(offsets) < 0):
            raise DataError(f"corrupt document index {ipath}: offsets not increasing from 0 to {tokens}")
    else:
        offsets = np.asarray([0, tokens], dtype=np.int64)
    return arr, offsets


def open_split(
    data_dir: Path, meta: DataMeta, split: str, verify: bool | None = None
) -> tuple[np.ndarray | ShardedTokens, np.ndarray]:
    """Memory-map a split: returns (tokens (N,) memmap or :class:`ShardedTokens`, doc offsets (D+1,) int64).

    Raises DataError for an unknown split, a missing file, a size that is not a multiple of the dtype or
    disagrees with meta.json, or (when verified) a sha256 mismatch.
    """
    if split not in meta.splits:
        raise DataError(
            f"split {split!r} does not exist in {data_dir} (available: {', '.join(meta.splits) or 'none'})"
        )
    info = meta.splits[split]
    itemsize = np.dtype(meta.dtype).itemsize
    check = bool(verify or (verify is None and info.tokens * itemsize <= VERIFY_LIMIT))
    if info.shards is None:
        return _open_file(
            data_dir, info.file, info.index_file, info.tokens, info.documents, info.sha256, meta.dtype, check
        )
    parts, offsets = [], [np.zeros(1, dtype=np.int64)]
    for sh in info.shards:
        arr, off = _open_file(
            data_dir,
            sh["file"],
            sh["index_file"],
            sh["tokens"],
            sh["documents"],
            sh["sha256"],
            meta.dtype,
            check,
        )
        offsets.append(off[1:] + sum(len(p) for p in parts))
        parts.append(arr)
    total = sum(len(p) for p in parts)
    if total != info.tokens:
        raise DataError(
            f"{data_dir}: split {split!r} shards hold {total} tokens, meta.json says {info.tokens}"
        )
    return ShardedTokens(parts), np.concatenate(offsets)
