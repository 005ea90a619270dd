"""Expanding a sweep spec into runs: one fully resolved config per run, nothing trained.

Each run's config is ``load(base.files, base.overrides + axis values + isoFLOP values)``; its name is
:func:`mdm.rundir.run_name` of that config (so the config decides the directory) under the sweep's
runs directory. Parameter and FLOP counts and the step count come from :func:`mdm.train.prepare_run`,
i.e. exactly what ``mdm train`` will use.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mdm.config import Config, ConfigError, load, to_yaml, validate
from mdm.rundir import RunDir, run_name
from mdm.sweep.spec import SweepError, SweepSpec


@dataclass
class PlannedRun:
    index: int
    name: str
    cfg: Config
    overrides: list[str]  # what this run adds to the base (axes, isoFLOP plan), as key=value
    values: dict[str, Any]  # axis values of this run (for display and results)
    budget: float | None  # the isoFLOP budget C, None without a compute plan
    depth: int
    d_model: int
    params_total: int
    params_non_embedding: int
    flops_per_token: float
    steps: int
    tokens: int
    flops: float  # steps * tokens_per_step * flops_per_token (>= budget: steps are rounded up)
    lr: float
    flop_convention: str = ""

    @property
    def run_dir(self) -> RunDir:
        return RunDir(Path(self.cfg.train.runs_dir) / self.name)

    @property
    def family(self) -> str:
        return self.cfg.objective.name

    @property
    def tokens_per_param(self) -> float:
        return self.tokens / self.params_non_embedding

    def config_yaml(self) -> str:
        return to_yaml(self.cfg)


@dataclass
class Plan:
    spec: SweepSpec
    runs: list[PlannedRun]
    dropped: list[str] = field(default_factory=list)  # (budget, depth) pairs below min_steps

    @property
    def sweep_dir(self) -> Path:
        return self.spec.sweep_dir

    def by_name(self) -> dict[str, PlannedRun]:
        return {r.name: r for r in self.runs}


def fmt_value(v: Any) -> str:
    """A value as the right-hand side of an OmegaConf dotlist override (JSON is valid YAML)."""
    return json.dumps(v)


def _load(spec: SweepSpec, extra: list[str], what: str) -> Config:
    try:
        return load(spec.base.files, [*spec.base.overrides, *extra])
    except ConfigError as e:
        raise SweepError(f"{spec.path}: run {what}: {e}") from e


def _with(cfg: Config, **sections: dict[str, Any]) -> Config:
    """``cfg`` with some fields of some sections replaced (the round trip through YAML is checked
    when the run's config file is written)."""
    return dataclasses.replace(
        cfg, **{k: dataclasses.replace(getattr(cfg, k), **v) for k, v in sections.items()}
    )


def build_plan(spec: SweepSpec) -> Plan:
    """Every run of the sweep with its counts; raises SweepError on a bad key or an unusable budget."""
    from mdm.train import prepare_run

    runs_dir = spec.runs_dir.resolve()
    common = [f"train.runs_dir={fmt_value(str(runs_dir))}", "logging.progress_bar=false"]
    axes = list(spec.axes.items())
    iso = spec.isoflop
    runs: list[PlannedRun] = []
    dropped: list[str] = []
    for combo in itertools.product(*[v for _, v in axes]):
        values = {k: v for (k, _), v in zip(axes, combo)}
        axis_over = [f"{k}={fmt_value(v)}" for k, v in values.items()]
        label = " ".join(f"{k}={v}" for k, v in values.items()) or "(base)"
        base = _load(spec, axis_over + common, label)
        for budget in iso.budgets if iso else [None]:
            kept = []
            for depth in iso.depths if iso else [None]:
                over, cfg = list(axis_over), base
                what = f"{label}" + (f" C={budget:.3g} depth={depth}" if iso else "")
                if iso:
                    over += [f"model.depth={depth}", f"train.flops={float(budget)!r}"]
                    cfg = _with(
                        cfg,
                        model={"depth": depth},
                        train={"max_steps": None, "tokens": None, "flops": float(budget)},
                    )
                try:
                    validate(cfg)
                    p = prepare_run(cfg)
                except ConfigError as e:
                    raise SweepError(f"{spec.path}: run {what}: {e}") from e
                counts, derived = p["counts"], p["derived"]
                if iso and iso.lr_rule == "inv_width":
                    lr = base.optim.lr * iso.lr_ref_width / counts.d_model
                    over.append(f"optim.lr={lr!r}")
                    cfg = _with(cfg, optim={"lr": lr})
                if iso and derived.max_steps < iso.min_steps:
                    dropped.append(
                        f"{what}: {derived.max_steps} steps < min_steps={iso.min_steps} (params {counts.params_non_embedding:,})"
                    )
                    kept.append(None)
                    continue
                run = PlannedRun(
                    index=len(runs),
                    name=run_name(cfg),
                    cfg=cfg,
                    overrides=over,
                    values=values,
                    budget=float(budget) if budget is not None else None,
                    depth=cfg.model.depth,
                    d_model=counts.d_model,
                    params_total=counts.params_total,
                    params_non_embedding=counts.params_non_embedding,
                    flops_per_token=counts.flops_per_token,
                    steps=derived.max_steps,
                    tokens=derived.total_tokens,
                    flops=derived.total_flops,
                    lr=cfg.optim.lr,
                    flop_convention=counts.as_dict()["flop_convention"],
                )
                runs.append(run)
                kept.append(run)
            if iso and all(k is None for k in kept):
                smallest = min(iso.depths)
                pr = prepare_run(_with(base, model={"depth": smallest}))
                need = iso.min_steps * pr["derived"].tokens_per_step * pr["counts"].flops_per_token
                raise SweepError(
                    f"{spec.path}: isoflop budget C={budget:.3g} is too small for the smallest model "
                    f"(depth {smallest}, {label}): below isoflop.min_steps={iso.min_steps} optimizer steps; "
                    f"the smallest usable budget is {need:.3g} FLOPs (or lower min_steps / train.global_batch)"
                )
    seen: dict[str, PlannedRun] = {}
    for r in runs:
        if r.name in seen:
            raise SweepError(
                f"{spec.path}: runs {seen[r.name].overrides} and {r.overrides} have the same name {r.name!r} "
                f"(is train.run_name set in the base config?)"
            )
        seen[r.name] = r
    return Plan(spec=spec, runs=runs, dropped=dropped)


def format_plan(plan: Plan) -> str:
    """The plan as a table: name, family, depth, params, tokens, C, tokens/param, steps, lr."""
    spec = plan.spec
    lines = [
        f"sweep {spec.name}: {len(plan.runs)} runs under {spec.runs_dir}",
    ]
    if spec.isoflop:
        lines.append(
            f"isoFLOP: budgets {[f'{c:.3g}' for c in spec.isoflop.budgets]} x depths {spec.isoflop.depths}; "
            f"global batch fixed per sweep; lr rule: {spec.isoflop.lr_rule}"
        )
    if plan.runs:
        lines.append(f"FLOPs: {plan.runs[0].flop_convention}; params = non-embedding (total in brackets)")
    head = f"{'#':>3} {'name':<40} {'family':<7} {'depth':>5} {'params':>22} {'C':>9} {'flops':>9} {'tokens':>11} {'tok/param':>9} {'steps':>6} {'lr':>8}"
    lines += [head, "-" * len(head)]
    for r in plan.runs:
        params = f"{r.params_non_embedding:,} [{r.params_total:,}]"
        c = f"{r.budget:.3g}" if r.budget is not None else "-"
        lines.append(
            f"{r.index:>3} {r.name:<40} {r.family:<7} {r.depth:>5} {params:>22} {c:>9} {r.flops:>9.3g} "
            f"{r.tokens:>11,} {r.tokens_per_param:>9.2f} {r.steps:>6} {r.lr:>8.2g}"
        )
    if plan.dropped:
        lines.append(f"dropped ({len(plan.dropped)}, below min_steps):")
        lines += [f"  {d}" for d in plan.dropped]
    return "\n".join(lines)
