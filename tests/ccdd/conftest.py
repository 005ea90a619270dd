"""Fixtures for the CCDD tests: a small synthetic corpus and a tiny MDLM trained a few steps as the encoder."""

from __future__ import annotations

from pathlib import Path

import pytest

from mdm.config import Config, load

REPO = Path(__file__).resolve().parents[2]
DEBUG_YAML = REPO / "configs" / "debug.yaml"
# Small synthetic corpus (prepared in well under a second) and a short, quiet run.
DATA = ["data.synthetic.num_tokens=20000", "data.synthetic.eval_tokens=4000", "logging.progress_bar=false"]


@pytest.fixture(scope="session")
def ccdd_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("ccdd")


@pytest.fixture(autouse=True)
def _data_cache(ccdd_root, monkeypatch):
    monkeypatch.setenv("MDM_DATA_DIR", str(ccdd_root / "cache"))


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """The models here are tiny: one intra-op thread is faster, and kinder to shared cores."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_cfg(root: Path, *overrides: str) -> Config:
    return load([DEBUG_YAML], [f"train.runs_dir={root / 'runs'}", *DATA, *overrides])


@pytest.fixture(scope="session")
def encoder_run(ccdd_root) -> Path:
    """A tiny MDLM trained for 8 steps on the synthetic data: the frozen encoder of the CCDD tests."""
    import os

    from mdm.train import train

    old = os.environ.get("MDM_DATA_DIR")
    os.environ["MDM_DATA_DIR"] = str(ccdd_root / "cache")
    try:
        cfg = tiny_cfg(ccdd_root, "train.max_steps=8", "train.val_every=8", "train.run_name=encoder")
        assert train(cfg)["status"] == "completed"
    finally:
        if old is None:
            os.environ.pop("MDM_DATA_DIR", None)
        else:
            os.environ["MDM_DATA_DIR"] = old
    return ccdd_root / "runs" / "encoder"
