"""SEDD's options (mdm/diffusion/sedd.py): directly under ``objective.``, where every run name has had
them. Torch-free: :mod:`mdm.options` reads this file when a config is loaded."""

from __future__ import annotations

from dataclasses import dataclass

from mdm.options import choice, objective_options

SEDD_LOSSES = ("default", "dse")
SEDD_GRAPHS = ("absorb", "uniform")  # mdm/diffusion/graphs.py's GRAPHS (tests/test_objective_options.py)


@objective_options("sedd", None)
@dataclass
class SeddConfig:
    loss: str = choice("default", *SEDD_LOSSES)
    graph: str = choice("absorb", *SEDD_GRAPHS)  # the forward process: absorbing or uniform
