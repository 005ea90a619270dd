"""The run directory: the contract every tool (sweeps, eval, scaling) reads.

    runs/<run_name>/
      config.yaml      resolved config
      metrics.jsonl    one JSON object per logged step (step, tokens, loss, lr, tokens_per_s, val_loss)
      checkpoints/     last.ckpt + periodic step-XXXXXXX.ckpt (a file that did not load: *.ckpt.corrupt)
      train.lock       flock'ed by the one ``mdm train`` writing the run; holds its PID (mdm/lock.py)
      summary.json     written last, atomically (status, objective, params_total, params_non_embedding,
                       flops_per_token, tokens, flops, val_loss, val_ppl_bound, wall_s, git_sha, ...)
      eval/            zero_shot.json, samples.jsonl, ...

The run name is derived from the config (not a timestamp), so re-running the same command finds the
same directory and resumes.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mdm.config import Config, to_dict
from mdm.io import atomic_write_json, read_jsonl
from mdm.options import section_owners

# Keys that do not change what is trained (bookkeeping, logging) and so do not enter the run name.
_NAME_EXCLUDED = {
    ("train", "runs_dir"),
    ("train", "run_name"),
    ("logging",),
    ("eval",),
    ("train", "threads"),
    ("data", "prepare"),
    ("train", "preempt_grace_s"),
    ("train", "force_limits"),
    ("train", "activation_checkpointing"),  # recomputes activations: same gradients, less memory
}
# Keys hashed at a fixed value: how a run is spread over devices does not change what it trains (the
# global batch, the noise keyed by global sequence index, losses over global counts), so a run resumed on
# another number of devices or nodes, or under another strategy, finds its directory.
_NAME_NEUTRAL = {("train", "devices"): 1, ("train", "num_nodes"): 1, ("train", "strategy"): "auto"}


def run_name(cfg: Config) -> str:
    """``<objective>-<data>-d<depth>-L<seq_len>-<8 hex of the config hash>`` unless train.run_name is set."""
    if cfg.train.run_name:
        return cfg.train.run_name
    d = to_dict(cfg)
    # The option sections of objectives other than the one trained do not enter the name either (each
    # objective declares its own: mdm/options.py), so a change of, say, a CCDD default, or a new
    # objective, does not rename every MDLM run.
    for sub, owner in section_owners().items():
        if cfg.objective.name != owner:
            d["objective"].pop(sub, None)
    if not d["data"].get("mixture"):
        d["data"].pop("mixture", None)  # a single-source run keeps the name it had before mixtures
    if not d["data"].get("unique_tokens"):
        d["data"].pop("unique_tokens", None)  # the whole split: the name it had before data.unique_tokens
    for (section, k), value in _NAME_NEUTRAL.items():
        d[section][k] = value
    for key in _NAME_EXCLUDED:
        node = d
        for k in key[:-1]:
            node = node[k]
        node.pop(key[-1], None)
    digest = hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:8]
    return f"{cfg.objective.name}-{cfg.data.name}-d{cfg.model.depth}-L{cfg.model.seq_len}-{digest}"


@dataclass(frozen=True)
class RunDir:
    path: Path

    @classmethod
    def for_config(cls, cfg: Config) -> RunDir:
        return cls(Path(cfg.train.runs_dir) / run_name(cfg))

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def config(self) -> Path:
        return self.path / "config.yaml"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def last_ckpt(self) -> Path:
        return self.checkpoints / "last.ckpt"

    @property
    def summary(self) -> Path:
        return self.path / "summary.json"

    @property
    def eval_dir(self) -> Path:
        return self.path / "eval"

    def read_summary(self) -> dict[str, Any] | None:
        """The summary, or None when absent; a corrupt one raises naming the file."""
        if not self.summary.exists():
            return None
        try:
            return json.loads(self.summary.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"corrupt summary file {self.summary}: {e}") from e

    def is_complete(self) -> bool:
        s = self.read_summary()
        return s is not None and s.get("status") == "completed"

    def write_summary(self, summary: dict[str, Any]) -> None:
        atomic_write_json(self.summary, summary)

    def read_metrics(self) -> list[dict]:
        return read_jsonl(self.metrics)


def git_sha(cwd: Path | None = None) -> str | None:
    """HEAD's sha, with ``-dirty`` when tracked files differ from it (untracked files do not count)."""
    cwd = Path(__file__).parent if cwd is None else cwd
    try:
        run = lambda *a: subprocess.run(["git", *a], capture_output=True, text=True, timeout=5, cwd=cwd)  # noqa: E731
        sha = run("rev-parse", "HEAD").stdout.strip()
        if not sha:
            return None
        dirty = run("status", "--porcelain", "--untracked-files=no")
        return f"{sha}-dirty" if dirty.returncode == 0 and dirty.stdout.strip() else sha
    except (OSError, subprocess.SubprocessError):
        return None
