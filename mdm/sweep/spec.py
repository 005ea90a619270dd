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
A (budget, size) pair giving fewer than ``min_steps`` steps is dropped from the plan (and listed);
a budget too small for even the smallest model is an error.

Data-constrained sweeps (mdm/data/unique.py): ``data.unique_tokens`` is an axis like any config key,
with the isoFLOP plan (epochs then follow from each run's tokens) or with fixed sizes; without an
isoFLOP plan the axis ``epochs`` (not a config key) sets each run's length to ``train.tokens = epochs x
U``, U = the subset's size in training tokens (rows x seq_len), steps rounded up::

    axes:
      objective.name: [mdlm, ar]
      model.depth: [2]
      data.unique_tokens: [32768, 131072]
      epochs: [1, 4, 16, 64]

``grids`` (a list of maps like ``axes``) makes a run set that is not one product: the runs are the union,
over its entries, of the product of ``axes`` and the entry (a key may not be in both), e.g. a single-epoch
ladder beside repeated subsets, with each family's own batch::

    axes: {model.depth: [2]}
    grids:
      - {objective.name: [mdlm], data.unique_tokens: [65536, 262144, 1048576], epochs: [1]}
      - {objective.name: [mdlm], data.unique_tokens: [65536], epochs: [4, 16, 64]}

Sizes placed per budget (Chinchilla's and SMDM's design: each budget gets its own range of sizes, so
that its minimum is interior and tokens/parameter stays in a sane band). Instead of every budget x
every size, give candidate shapes and a stated guess of the compute-optimal size::

    isoflop:
      shapes: [1x32, 2x32, 2x48, 2x64, 3x64, ...]  # DEPTHxWIDTH candidates (or depths: [...])
      n_opt: {at: 1e12, params: 2e5, exponent: 0.5} # guess N_opt(C) = params * (C / at) ** exponent
      sizes_per_budget: 5                           # sizes per budget, log-spaced over
      span_decades: 0.6                             #   N_opt(C) * 10^[-span, +span]
      tokens_per_param: [2, 250]                    # the sane band: runs outside it are warned about
      families:                                     # per objective.name: own budgets, guess, shapes
        ar:   {budgets: [2e10, 6e10, 2e11], n_opt: {at: 1e11, params: 6e4},
               overrides: [train.global_batch=16]}
        mdlm: {budgets: [3e11, 1e12, 3e12], shapes: [1x64, 2x64, 3x64, 4x64, 3x96]}

Each budget gets the ``sizes_per_budget`` candidates (params = non-embedding, from :mod:`mdm.flops`)
nearest in log params to targets spread evenly over the window, in order (an exact assignment, not a
greedy one). ``families`` keys are values of ``objective.name``; a family not listed uses the
top-level ``budgets``/``n_opt``/``shapes``; a family's ``overrides`` apply to its runs only (its
batch or learning rate: each family is fitted on its own, so each may be tuned on its own, and the plan
prints what differs). A mixed precision axis is refused: one precision per sweep.
"""

from __future__ import annotations

import difflib
import itertools
import os
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
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
class NoptGuess:
    """A stated guess of the compute-optimal size: N_opt(C) = params * (C / at) ** exponent."""

    at: float = 0.0  # reference budget (FLOPs)
    params: float = 0.0  # guessed N_opt at ``at`` (non-embedding parameters)
    exponent: float = 0.5  # Chinchilla's a ~ 0.5


@dataclass
class FamilyPlan:
    """One family's (objective.name value's) budgets and size guess; empty fields use the top level."""

    budgets: list[float] = field(default_factory=list)
    n_opt: NoptGuess | None = None
    shapes: list[str] = field(default_factory=list)  # own DEPTHxWIDTH candidates (e.g. wider for MDLM)
    overrides: list[str] = field(default_factory=list)  # key=value after base.overrides (e.g. own batch)
    sizes_per_budget: int | None = None  # own count of sizes per budget (None: the top level's)
    span_decades: float | None = None  # own window half-width in decades (None: the top level's)


@dataclass
class IsoFlopSpec:
    """isoFLOP compute plan: budgets x sizes (pairs below ``min_steps`` are dropped and listed)."""

    budgets: list[float] = field(default_factory=list)  # training FLOP budgets C
    depths: list[int] = field(default_factory=list)  # model.depth of each size (width by the rule)
    shapes: list[str] = field(default_factory=list)  # or DEPTHxWIDTH candidates, e.g. "2x64"
    n_opt: NoptGuess | None = None  # set: sizes placed per budget around this guess
    sizes_per_budget: int = 5
    span_decades: float = 0.6  # window N_opt(C) * 10^[-span, +span]
    tokens_per_param: list[float] = field(default_factory=list)  # [lo, hi]: warn outside
    families: dict[str, FamilyPlan] = field(default_factory=dict)  # objective.name -> own plan
    min_steps: int = 20  # fewer optimizer steps than this: the (budget, size) pair is dropped
    lr_rule: str = "constant"  # constant | inv_width
    lr_ref_width: int = 128  # inv_width: lr = optim.lr * lr_ref_width / d_model

    def for_family(self, family: str) -> tuple[list[float], NoptGuess | None]:
        """The budgets and size guess that apply to runs of ``objective.name == family``."""
        fp = self.families.get(family)
        budgets = (fp.budgets if fp and fp.budgets else None) or self.budgets
        guess = (fp.n_opt if fp and fp.n_opt is not None else None) or self.n_opt
        return list(budgets), guess

    def placement(self, family: str) -> tuple[int, float]:
        """(sizes per budget, span in decades) for runs of ``objective.name == family``."""
        fp = self.families.get(family)
        k = fp.sizes_per_budget if fp and fp.sizes_per_budget is not None else self.sizes_per_budget
        span = fp.span_decades if fp and fp.span_decades is not None else self.span_decades
        return k, span

    def shapes_for(self, family: str) -> list[str]:
        fp = self.families.get(family)
        return list(fp.shapes) if fp and fp.shapes else list(self.shapes)


def parse_shape(s: str) -> tuple[int, int]:
    """``"2x64"`` -> (depth 2, width 64)."""
    parts = str(s).lower().split("x")
    try:
        depth, width = (int(p) for p in parts)
    except ValueError:
        raise SweepError(f"isoflop.shapes: {s!r} is not DEPTHxWIDTH (e.g. 2x64)") from None
    if depth < 1 or width < 1:
        raise SweepError(f"isoflop.shapes: {s!r} needs depth >= 1 and width >= 1")
    return depth, width


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
    # sub-grids: the runs are the union over entries of the product of axes and the entry's own axes
    grids: list[dict[str, Any]] = field(default_factory=list)
    isoflop: IsoFlopSpec | None = None
    slurm: SlurmSpec = field(default_factory=SlurmSpec)
    local: LocalSpec = field(default_factory=LocalSpec)
    # set by load_spec, not read from YAML
    path: str | None = None

    @property
    def sweep_dir(self) -> Path:
        return Path(self.out_dir) if self.out_dir else Path("runs") / "sweeps" / self.name

    def combos(self) -> list[dict[str, Any]]:
        """Every run's axis values, in order: the product of ``axes`` (with each of ``grids`` in turn)."""
        out = []
        for g in self.grids or [{}]:
            axes = {**self.axes, **g}
            out += [dict(zip(axes, combo)) for combo in itertools.product(*axes.values())]
        return out

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
    # isoflop.families is a free-keyed map of typed entries: struct mode would refuse its keys, so its
    # entries are checked one by one against FamilyPlan
    grids = raw.pop("grids") if "grids" in raw else None  # free-keyed maps, checked in check_spec
    families = None
    if isinstance(raw.get("isoflop"), DictConfig) and "families" in raw.isoflop:
        families = raw.isoflop.pop("families")
    try:
        merged = OmegaConf.merge(schema, raw)
        spec: SweepSpec = OmegaConf.to_object(merged)  # type: ignore[assignment]
        if families is not None:
            if not isinstance(families, DictConfig):
                raise SweepError(f"{p}: isoflop.families must map objective names to {{budgets, n_opt}}")
            spec.isoflop.families = {
                str(k): _family(v, f"isoflop.families.{k}", p) for k, v in families.items()
            }
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None) or "?"
        raise SweepError(f"{p}: bad key {key!r}: {str(e).splitlines()[0]}") from e
    if grids is not None:
        grids = OmegaConf.to_container(grids) if isinstance(grids, (DictConfig, ListConfig)) else grids
        if not isinstance(grids, list) or not all(isinstance(g, dict) and g for g in grids):
            raise SweepError(f"{p}: grids must be a list of non-empty maps of config key -> list of values")
        spec.grids = grids
    spec.path = str(p)
    spec.base.files = [str(_resolve(f, p, "base.files")) for f in spec.base.files]
    if spec.slurm.template:
        spec.slurm.template = str(_resolve(spec.slurm.template, p, "slurm.template"))
    check_spec(spec)
    return spec


