"""Load a trained run (a run directory, a checkpoint file, or an ``mdm export`` folder) for sampling and
evaluation.

The model comes back with its EMA weights (what validation used) in eval mode. Checkpoints are read
with ``torch.load(weights_only=True)``: no arbitrary pickles are executed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from mdm.config import Config, from_dict
from mdm.diffusion import Objective, build_objective
from mdm.models.backbone import Transformer
from mdm.vocab import Vocab


@dataclass
class LoadedRun:
    cfg: Config
    vocab: Vocab
    objective: Objective
    model: Transformer
    run_dir: Path | None
    checkpoint: Path
    step: int
    tokenizer: object | None = None  # an exported folder's own tokenizer (mdm.export)
    export_dir: Path | None = None  # set when loaded from an `mdm export` folder


def resolve_checkpoint(path: str | Path) -> tuple[Path, Path | None]:
    """A run dir -> its checkpoints/last.ckpt; a .ckpt file -> itself (run dir = two levels up if it looks like one)."""
    p = Path(path)
    if p.is_dir():
        ck = p / "checkpoints" / "last.ckpt"
        if not ck.exists():
            raise FileNotFoundError(f"run directory {p} has no checkpoint at {ck}")
        return ck, p
    if p.is_file():
        run = p.parent.parent if p.parent.name == "checkpoints" else None
        return p, run
    raise FileNotFoundError(f"no run directory or checkpoint at {p}")


def load_run(path: str | Path, device: str | torch.device = "cpu", ema: bool = True) -> LoadedRun:
    """A run directory, a checkpoint file, or an ``mdm export`` folder (:func:`mdm.export.load_pretrained`)."""
    from mdm.export import is_export, load_pretrained

    if is_export(path):
        return load_pretrained(path, device)
    from mdm.train import load_checkpoint_safely

    ck_path, run_dir = resolve_checkpoint(path)
    ck = load_checkpoint_safely(ck_path)
    extra = ck.get("mdm") or {}
    if "config" not in extra or "vocab" not in extra:
        raise ValueError(
            f"checkpoint {ck_path} lacks the mdm config/vocab section (not written by mdm train?)"
        )
    cfg = from_dict(extra["config"])
    vocab = Vocab(**extra["vocab"])
    objective = build_objective(cfg, vocab)
    model = objective.build_model(cfg, vocab)
    state = {k.removeprefix("model."): v for k, v in ck["state_dict"].items() if k.startswith("model.")}
    model.load_state_dict(state)
    if ema and extra.get("ema"):
        with torch.no_grad():
            for n, p in model.named_parameters():
                if n in extra["ema"]:
                    p.copy_(extra["ema"][n])
    model.to(device).eval()
    return LoadedRun(cfg, vocab, objective, model, run_dir, ck_path, int(ck.get("global_step", 0)))
