"""Fixtures for the EDLM run-level tests: tiny fake runs written straight to disk (no training)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from mdm.config import load, to_dict, to_yaml
from mdm.diffusion import build_objective
from mdm.vocab import Vocab

REPO = Path(__file__).resolve().parents[2]
DEBUG_YAML = REPO / "configs" / "debug.yaml"


def synthetic_vocab(n: int = 16) -> Vocab:
    """The synthetic source's layout: n symbols, EOS (= BOS = PAD) = n, mask = n + 1, padded to 64."""
    return Vocab(size=64, mask_id=n + 1, eos_id=n, bos_id=n, pad_id=n)


def write_fake_run(path: Path, overrides: list[str], seed: int = 0) -> Path:
    """A run directory holding a randomly initialised checkpoint in `mdm train`'s format, loadable by
    mdm.loading.load_run, and its config.yaml (config from configs/debug.yaml + overrides)."""
    cfg = load([DEBUG_YAML], overrides)
    vocab = synthetic_vocab(cfg.data.synthetic.vocab)
    torch.manual_seed(seed)
    objective = build_objective(cfg, vocab)
    model = objective.build_model(cfg, vocab)
    ck = {
        "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
        "global_step": 0,
        "mdm": {"config": to_dict(cfg), "vocab": dataclasses.asdict(vocab), "ema": None},
    }
    (path / "checkpoints").mkdir(parents=True, exist_ok=True)
    torch.save(ck, path / "checkpoints" / "last.ckpt")
    (path / "config.yaml").write_text(to_yaml(cfg))
    return path


@pytest.fixture
def fake_run(tmp_path):
    def make(name: str, *overrides: str, seed: int = 0) -> Path:
        return write_fake_run(tmp_path / name, list(overrides), seed)

    return make
