"""Sweeps: a typed spec (configs/sweeps/*.yaml) -> a plan of runs -> local or Slurm launch -> status and
results.csv for the scaling package.

``spec`` (the YAML schema), ``plan`` (runs with counts, nothing trained), ``launch`` (which runs to start),
``local`` and ``slurm`` (launchers), ``status``, ``collect``. CLI: ``mdm sweep plan|run|status|collect``.
"""
