"""EDLM's options at ``objective.edlm`` (mdm/diffusion/edlm.py). ``objective.name`` picks the energy:
``edlm_nce`` (a trained energy network; these options name its runs) or ``edlm_ar`` (an AR model's
likelihood; nothing to train, it reads the same section). Torch-free: :mod:`mdm.options` reads this file
when a config is loaded."""

from __future__ import annotations

from dataclasses import dataclass

from mdm.options import objective_options


@objective_options("edlm_nce", "edlm")
@dataclass
class EdlmConfig:
    base_run: str | None = None  # run dir or checkpoint of the base masked diffusion model (mdlm | radd)
    ar_run: str | None = None  # edlm_ar: run dir or checkpoint of the AR model (same tokenizer)
    num_candidates: int = 16  # k candidates x0 ~ mu_theta(.|x_t) per importance-sampling step
    # importance sampling at steps starting at t in [1 - window, 1]; 0 = never, 1 = every step (the paper's
    # quality setting; it reports most of the gain, at its scale, from 0.2 -- its speed setting, with k = 2)
    window: float = 1.0
    nce_negatives_per_positive: int = 1  # edlm_nce: denoiser samples per real sequence (NCE noise ratio)
    bound_samples: int = 16  # likelihood: IS samples per estimate of log Z and of a revealed-subset marginal
    bound_steps: int = 128  # likelihood: discretisation (steps) of the process whose NELBO is reported

    def invalid(self) -> str | None:
        """The one-line message for the first field out of its range, else None (checked with the choices
        for edlm_nce: :func:`mdm.options.invalid_choice`; edlm_ar and the sampler call
        :func:`mdm.diffusion.edlm.check_edlm_config`)."""
        checks = (
            (
                self.num_candidates < 1,
                f"objective.edlm.num_candidates must be >= 1, got {self.num_candidates}",
            ),
            (not 0.0 <= self.window <= 1.0, f"objective.edlm.window must be in [0, 1], got {self.window}"),
            (
                self.nce_negatives_per_positive < 1,
                f"objective.edlm.nce_negatives_per_positive must be >= 1, got {self.nce_negatives_per_positive}",
            ),
            (
                self.bound_samples < 1 or self.bound_steps < 1,
                f"objective.edlm.bound_samples and bound_steps must be >= 1, got {self.bound_samples}, "
                f"{self.bound_steps}",
            ),
        )
        return next((msg for bad, msg in checks if bad), None)
