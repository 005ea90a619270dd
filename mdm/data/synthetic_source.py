"""The ``synthetic`` recipe: three independent stationary Markov-chain streams (train/validation/test)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from mdm.data.meta import DataMeta, dtype_for, padded_vocab_size
from mdm.data.shards import ShardWriter
from mdm.data.synthetic import make_chain

CHUNK = 1 << 18  # tokens generated per progress step (the chain continues across chunks)


def synthetic_sizes(cfg: Any) -> dict[str, int]:
    s = cfg.synthetic
    return {"train": int(s.num_tokens), "validation": int(s.eval_tokens), "test": int(s.eval_tokens)}


def prepare_synthetic(cfg: Any, out_dir: Path, progress: bool = True) -> DataMeta:
    """Write ``<split>.bin`` streams of the chain given by ``cfg.synthetic``; ids are the chain symbols."""
    s = cfg.synthetic
    chain = make_chain(s.vocab, s.order, s.concentration, s.seed)
    eos_id = s.vocab  # a real token that never occurs in the streams (for code that needs an EOS id)
    mask_id = s.vocab + 1
    dtype = dtype_for(mask_id, getattr(cfg, "dtype", "auto"))
    splits = {}
    for i, (split, n) in enumerate(synthetic_sizes(cfg).items()):
        rng = np.random.default_rng([s.seed, i + 1])
        toks = np.empty(n, dtype=np.int64)
        done = 0
        with tqdm(
            total=n, desc=f"synthetic {split}", unit="tok", unit_scale=True, disable=not progress
        ) as bar:
            # one chain per split, generated in chunks; each chunk continues from the previous one's
            # last k tokens, so the split is a single stationary chain.
            state_tokens: np.ndarray | None = None
            while done < n:
                m = min(CHUNK, n - done)
                part = chain.sample(m, rng, prev=state_tokens)
                toks[done : done + m] = part
                state_tokens = toks[max(0, done + m - s.order) : done + m]
                done += m
                bar.update(m)
        w = ShardWriter(out_dir, split, dtype, mask_id, eos_id)
        w.add(toks, append_eos=False)
        splits[split] = w.close()
    return DataMeta(
        name="synthetic",
        tokenizer="identity",
        vocab_size=padded_vocab_size(mask_id),
        mask_id=mask_id,
        bos_id=eos_id,
        eos_id=eos_id,
        pad_id=eos_id,
        dtype=dtype,
        splits=splits,
        layout="stream",
        sources=[{"name": "synthetic", "licence": "generated", "sha256": None}],
        entropy_per_token=chain.entropy_rate(),
        synthetic={
            "vocab": s.vocab,
            "order": s.order,
            "concentration": s.concentration,
            "seed": s.seed,
            "entropy_rate": chain.entropy_rate(),
            "entropy_first_k": chain.entropy_first_k(),
            "uniform_entropy": float(np.log(s.vocab)),
        },
    )
