"""The config a trained run was made with, read without loading its checkpoint: what counting a run
built on a frozen one (EDLM-NCE's base run, CCDD's encoder run) reads (``Objective.config_counts``;
the sweep planner hands it this reader)."""

from __future__ import annotations

import json
from pathlib import Path

from mdm.config import Config, ConfigError, from_dict


def read_run_config(path: str | Path, key: str) -> Config:
    """The config of the trained run at ``path`` (config field ``key``), without loading its checkpoint:
    ``<run>/config.yaml`` for a run directory or a checkpoint under ``<run>/checkpoints/``, ``config.json``
    for an ``mdm export`` folder. A bare checkpoint (no run directory around it) has no config to read."""
    from omegaconf import OmegaConf

    p = Path(path)
    if p.is_file() and p.parent.name == "checkpoints":
        p = p.parent.parent
    if p.is_dir() and (p / "config.yaml").is_file():
        try:
            return from_dict(OmegaConf.to_container(OmegaConf.load(p / "config.yaml")))
        except Exception as e:
            raise ConfigError(
                f"{key}={path}: {p / 'config.yaml'} is unreadable ({type(e).__name__}: {e})"
            ) from e
    if p.is_dir() and (p / "config.json").is_file():  # an export folder (mdm/export.py)
        try:
            return from_dict(json.loads((p / "config.json").read_text())["config"])
        except Exception as e:
            raise ConfigError(
                f"{key}={path}: {p / 'config.json'} is unreadable ({type(e).__name__}: {e})"
            ) from e
    if not p.exists():
        raise ConfigError(f"{key}={path}: no run directory or checkpoint there")
    raise ConfigError(
        f"{key}={path}: no config.yaml (run directory) or config.json (export folder) to count it from; "
        f"give the run directory rather than a bare checkpoint"
    )
