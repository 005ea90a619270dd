"""The sweep spec: a typed YAML file under ``configs/sweeps/``.

    name: demo                      # names the sweep directory and the Slurm job
    out_dir: demo_out               # default runs/sweeps/<name>; runs go to <out_dir>/runs/<run_name>
    base:                           # the config every run starts from (as for `mdm train`)
      files: [configs/debug.yaml]   # relative paths: against the current directory, then the spec's
      overrides: [data.name=books]
    axes:                           # a grid (Cartesian product) over any config keys
      objective.name: [mdlm, ar]
    isoflop:                        # optional compute plan: budgets x sizes
      budgets: [3e12, 1e13]         # FLOP budgets C (training FLOPs, mdm.flops convention)
      depths: [1, 2, 3, 4]          # model sizes via the one size dial, model.depth
      min_steps: 30
      lr_rule: constant             # constant | inv_width
    slurm: {partition: gpu, time: "04:00:00", gpus_per_node: 1, cpus_per_task: 8, mem: 64G}
    local: {max_parallel: 1}

The isoFLOP rule (written into every run as ``train.flops=C``; :mod:`mdm.derived` turns it into steps):
the global batch (``train.global_batch`` sequences of ``model.seq_len`` tokens) is the same for every
size, so a run of size N takes ``steps = ceil(C / (flops_per_token(N) * tokens_per_step))`` and sees
``D = steps * tokens_per_step`` tokens (``flops_per_token`` from :mod:`mdm.flops`: 6 N_matmul + attention).
Learning rate: ``constant`` keeps ``optim.lr`` for every size; ``inv_width`` uses
``optim.lr * lr_ref_width / d_model`` (the 1/width Adam rule of muP for hidden weights, applied to all).
A (budget, depth) pair giving fewer than ``min_steps`` steps is dropped from the plan (and listed);
a budget too small for even the smallest model is an error.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from mdm.config import Config


class SweepError(ValueError):
    """A problem with a sweep spec, its runs or their submission; the message names the key/run/file."""


@dataclass
class BaseSpec:
    """The config every run starts from: YAML files (deltas over the defaults) then key=value overrides."""

    files: list[str] = field(default_factory=list)
    overrides: list[str] = field(default_factory=list)


@dataclass
class IsoFlopSpec:
    """isoFLOP compute plan: every budget x every depth (pairs below ``min_steps`` are dropped)."""

    budgets: list[float] = field(default_factory=list)  # training FLOP budgets C
    depths: list[int] = field(default_factory=list)  # model.depth of each size
    min_steps: int = 20  # fewer optimizer steps than this: the (budget, depth) pair is dropped
    lr_rule: str = "constant"  # constant | inv_width
    lr_ref_width: int = 128  # inv_width: lr = optim.lr * lr_ref_width / d_model


@dataclass
class SlurmSpec:
    """Resources of every task of the job array (one task per run) and what runs before it."""

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    time: str = "01:00:00"  # per task; the run checkpoints signal_seconds before it and requeues
    gpus_per_node: int = 0  # 0: no --gpus-per-node line (CPU clusters)
    cpus_per_task: int = 2
    mem: str | None = None  # e.g. 64G (per node); None: the partition's default
    signal_seconds: int = 120  # --signal=USR1@<this>: time to checkpoint before the limit
    max_parallel: int | None = None  # array throttle (%k); --max-parallel overrides
    setup: list[str] = field(default_factory=list)  # shell lines before srun (module load ..., source ...)
    extra: list[str] = field(default_factory=list)  # more #SBATCH options, e.g. "--constraint=a100"
    python: str | None = None  # interpreter on the nodes; None: the one running `mdm sweep run`
    template: str | None = None  # sbatch template; None: slurm/array.sbatch of this checkout


@dataclass
class LocalSpec:
    max_parallel: int = 1  # runs at a time; --max-parallel overrides
    threads: int | None = None  # torch threads per run; None: cpu count // max_parallel


@dataclass
class SweepSpec:
    name: str = "???"
    out_dir: str | None = None  # None -> runs/sweeps/<name>
    base: BaseSpec = field(default_factory=BaseSpec)
    axes: dict[str, Any] = field(default_factory=dict)  # config key -> list of values
    isoflop: IsoFlopSpec | None = None
    slurm: SlurmSpec = field(default_factory=SlurmSpec)
    local: LocalSpec = field(default_factory=LocalSpec)
    # set by load_spec, not read from YAML
    path: str | None = None

    @property
    def sweep_dir(self) -> Path:
        return Path(self.out_dir) if self.out_dir else Path("runs") / "sweeps" / self.name

    @property
    def runs_dir(self) -> Path:
        return self.sweep_dir / "runs"


LR_RULES = ("constant", "inv_width")
REPO_ROOT = Path(__file__).resolve().parents[2]


def load_spec(path: str | os.PathLike) -> SweepSpec:
    """Read and check a sweep spec YAML; errors name the file and the bad key."""
    p = Path(path)
    if not p.is_file():
        raise SweepError(f"sweep spec not found: {p}")
    try:
        raw = OmegaConf.load(p)
    except Exception as e:
        raise SweepError(f"cannot parse sweep spec {p}: {e}") from e
    schema = OmegaConf.structured(SweepSpec)
    OmegaConf.set_struct(schema, True)
    OmegaConf.set_struct(schema.axes, False)  # free keys, checked against the config tree below
    if "path" in raw:
        raise SweepError(f"{p}: 'path' is set by mdm, not a spec key")
    try:
        merged = OmegaConf.merge(schema, raw)
        spec: SweepSpec = OmegaConf.to_object(merged)  # type: ignore[assignment]
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None) or "?"
        raise SweepError(f"{p}: bad key {key!r}: {str(e).splitlines()[0]}") from e
    spec.path = str(p)
    spec.base.files = [str(_resolve(f, p, "base.files")) for f in spec.base.files]
    if spec.slurm.template:
        spec.slurm.template = str(_resolve(spec.slurm.template, p, "slurm.template"))
    check_spec(spec)
    return spec


def _resolve(f: str, spec_path: Path, key: str) -> Path:
    """A relative path: against the current directory, the spec file's directory, then this checkout."""
    q = Path(f).expanduser()
    if q.is_absolute():
        if not q.is_file():
            raise SweepError(f"{spec_path}: {key}: file not found: {q}")
        return q
    bases = [Path.cwd(), spec_path.parent.resolve(), REPO_ROOT]
    for base in bases:
        if (base / q).is_file():
            return (base / q).resolve()
    raise SweepError(f"{spec_path}: {key}: file {f!r} not found (looked in {', '.join(map(str, bases))})")


