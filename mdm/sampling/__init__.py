from mdm.sampling import ccdd  # noqa: F401  (registers the "ccdd" sampler)
