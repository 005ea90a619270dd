from mdm.sampling import ccdd  # noqa: F401  (registers the "ccdd" sampler)
from mdm.sampling import importance  # noqa: F401  (registers the "edlm" sampler)