def _family(v: Any, key: str, p: Path) -> FamilyPlan:
    fs = OmegaConf.structured(FamilyPlan)
    OmegaConf.set_struct(fs, True)
    try:
        return OmegaConf.to_object(OmegaConf.merge(fs, v))  # type: ignore[return-value]
    except OmegaConfBaseException as e:
        sub = getattr(e, "full_key", None) or "?"
        raise SweepError(f"{p}: bad key {key}.{sub}: {str(e).splitlines()[0]}") from e


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


# Not a config key: passes over data.unique_tokens; the plan turns it into train.tokens = epochs x U.
EPOCHS_AXIS = "epochs"
# Keys the isoFLOP plan sets itself.
ISOFLOP_KEYS = ("model.depth", "model.d_model", "train.flops", "train.tokens", "train.max_steps")


def check_spec(spec: SweepSpec) -> None:
    where = spec.path or "sweep spec"
    if not spec.name or spec.name == "???" or not all(c.isalnum() or c in "-_." for c in spec.name):
        raise SweepError(f"{where}: name must be set to letters, digits, '-', '_' or '.' (got {spec.name!r})")
    for i, g in enumerate(spec.grids):
        both = [k for k in g if k in spec.axes]
        if both:
            raise SweepError(f"{where}: grids[{i}] repeats {both} of axes; give each key in one place")
    for name, axes in [("axes", spec.axes)] + [(f"grids[{i}]", g) for i, g in enumerate(spec.grids)]:
        for key, values in axes.items():
            if key != EPOCHS_AXIS:
                check_key(key, f"{where}: {name}")
            if not isinstance(values, list) or not values:
                raise SweepError(f"{where}: {name}.{key} must be a non-empty list of values (got {values!r})")
            if len({repr(v) for v in values}) != len(values):
                raise SweepError(f"{where}: {name}.{key} has repeated values: {values}")
    for g in spec.grids or [{}]:
        _check_epochs_axis(spec, {**spec.axes, **g}, where)
    iso = spec.isoflop
    if iso is not None:
        clash = [k for g in [spec.axes, *spec.grids] for k in g if k in ISOFLOP_KEYS]
        if clash:
            raise SweepError(f"{where}: axes {clash} are set by the isoflop plan; remove them from axes")
        _check_isoflop(spec, iso, where)
        if iso.min_steps < 1:
            raise SweepError(f"{where}: isoflop.min_steps must be >= 1 (got {iso.min_steps})")
        if iso.lr_rule not in LR_RULES:
            raise SweepError(
                f"{where}: isoflop.lr_rule={iso.lr_rule!r} is not valid; choose one of: {', '.join(LR_RULES)}"
            )
    if iso is not None:
        for fam, fp in iso.families.items():
            for o in fp.overrides:
                k = o.split("=", 1)[0].strip()
                check_key(k, f"{where}: isoflop.families.{fam}.overrides")
                if "=" not in o or k in ISOFLOP_KEYS or k in ("objective.name", "train.precision"):
                    raise SweepError(
                        f"{where}: isoflop.families.{fam}.overrides: {o!r} must be key=value, and not a key "
                        f"the plan sets ({', '.join(ISOFLOP_KEYS)}), objective.name or train.precision"
                    )
    if "train.precision" in spec.axes and len(spec.axes["train.precision"]) > 1:
        raise SweepError(
            f"{where}: axes.train.precision has several values; a scaling study keeps one precision per "
            f"sweep (set train.precision in base.overrides)"
        )
    if spec.local.max_parallel < 1:
        raise SweepError(f"{where}: local.max_parallel must be >= 1")
    if spec.slurm.signal_seconds < 1:
        raise SweepError(f"{where}: slurm.signal_seconds must be >= 1")