def config_keys(cls: type = Config, prefix: str = "") -> list[str]:
    """Every leaf key of the config tree (``model.depth``, ``train.flops``, ...)."""
    out = []
    for f in fields(cls):
        default = f.default_factory() if callable(f.default_factory) else f.default  # type: ignore[misc]
        if is_dataclass(default):
            out += config_keys(type(default), prefix + f.name + ".")
        else:
            out.append(prefix + f.name)
    return out


def check_key(key: str, where: str) -> None:
    keys = config_keys()
    if key not in keys:
        close = difflib.get_close_matches(key, keys, n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise SweepError(f"{where}: {key!r} is not a config key{hint}")


# Keys the isoFLOP plan sets itself.
ISOFLOP_KEYS = ("model.depth", "train.flops", "train.tokens", "train.max_steps")


def check_spec(spec: SweepSpec) -> None:
    where = spec.path or "sweep spec"
    if not spec.name or spec.name == "???" or not all(c.isalnum() or c in "-_." for c in spec.name):
        raise SweepError(f"{where}: name must be set to letters, digits, '-', '_' or '.' (got {spec.name!r})")
    for key, values in spec.axes.items():
        check_key(key, f"{where}: axes")
        if not isinstance(values, list) or not values:
            raise SweepError(f"{where}: axes.{key} must be a non-empty list of values (got {values!r})")
        if len({repr(v) for v in values}) != len(values):
            raise SweepError(f"{where}: axes.{key} has repeated values: {values}")
    iso = spec.isoflop
    if iso is not None:
        clash = [k for k in spec.axes if k in ISOFLOP_KEYS]
        if clash:
            raise SweepError(f"{where}: axes {clash} are set by the isoflop plan; remove them from axes")
        if not iso.budgets or not iso.depths:
            raise SweepError(f"{where}: isoflop needs non-empty budgets and depths")
        if any(not (c > 0) for c in iso.budgets):
            raise SweepError(f"{where}: isoflop.budgets must be positive FLOP counts (got {iso.budgets})")
        if any(d < 1 for d in iso.depths):
            raise SweepError(f"{where}: isoflop.depths must be >= 1 (got {iso.depths})")
        if iso.min_steps < 1:
            raise SweepError(f"{where}: isoflop.min_steps must be >= 1 (got {iso.min_steps})")
        if iso.lr_rule not in LR_RULES:
            raise SweepError(
                f"{where}: isoflop.lr_rule={iso.lr_rule!r} is not valid; choose one of: {', '.join(LR_RULES)}"
            )
    if spec.local.max_parallel < 1:
        raise SweepError(f"{where}: local.max_parallel must be >= 1")
    if spec.slurm.signal_seconds < 1:
        raise SweepError(f"{where}: slurm.signal_seconds must be >= 1")
