"""Mixtures of sources: ``data.mixture = [{name, weight, path?, dir?}, ...]``.

Each source is prepared as its own data directory from the data config with ``name``/``path``/``dir``
replaced (tokenizer, vocab_size, dtype, ... shared). All sources must share one tokenizer (same
``tokenizer_sha256``): the fixed ``gpt2``/``bert`` ones do; a trained ``bpe``/``char`` is trained on the
first source and reused by the others (``prepare.tokenizer_from``). Splitting a mixture into its sources
and preparing them (:func:`~mdm.data.ensure.components`, :func:`~mdm.data.ensure.prepare_all`) live in
mdm/data/ensure.py, below both this module and the datamodule.

:class:`MixtureLoader` draws each row of a training batch from the source with the largest deficit
``w_s * (n + 1) - c_s`` (``n`` rows drawn so far by this rank, ``c_s`` of them from source ``s``; ties go
to the earlier source), so after any ``n`` rows every source has contributed ``w_s * n`` rows up to less
than one row: proportions are exact, the order deterministic and the state (``n``, the counts and
each source loader's position) plain integers. Within a source, blocks come in that source's own
shuffled, rank-sharded :class:`~mdm.data.datamodule.BlockLoader` order. Evaluation uses the first source.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from mdm.data.ensure import components
from mdm.data.meta import DataError

STATE_VERSION = 1


def record(cfg: Any) -> list[dict[str, Any]] | None:
    """The mixture as a plain list for run summaries (None for a single source)."""
    if not getattr(cfg, "mixture", None):
        return None
    return [
        {"name": sub.name, "path": sub.path, "weight": w, "configured_weight": m.weight}
        for (sub, w), m in zip(components(cfg), cfg.mixture)
    ]


class MixtureLoader:
    """Training batches whose rows come from several BlockLoaders in exact weighted proportions."""

    def __init__(self, loaders: list[Any], weights: list[float], batch_size: int):
        if len(loaders) != len(weights) or not loaders:
            raise DataError("a mixture needs one weight per source")
        if any(not ld.train for ld in loaders):
            raise DataError("MixtureLoader mixes training loaders only")
        lengths = {ld.seq_len for ld in loaders}
        if len(lengths) != 1:
            raise DataError(f"mixture sources serve different block lengths {sorted(lengths)}")
        self.loaders = loaders
        self.weights = np.asarray(weights, dtype=np.float64) / float(np.sum(weights))
        self.batch_size = int(batch_size)
        self.seq_len = loaders[0].seq_len
        self.train = True
        self._drawn = 0
        self._counts = np.zeros(len(loaders), dtype=np.int64)

    def sources_of(self, count: int) -> np.ndarray:
        """The sources of the next ``count`` rows (advances the draw state)."""
        out = np.empty(count, dtype=np.int64)
        for j in range(count):
            s = int(np.argmax(self.weights * (self._drawn + 1) - self._counts))
            out[j] = s
            self._counts[s] += 1
            self._drawn += 1
        return out

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        while True:
            src = self.sources_of(self.batch_size)
            parts: dict[int, dict[str, torch.Tensor]] = {}
            for s in np.unique(src):
                ld = self.loaders[s]
                k = int(np.sum(src == s))
                parts[int(s)] = ld._rows(ld._indices(ld._position, k))
                ld._position += k
            keys = [set(p) for p in parts.values()]
            if any(k != keys[0] for k in keys):
                raise DataError(f"mixture sources return different batch keys: {[sorted(k) for k in keys]}")
            batch: dict[str, torch.Tensor] = {}
            for key in sorted(keys[0]):
                first = next(iter(parts.values()))[key]
                out = torch.empty((self.batch_size, *first.shape[1:]), dtype=first.dtype)
                for s, p in parts.items():
                    out[torch.from_numpy(np.flatnonzero(src == s))] = p[key]
                batch[key] = out
            yield batch

    @property
    def tokens_per_batch(self) -> int:
        return self.batch_size * self.seq_len

    @property
    def counts(self) -> list[int]:
        return self._counts.tolist()

    def state_dict(self, rewind_batches: int = 0) -> dict[str, Any]:
        if rewind_batches:
            raise ValueError("MixtureLoader.state_dict does not rewind; record the state after each batch")
        return {
            "version": STATE_VERSION,
            "kind": "mixture",
            "weights": self.weights.tolist(),
            "drawn": int(self._drawn),
            "counts": self.counts,
            "sources": [ld.state_dict() for ld in self.loaders],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("version") != STATE_VERSION or state.get("kind") != "mixture":
            raise DataError("data loader state is not a mixture state of this version")
        if len(state["sources"]) != len(self.loaders) or not np.allclose(state["weights"], self.weights):
            raise DataError(
                f"data loader state mixes {len(state['sources'])} sources with weights {state['weights']}, "
                f"this loader {len(self.loaders)} with {self.weights.tolist()}"
            )
        for ld, st in zip(self.loaders, state["sources"]):
            ld.load_state_dict(st)
        self._drawn = int(state["drawn"])
        self._counts = np.asarray(state["counts"], dtype=np.int64)

    def __repr__(self) -> str:
        parts = ", ".join(f"{w:.3f} {ld!r}" for w, ld in zip(self.weights, self.loaders))
        return f"MixtureLoader(B={self.batch_size}, {parts})"
