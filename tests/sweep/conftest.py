"""Fixtures for the sweep tests: a session-wide synthetic data cache and tiny sweep specs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEBUG_YAML = REPO / "configs" / "debug.yaml"
# Small synthetic corpus: prepared in well under a second, shared by every sweep test.
SMALL_DATA = ["data.synthetic.num_tokens=20000", "data.synthetic.eval_tokens=4000"]


@pytest.fixture(scope="session")
def data_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("sweep-data")


@pytest.fixture(autouse=True)
def _data_env(data_cache, monkeypatch):
    """Prepared data goes to the session cache, for this process and for child training processes."""
    monkeypatch.setenv("MDM_DATA_DIR", str(data_cache))


def write_spec(path: Path, **spec) -> Path:
    """Write a sweep spec YAML (defaults: name 'test', out_dir beside it, the debug config + small data)."""
    spec.setdefault("name", "test")
    spec.setdefault("out_dir", str(path.parent / "sweep"))
    base = spec.setdefault("base", {})
    base.setdefault("files", [str(DEBUG_YAML)])
    base["overrides"] = SMALL_DATA + list(base.get("overrides", []))
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def python_env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1"}
