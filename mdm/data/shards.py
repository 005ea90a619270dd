"""Token shards: one flat ``<split>.bin`` per split (numpy memmap) plus ``<split>.idx`` document offsets.

Writing streams documents to disk (constant memory) and hashes as it goes; reading checks the size
against meta.json and, for files up to ``VERIFY_LIMIT`` bytes (or always with ``verify=True``), the sha256.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

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

    def close(self) -> SplitInfo:
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


def open_split(
    data_dir: Path, meta: DataMeta, split: str, verify: bool | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Memory-map a split: returns (tokens (N,) memmap, doc offsets (D+1,) int64).

    Raises DataError for an unknown split, a missing file, a size that is not a multiple of the dtype or
    disagrees with meta.json, or (when verified) a sha256 mismatch.
    """
    if split not in meta.splits:
        raise DataError(
            f"split {split!r} does not exist in {data_dir} (available: {', '.join(meta.splits) or 'none'})"
        )
    info = meta.splits[split]
    path = Path(data_dir) / info.file
    if not path.is_file():
        raise DataError(f"shard {path} is missing")
    itemsize = np.dtype(meta.dtype).itemsize
    size = path.stat().st_size
    if size % itemsize:
        raise DataError(f"corrupt shard {path}: size {size} bytes is not a multiple of {meta.dtype}")
    if size // itemsize != info.tokens:
        raise DataError(
            f"corrupt shard {path}: holds {size // itemsize} tokens, meta.json says {info.tokens}"
        )
    if verify or (verify is None and size <= VERIFY_LIMIT):
        digest = sha256_file(path)
        if digest != info.sha256:
            raise DataError(
                f"corrupt shard {path}: sha256 {digest[:16]}... != meta.json {info.sha256[:16]}..."
            )
    tokens = np.memmap(path, dtype=meta.dtype, mode="r") if info.tokens else np.zeros(0, dtype=meta.dtype)
    if info.index_file is not None:
        ipath = Path(data_dir) / info.index_file
        if not ipath.is_file() or ipath.stat().st_size != 8 * (info.documents + 1):
            raise DataError(f"corrupt document index {ipath}: expected {info.documents + 1} int64 offsets")
        offsets = np.fromfile(ipath, dtype=np.int64)
        if offsets[0] != 0 or offsets[-1] != info.tokens or np.any(np.diff(offsets) < 0):
            raise DataError(f"corrupt document index {ipath}: offsets not increasing from 0 to {info.tokens}")
    else:
        offsets = np.asarray([0, info.tokens], dtype=np.int64)
    return tokens, offsets
