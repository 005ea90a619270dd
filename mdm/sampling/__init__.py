"""Samplers. Importing this package registers every sampler by name (see mdm/sampling/base.py)."""

from mdm.sampling import absorbing, score  # noqa: F401  (ancestral, cached, first_hitting, semi_ar, euler, analytic)
from mdm.sampling import ccdd  # noqa: F401  (registers the "ccdd" sampler)
from mdm.sampling import importance  # noqa: F401  (registers the "edlm" sampler)
