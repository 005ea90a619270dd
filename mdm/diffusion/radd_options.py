"""RADD's options (mdm/diffusion/radd.py): directly under ``objective.``, where every run name has had
them. Torch-free: :mod:`mdm.options` reads this file when a config is loaded."""

from __future__ import annotations

from dataclasses import dataclass

from mdm.options import choice, objective_options

RADD_LOSSES = ("t_dce", "lambda_dce", "any_order")  # objective.loss=default is t_dce


@objective_options("radd", None)
@dataclass
class RaddConfig:
    loss: str = choice("default", "default", *RADD_LOSSES)  # the estimator (radd.py's docstring)
    graph: str = choice("absorb", "absorb")  # absorbing only
