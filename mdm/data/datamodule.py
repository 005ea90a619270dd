"""Serving blocks of tokens: data directory resolution, preparation on demand, and :class:`BlockLoader`.

``BlockLoader`` is a plain iterable (no torch DataLoader, no worker processes) over a memory-mapped split
yielding ``{"input_ids": LongTensor (B, L)}`` (plus ``"attention_mask": BoolTensor (B, L)`` in padded
no-wrap mode).

Rows ("blocks"):

* wrap (MDLM's ``wrap``): the split's flat token stream (documents joined by EOS) is cut into blocks of
  ``C`` tokens, ``C = L`` or ``C = L - 2`` with ``add_bos`` (then each row is ``[BOS] + block + [EOS]``);
  the remainder shorter than ``C`` is dropped.
* no-wrap: each document becomes one or more rows of at most ``C`` tokens, right-padded with ``pad_id``
  (``attention_mask`` False there). Without ``add_bos`` the row content is the document followed by its
  EOS; with ``add_bos`` it is ``[BOS] + piece + [EOS]``.

Order: training loaders are infinite; epoch ``e`` visits the blocks in the permutation drawn from
``default_rng([seed, e])``, rank ``r`` of ``W`` taking ``perm[r::W]`` truncated to ``n_blocks // W`` blocks,
so ranks are disjoint and equally long; batches are consecutive runs of ``B`` blocks of that infinite
sequence (a batch may straddle an epoch boundary). With ``W`` ranks of batch ``B`` each, step ``i`` covers
exactly the blocks that one rank with batch ``W*B`` would. Evaluation loaders are finite and in order
(rank ``r`` takes blocks ``r::W``; the last batch may be short); each ``iter()`` starts a fresh pass from
the first block (even if the previous pass was stopped early), unless ``load_state_dict`` set a position.

Data-constrained training (``unique_tokens = U > 0``, ``data.unique_tokens``; mdm/data/unique.py): a
training loader keeps only the split's first ``ceil(U / C)`` blocks in stored order and cycles the epochs
above over them (``num_blocks`` is then the subset's size); evaluation loaders ignore it.

Position: the number of blocks this rank has consumed. ``state_dict()`` holds it (plus identity checks)
as plain ints/strs; after ``load_state_dict`` the next ``iter()`` continues exactly there.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mdm.data.ensure import components, ensure_prepared, prepare_all
from mdm.data.meta import DataError, DataMeta, load_meta
from mdm.data.mixture import MixtureLoader
from mdm.data.paths import cache_root, data_key, repo_root, resolve_data_dir  # noqa: F401 (re-exported)
from mdm.data.shards import open_split
from mdm.data.unique import check_subset

SPLIT_ALIASES = {"val": "validation", "valid": "validation", "eval": "validation"}
STATE_VERSION = 1


def get_meta(cfg: Any, progress: bool = True) -> DataMeta:
    return load_meta(ensure_prepared(cfg, progress=progress))


def build_loader(
    data_cfg: Any,
    split: str,
    seq_len: int,
    batch_size: int,
    seed: int,
    rank: int = 0,
    world_size: int = 1,
    train: bool = True,
    progress: bool = True,
) -> BlockLoader:
    """Prepare if needed and return the loader for ``split`` (see module docstring for the order). For a
    mixture: a :class:`~mdm.data.mixture.MixtureLoader` for training, the first source for evaluation."""
    if getattr(data_cfg, "mixture", None):
        dirs = prepare_all(data_cfg, progress=progress)
        kw = dict(seq_len=seq_len, batch_size=batch_size, seed=seed, rank=rank, world_size=world_size)
        kw |= dict(wrap=data_cfg.wrap, add_bos=data_cfg.add_bos)
        if not train:
            return BlockLoader(dirs[0], split, train=False, **kw)
        weights = [w for _, w in components(data_cfg)]
        return MixtureLoader([BlockLoader(d, split, train=True, **kw) for d in dirs], weights, batch_size)
    data_dir = ensure_prepared(data_cfg, progress=progress)
    return BlockLoader(
        data_dir,
        split,
        seq_len=seq_len,
        batch_size=batch_size,
        seed=seed,
        rank=rank,
        world_size=world_size,
        train=train,
        wrap=data_cfg.wrap,
        add_bos=data_cfg.add_bos,
        unique_tokens=getattr(data_cfg, "unique_tokens", 0) if train else 0,
    )


class BlockLoader:
    """Deterministic, resumable, rank-sharded batches of token blocks from one memory-mapped split."""

    def __init__(
        self,
        data_dir: str | Path,
        split: str,
        seq_len: int,
        batch_size: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        train: bool = True,
        wrap: bool = True,
        add_bos: bool = False,
        verify: bool | None = None,
        unique_tokens: int = 0,
    ):
        self.data_dir = Path(data_dir)
        self.meta: DataMeta = load_meta(self.data_dir)
        self.split = SPLIT_ALIASES.get(split, split)
        if seq_len < (3 if add_bos else 1):
            raise DataError(f"seq_len={seq_len} is too short{' for add_bos (needs >= 3)' if add_bos else ''}")
        if batch_size < 1:
            raise DataError(f"batch_size={batch_size} must be positive")
        if not 0 <= rank < world_size:
            raise DataError(f"rank={rank} must be in [0, world_size={world_size})")
        if add_bos and (self.meta.bos_id is None or self.meta.eos_id is None):
            raise DataError(f"add_bos needs BOS and EOS ids, but {self.data_dir} has bos={self.meta.bos_id}")
        self.seq_len, self.batch_size, self.seed = int(seq_len), int(batch_size), int(seed)
        self.rank, self.world_size, self.train = int(rank), int(world_size), bool(train)
        self.wrap, self.add_bos = bool(wrap), bool(add_bos)
        self.content = self.seq_len - 2 if add_bos else self.seq_len
        self._tokens, offsets = open_split(self.data_dir, self.meta, self.split, verify=verify)
        if self.wrap:
            self._starts = None
            self._lengths = None
            self.num_blocks = len(self._tokens) // self.content
        else:
            self._starts, self._lengths = self._nowrap_rows(offsets)
            self.num_blocks = len(self._starts)
        self.unique_tokens = int(unique_tokens)
        if self.train and self.unique_tokens:  # the first ceil(U / C) blocks only (mdm/data/unique.py)
            where = f"{self.data_dir} ({self.split!r})"
            self.num_blocks = check_subset(
                self.unique_tokens, self.content, self.num_blocks, len(self._tokens), where
            )
        elif self.unique_tokens < 0:
            check_subset(self.unique_tokens, self.content, self.num_blocks, len(self._tokens), "")
        if self.train:
            self.blocks_per_epoch = self.num_blocks // self.world_size
        else:
            self.blocks_per_epoch = len(range(self.rank, self.num_blocks, self.world_size))
        if self.blocks_per_epoch == 0:
            raise DataError(
                f"split {self.split!r} of {self.data_dir} has {len(self._tokens)} tokens = {self.num_blocks} "
                f"blocks of {self.content}: too few for world_size={self.world_size}"
            )
        self._position = 0
        self._resume: int | None = None  # evaluation loaders: where the next pass starts (else 0)
        self._perm_epoch = -1
        self._perm: np.ndarray | None = None

    # -- rows --------------------------------------------------------------------------------------
    def _nowrap_rows(self, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(start, length) of each row: documents cut into pieces of at most ``content`` tokens."""
        starts, ends = offsets[:-1].copy(), offsets[1:].copy()
        if self.add_bos and self.meta.layout == "flat-eos":
            ends = ends - 1  # drop the stored EOS: the row gets its own [BOS] ... [EOS]
        lengths = np.maximum(ends - starts, 0)
        keep = lengths > 0
        starts, lengths = starts[keep], lengths[keep]
        pieces = -(-lengths // self.content)  # ceil
        doc = np.repeat(np.arange(len(starts)), pieces)
        first = np.cumsum(pieces) - pieces
        k = np.arange(len(doc)) - np.repeat(first, pieces)  # piece index within its document
        row_start = starts[doc] + k * self.content
        row_len = np.minimum(self.content, starts[doc] + lengths[doc] - row_start)
        return row_start.astype(np.int64), row_len.astype(np.int64)

    def _rows(self, idx: np.ndarray) -> dict[str, torch.Tensor]:
        """Materialise rows ``idx`` into a batch dict."""
        B, L, C = len(idx), self.seq_len, self.content
        off = 1 if self.add_bos else 0
        if self.wrap:
            pos = idx[:, None] * C + np.arange(C)[None, :]  # (B, C)
            body = np.asarray(self._tokens[pos.reshape(-1)], dtype=np.int64).reshape(B, C)
            if not self.add_bos:
                return {"input_ids": torch.from_numpy(body)}
            out = np.empty((B, L), dtype=np.int64)
            out[:, 0] = self.meta.bos_id
            out[:, 1 : 1 + C] = body
            out[:, -1] = self.meta.eos_id
            return {"input_ids": torch.from_numpy(out)}
        out = np.full((B, L), self.meta.pad_id if self.meta.pad_id is not None else 0, dtype=np.int64)
        mask = np.zeros((B, L), dtype=bool)
        for b, i in enumerate(idx):
            s, n = int(self._starts[i]), int(self._lengths[i])
            out[b, off : off + n] = self._tokens[s : s + n]
            if self.add_bos:
                out[b, 0] = self.meta.bos_id
                out[b, off + n] = self.meta.eos_id
            mask[b, : n + 2 * off] = True
        return {"input_ids": torch.from_numpy(out), "attention_mask": torch.from_numpy(mask)}

    # -- order -------------------------------------------------------------------------------------
    def _epoch_blocks(self, epoch: int) -> np.ndarray:
        """This rank's block indices for training epoch ``epoch`` (cached)."""
        if epoch != self._perm_epoch:
            perm = np.random.default_rng([self.seed, epoch]).permutation(self.num_blocks)
            self._perm = perm[self.rank :: self.world_size][: self.blocks_per_epoch]
            self._perm_epoch = epoch
        assert self._perm is not None
        return self._perm

    def _indices(self, position: int, count: int) -> np.ndarray:
        """Block indices at this rank's positions ``[position, position + count)``."""
        if not self.train:
            return np.arange(self.rank, self.num_blocks, self.world_size)[position : position + count]
        out = []
        while count > 0:
            epoch, off = divmod(position, self.blocks_per_epoch)
            take = min(count, self.blocks_per_epoch - off)
            out.append(self._epoch_blocks(epoch)[off : off + take])
            position += take
            count -= take
        return np.concatenate(out)

    # -- iteration ---------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        if self.train:
            while True:
                idx = self._indices(self._position, self.batch_size)
                self._position += self.batch_size
                yield self._rows(idx)
        else:
            # every evaluation pass starts at the beginning (a consumer may stop early, e.g. after N
            # batches), unless load_state_dict asked to resume a pass part-way
            self._position, self._resume = (self._resume, None) if self._resume is not None else (0, None)
            while self._position < self.blocks_per_epoch:
                idx = self._indices(self._position, self.batch_size)
                self._position += len(idx)
                yield self._rows(idx)

    def __len__(self) -> int:
        """Batches per pass for evaluation loaders; training loaders are infinite (TypeError)."""
        if self.train:
            raise TypeError("a training BlockLoader is infinite")
        return -(-self.blocks_per_epoch // self.batch_size)

    @property
    def epoch(self) -> int:
        return self._position // self.blocks_per_epoch if self.train else 0

    @property
    def tokens_per_batch(self) -> int:
        return self.batch_size * self.seq_len

    # -- state -------------------------------------------------------------------------------------
    def state_dict(self, rewind_batches: int = 0) -> dict[str, Any]:
        """Plain ints/strs. ``rewind_batches``: report the position that many batches earlier (for a
        consumer that has prefetched batches it has not trained on yet)."""
        pos = self._position - rewind_batches * self.batch_size
        if pos < 0:
            raise ValueError(f"cannot rewind {rewind_batches} batches from position {self._position}")
        return {
            "version": STATE_VERSION,
            "position": int(pos),
            "split": self.split,
            "mode": self._mode(),
            "seed": self.seed,
            "rank": self.rank,
            "world_size": self.world_size,
            "seq_len": self.seq_len,
            "num_blocks": int(self.num_blocks),
            "batch_size": self.batch_size,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue at ``state['position']``; refuse a state from a different data/order setup."""
        if state.get("version") != STATE_VERSION:
            raise DataError(f"data loader state version {state.get('version')} != {STATE_VERSION}")
        mine = self.state_dict()
        for k in ("split", "mode", "seed", "rank", "world_size", "seq_len", "num_blocks"):
            if state.get(k) != mine[k]:
                raise DataError(
                    f"data loader state does not match this loader: {k}={state.get(k)!r} saved, {mine[k]!r} now"
                )
        pos = int(state["position"])
        if pos < 0 or (not self.train and pos > self.blocks_per_epoch):
            raise DataError(f"data loader state position {pos} out of range")
        self._position = pos
        if not self.train:
            self._resume = pos

    def _mode(self) -> str:
        return (
            ("train" if self.train else "eval")
            + ("-wrap" if self.wrap else "-nowrap")
            + ("-bos" if self.add_bos else "")
        )

    def __repr__(self) -> str:
        return (
            f"BlockLoader({self.data_dir.name}/{self.split}, L={self.seq_len}, B={self.batch_size}, "
            f"{self._mode()}, rank {self.rank}/{self.world_size}, blocks={self.num_blocks})"
        )


__all__ = [
    "BlockLoader",
    "build_loader",
    "cache_root",
    "data_key",
    "ensure_prepared",
    "get_meta",
    "resolve_data_dir",
]
