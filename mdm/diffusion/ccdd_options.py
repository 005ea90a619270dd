"""CCDD's options at ``objective.ccdd`` (coevolutionary continuous-discrete diffusion; mdm/diffusion/ccdd.py
documents every field). Torch-free: :mod:`mdm.options` reads this file when a config is loaded.

Tokens are masked as in MDLM; per-token vectors z0 = standardise(project(f(x0))) from a frozen encoder
(a trained run of this project) are noised by a Gaussian process. Loss per token = discrete NELBO
term + lambda_cont * MSE of the continuous head (mean over the d_cont dims).
"""

from __future__ import annotations

from dataclasses import dataclass

from mdm.options import choice, objective_options

PROCESSES = ("vp", "flow")
TARGETS = ("eps", "x0", "velocity")
TIME_LINKS = ("shared", "independent", "power")
BOUNDS = ("discrete", "z_blind")
ENCODERS = ("embedding", "hidden")
ENCODER_INPUTS = ("clean", "masked")
PROJECTIONS = ("pca", "truncate")


@objective_options("ccdd", "ccdd")
@dataclass
class CcddConfig:
    encoder: str = choice("embedding", *ENCODERS)  # embedding (token embedding table; per-position) | hidden
    encoder_run: str | None = None  # run dir or checkpoint of a trained run of this project
    encoder_layer: int = -1  # hidden: blocks applied (0 = embeddings, -1 = last block after final norm)
    encoder_input: str = choice("clean", *ENCODER_INPUTS)  # hidden: clean (x0; leaks masked) | masked (x_t)
    projection: str = choice("pca", *PROJECTIONS)  # pca (top principal components) | truncate (first d_cont)
    d_cont: int = 32
    process: str = choice(
        "vp", *PROCESSES
    )  # vp: z = cos(pi s/2) z0 + sin(pi s/2) eps | flow: (1 - s) z0 + s eps
    target: str = choice("x0", *TARGETS)  # x0 (z0) | eps | velocity (vp: cos*eps - sin*z0; flow: eps - z0)
    time_link: str = choice("shared", *TIME_LINKS)  # shared (s = t) | independent (s ~ U[t_min, 1]) | power
    time_power: float = 1.0  # power: s = t^time_power
    cont_drop: float = 0.1  # probability per sequence of a z-blind input (s = 1): enables guidance
    lambda_cont: float = 1.0
    continuous: bool = True  # false: exactly MDLM on the same backbone
    bound: str = choice(
        "discrete", *BOUNDS
    )  # what sequence_loss (validation/eval) reports: discrete | z_blind
    stats_file: str | None = None  # None -> <encoder run>/ccdd_stats/<descriptor>.pt
    compute_stats: bool = True  # compute missing statistics at the default path (explicit files never)
    stats_batches: int = 16  # training batches of eval.batch_size sequences used for the statistics
    guidance_scale: float = 0.0  # sampling: w in log p_c + w (log p_c - log p_blind); 0 = off

    def invalid(self) -> str | None:
        """The one-line message for the first field out of its range, else None (checked with the choices
        when a config is loaded and when the objective is built: :func:`mdm.options.invalid_choice`)."""
        checks = (
            (self.d_cont <= 0, f"objective.ccdd.d_cont must be positive, got {self.d_cont}"),
            (self.lambda_cont < 0, f"objective.ccdd.lambda_cont must be >= 0, got {self.lambda_cont}"),
            (
                not 0 <= self.cont_drop < 1,
                f"objective.ccdd.cont_drop must be in [0, 1), got {self.cont_drop}",
            ),
            (self.time_power <= 0, f"objective.ccdd.time_power must be positive, got {self.time_power}"),
            (
                self.stats_batches <= 0,
                f"objective.ccdd.stats_batches must be positive, got {self.stats_batches}",
            ),
        )
        return next((msg for bad, msg in checks if bad), None)
