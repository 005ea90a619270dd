"""Objectives and schedules. Importing this package registers every implementation by name."""

from mdm.diffusion import (  # noqa: F401  (registration side effects)  # noqa: F401  (RADD and SEDD objectives)
    ar,
    ccdd,  # noqa: F401  (CCDD objective)
    edlm,  # noqa: F401  (EDLM objectives edlm_nce, edlm_ar)
    mdlm,
    radd,
    schedules,
    sedd,
)
from mdm.diffusion.base import LossOut, Objective
from mdm.diffusion.registry import OBJECTIVES, SCHEDULES, lookup
from mdm.vocab import Vocab


def build_objective(cfg, vocab: Vocab, **parts) -> Objective:
    """The objective named by ``cfg.objective.name``. ``parts``: what an objective built on trained runs
    is handed (``Objective.frozen_parts``: the run loader, CCDD's encoder source), by keyword;
    :func:`mdm.loading.build_objective` hands them in (nothing in this package reads a file or a run).
    Parts the objective does not name are ignored; the ones it names and is not given are None."""
    cls = lookup(OBJECTIVES, "objective", cfg.objective.name)
    return cls(cfg, vocab, **{k: parts.get(k) for k in cls.frozen_parts})


__all__ = ["LossOut", "Objective", "OBJECTIVES", "SCHEDULES", "build_objective"]
