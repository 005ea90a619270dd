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
