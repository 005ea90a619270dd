"""Compute-optimal scaling-law fits (Chinchilla Approaches 1–3) with bootstrap intervals.

Standalone: numpy, scipy, pandas, matplotlib; never imports torch. Entry points:

    load_results(path)                      RESULTS.csv (+ companion JSON) → validated Results
    fit_approach1(history) / fit_approach2(df) / fit_approach3(N, D, L)
    bootstrap_approach1/2/3(fit, …)         seeded bootstrap over runs → fit.intervals
    compute_multiplier(θ_f, θ_r, C, …)      two-family compute gap
    compare_families(…)                     multiplier and N_opt ratio at the reference's smallest
                                            budget, with intervals and a status (scaling.checks)
    make_report(results, out_dir, …)        the whole sweep report (report.md, fit.json, figures)
    python -m scaling fit | report | synth  the command line
"""

from scaling.approach1 import Approach1Fit, fit_approach1
from scaling.approach2 import Approach2Fit, fit_approach2
from scaling.approach3 import DEFAULT_GRID, Approach3Fit, fit_approach3, init_grid
from scaling.bootstrap import bootstrap_approach1, bootstrap_approach2, bootstrap_approach3
from scaling.errors import ScalingInputError, ScalingWarning
from scaling.forms import LossParams
from scaling.gap import compare_families, compute_multiplier, empirical_multiplier
from scaling.report import make_report
from scaling.results import Results, load_results, load_run_histories, validate

__all__ = [
    "DEFAULT_GRID",
    "Approach1Fit",
    "Approach2Fit",
    "Approach3Fit",
    "LossParams",
    "Results",
    "ScalingInputError",
    "ScalingWarning",
    "bootstrap_approach1",
    "bootstrap_approach2",
    "bootstrap_approach3",
    "compare_families",
    "compute_multiplier",
    "empirical_multiplier",
    "fit_approach1",
    "fit_approach2",
    "fit_approach3",
    "init_grid",
    "load_results",
    "load_run_histories",
    "make_report",
    "validate",
]