def _check_epochs_axis(spec: SweepSpec, axes: dict[str, Any], where: str) -> None:
    """``axes.epochs``: passes over each run's unique subset; the run's length is then set by it."""
    if EPOCHS_AXIS not in axes:
        return
    values = axes[EPOCHS_AXIS]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in values):
        raise SweepError(f"{where}: axes.epochs must be positive numbers (got {values})")
    if spec.isoflop is not None:
        raise SweepError(
            f"{where}: axes.epochs sets each run's length, and so does the isoflop plan: give one of them "
            f"(with isoflop, epochs follow from the budget and data.unique_tokens)"
        )
    clash = [k for k in ("train.tokens", "train.max_steps", "train.flops") if k in axes]
    if clash:
        raise SweepError(f"{where}: axes.epochs sets train.tokens; remove {clash} from axes")


def _check_isoflop(spec: SweepSpec, iso: IsoFlopSpec, where: str) -> None:
    if iso.depths and iso.shapes or not (iso.depths or iso.shapes):
        raise SweepError(f"{where}: isoflop needs exactly one of depths or shapes (non-empty)")
    if any(d < 1 for d in iso.depths):
        raise SweepError(f"{where}: isoflop.depths must be >= 1 (got {iso.depths})")
    for fp in [iso, *iso.families.values()]:
        for s in fp.shapes:
            parse_shape(s)
    if iso.depths and any(fp.shapes for fp in iso.families.values()):
        raise SweepError(f"{where}: isoflop.families.*.shapes needs isoflop.shapes, not depths")
    fam_axis = spec.axes.get("objective.name")
    for fam in iso.families:
        if fam_axis is not None and fam not in fam_axis:
            raise SweepError(
                f"{where}: isoflop.families.{fam}: not a value of axes.objective.name {list(fam_axis)}"
            )
    if not iso.budgets:
        uncovered = [f for f in fam_axis or [None] if f not in iso.families or not iso.families[f].budgets]
        if uncovered:
            raise SweepError(
                f"{where}: isoflop.budgets is empty and isoflop.families gives no budgets for "
                f"{', '.join(map(str, uncovered))}"
            )
    plans = [("isoflop", iso.budgets, iso.n_opt)]
    plans += [(f"isoflop.families.{f}", fp.budgets, fp.n_opt) for f, fp in iso.families.items()]
    for key, budgets, guess in plans:
        if any(not (c > 0) for c in budgets):
            raise SweepError(f"{where}: {key}.budgets must be positive FLOP counts (got {budgets})")
        if guess is not None and not (guess.at > 0 and guess.params >= 1 and guess.exponent > 0):
            raise SweepError(f"{where}: {key}.n_opt needs at > 0, params >= 1 and exponent > 0 (got {guess})")
    if iso.n_opt is not None or any(f.n_opt is not None for f in iso.families.values()):
        n_top = len(iso.depths or iso.shapes)
        placements = [("isoflop", iso.sizes_per_budget, iso.span_decades, n_top)]
        placements += [
            (f"isoflop.families.{f}", *iso.placement(f), len(fp.shapes) or n_top)
            for f, fp in iso.families.items()
        ]
        for key, k, span, n_cand in placements:
            if not 2 <= k <= n_cand:
                raise SweepError(
                    f"{where}: {key}.sizes_per_budget={k} must be between 2 and the {n_cand} candidate sizes"
                )
            if not span > 0:
                raise SweepError(f"{where}: {key}.span_decades must be > 0 (got {span})")
    tpp = iso.tokens_per_param
    if tpp and not (len(tpp) == 2 and 0 < tpp[0] < tpp[1]):
        raise SweepError(f"{where}: isoflop.tokens_per_param must be [lo, hi] with 0 < lo < hi (got {tpp})")
