"""Objectives and schedules. Importing this package registers every implementation by name."""

from mdm.diffusion import ar, mdlm, schedules  # noqa: F401  (registration side effects)
from mdm.diffusion import edlm  # noqa: F401  (EDLM objectives edlm_nce, edlm_ar)
from mdm.diffusion import radd, sedd  # noqa: F401  (RADD and SEDD objectives)
from mdm.diffusion import ccdd  # noqa: F401  (CCDD objective)
from mdm.diffusion.base import LossOut, Objective
from mdm.diffusion.registry import OBJECTIVES, SCHEDULES, lookup
from mdm.vocab import Vocab


def build_objective(cfg, vocab: Vocab) -> Objective:
    """The objective named by ``cfg.objective.name``."""
    return lookup(OBJECTIVES, "objective", cfg.objective.name)(cfg, vocab)


__all__ = ["LossOut", "Objective", "OBJECTIVES", "SCHEDULES", "build_objective"]
