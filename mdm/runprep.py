"""The build step of a run, without Lightning: config -> data, vocabulary -> objective (handed what it
is built on, :func:`mdm.loading.build_objective`) -> network (on the meta device, to count) -> counts and
derived values. ``mdm train`` uses it; the sweep planner never comes here: it counts every objective
from the configs alone (``Objective.config_counts``, mdm/sweep/counts.py)."""

from __future__ import annotations

from typing import Any

import torch

from mdm.config import Config
from mdm.derived import derive, world_size
from mdm.loading import build_objective
from mdm.vocab import Vocab


def prepare_run(cfg: Config) -> dict[str, Any]:
    """Everything a run needs that is derived from the config (data, vocab, counts, derived values)."""
    from mdm.data.datamodule import ensure_prepared
    from mdm.data.meta import load_meta

    data_dir = ensure_prepared(cfg.data)
    meta = load_meta(data_dir)
    vocab = Vocab.from_meta(meta)
    objective = build_objective(cfg, vocab)
    with torch.device("meta"):
        model = objective.build_model(cfg, vocab)  # = mdm.module.build_model
    counts = objective.counts(model)  # outside: an objective may load a frozen network to count it
    derived = derive(cfg, counts, world_size(cfg))
    return {
        "data_dir": data_dir,
        "meta": meta,
        "vocab": vocab,
        "objective": objective,
        "counts": counts,
        "derived": derived,
    }
