"""Shared fixtures: repo paths, the tiny debug config, a CPU-friendly torch."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
DEBUG_YAML = REPO / "configs" / "debug.yaml"

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture
def debug_overrides(tmp_path) -> list[str]:
    """Overrides for a seconds-long run whose run dir lives in tmp_path."""
    return [f"train.runs_dir={tmp_path / 'runs'}"]
