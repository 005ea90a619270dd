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


def build_objective(cfg, vocab: Vocab, load_run=None) -> Objective:
    """The objective named by ``cfg.objective.name``. ``load_run(path, device)``: how an objective built on
    a trained run (``Objective.builds_on_runs``) gets it; :func:`mdm.loading.build_objective` hands it in
    (nothing in this package loads a run)."""
    cls = lookup(OBJECTIVES, "objective", cfg.objective.name)
    return cls(cfg, vocab, load_run=load_run) if cls.builds_on_runs else cls(cfg, vocab)


__all__ = ["LossOut", "Objective", "OBJECTIVES", "SCHEDULES", "build_objective"]
