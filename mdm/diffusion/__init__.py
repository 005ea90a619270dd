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


def build_objective(cfg, vocab: Vocab) -> Objective:
    """The objective named by ``cfg.objective.name``."""
    return lookup(OBJECTIVES, "objective", cfg.objective.name)(cfg, vocab)


__all__ = ["LossOut", "Objective", "OBJECTIVES", "SCHEDULES", "build_objective"]
