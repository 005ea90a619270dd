"""Samplers. Importing this package registers every sampler by name (see mdm/sampling/base.py)."""

from mdm.sampling import (  # noqa: F401  (ancestral, cached, first_hitting, semi_ar, euler, analytic)
    absorbing,
    autoregressive,  # noqa: F401  (registers the "ar" sampler)
    ccdd,  # noqa: F401  (registers the "ccdd" sampler)
    importance,  # noqa: F401  (registers the "edlm" sampler)
    score,
)
