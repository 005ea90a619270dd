"""Expanding a sweep spec into runs: one fully resolved config per run, nothing trained.

Each run's config is ``load(base.files, base.overrides + axis values + isoFLOP values)``; its name is
:func:`mdm.rundir.run_name` of that config (so the config decides the directory) under the sweep's
runs directory. Parameter and FLOP counts and the step count come from the config alone
(:func:`mdm.sweep.counts.plan_counts`: the numbers ``mdm train`` computes, without preparing data,
building a network or importing torch).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mdm.config import Config, ConfigError, load, to_yaml, validate
from mdm.data.unique import subset_tokens
from mdm.derived import inv_width_lr
from mdm.rundir import RunDir, run_name
from mdm.sweep.counts import plan_counts
from mdm.sweep.spec import EPOCHS_AXIS, IsoFlopSpec, NoptGuess, SweepError, SweepSpec, parse_shape


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
    vocab_exact: bool = True  # vocabulary from the prepared data's meta.json (else the tokenizer recipe's)
    unique_tokens: int = 0  # data.unique_tokens' subset in training tokens (rows x seq_len); 0 = all

    @property
    def epochs(self) -> float | None:
        """Passes over the unique subset (tokens / unique_tokens); None on the whole split."""
        return self.tokens / self.unique_tokens if self.unique_tokens else None

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
    dropped: list[str] = field(default_factory=list)  # (budget, size) pairs below min_steps
    warnings: list[str] = field(default_factory=list)  # runs outside the tokens/param band, windows cut short

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


Size = tuple[int, int | None]  # (model.depth, model.d_model or None for the width rule)


def candidate_sizes(iso: IsoFlopSpec, family: str) -> list[Size]:
    shapes = iso.shapes_for(family)
    if shapes:
        return [parse_shape(s) for s in shapes]
    return [(d, None) for d in iso.depths]


def size_label(size: Size, sep: str = "=") -> str:
    return f"depth{sep}{size[0]}" if size[1] is None else f"shape{sep}{size[0]}x{size[1]}"


def place_sizes(params: list[float], guess: float, k: int, span: float) -> list[int]:
    """Indices of the ``k`` candidates (``params`` ascending) nearest in log10 to ``k`` targets spread
    evenly over ``guess * 10^[-span, +span]``, in order: the assignment minimising the summed
    |log10 params - log10 target| (dynamic programming over the sorted candidates)."""
    n = len(params)
    if k > n:
        raise ValueError(f"{k} sizes wanted from {n} candidates")
    lp = [math.log10(p) for p in params]
    lg = math.log10(guess)
    targets = [lg - span + 2 * span * i / (k - 1) for i in range(k)]
    inf = float("inf")
    # cost[i][j]: best cost placing targets[:i] on candidates[:j] (the i-th on candidate j-1 or earlier)
    cost = [[inf] * (n + 1) for _ in range(k + 1)]
    take = [[False] * (n + 1) for _ in range(k + 1)]
    for j in range(n + 1):
        cost[0][j] = 0.0
    for i in range(1, k + 1):
        for j in range(i, n + 1):
            skip = cost[i][j - 1]
            use = cost[i - 1][j - 1] + abs(lp[j - 1] - targets[i - 1])
            cost[i][j], take[i][j] = (use, True) if use <= skip else (skip, False)
    out, i, j = [], k, n
    while i > 0:
        if take[i][j]:
            out.append(j - 1)
            i -= 1
        j -= 1
    return out[::-1]


def build_plan(spec: SweepSpec) -> Plan:
    """Every run of the sweep with its counts; raises SweepError on a bad key or an unusable budget."""
    runs_dir = spec.runs_dir.resolve()
    common = [f"train.runs_dir={fmt_value(str(runs_dir))}", "logging.progress_bar=false"]
    iso = spec.isoflop
    runs: list[PlannedRun] = []
    dropped: list[str] = []
    warnings: list[str] = []
    for values in spec.combos():  # the product of axes (per entry of spec.grids)
        axis_over = [f"{k}={fmt_value(v)}" for k, v in values.items() if k != EPOCHS_AXIS]
        label = " ".join(f"{k}={v}" for k, v in values.items()) or "(base)"
        base = _load(spec, axis_over + common, label)
        if EPOCHS_AXIS in values:  # train.tokens = epochs x the unique subset (spec.py)
            axis_over += epochs_overrides(base, values[EPOCHS_AXIS], f"{spec.path}: run {label}")
            base = _load(spec, axis_over + common, label)
        fam_over = (
            iso.families[base.objective.name].overrides if iso and base.objective.name in iso.families else []
        )
        if fam_over:
            base = _load(spec, axis_over + common + list(fam_over), label)
            axis_over = axis_over + list(fam_over)
        if iso is None:
            runs.append(_planned(spec, base, list(axis_over), values, None, len(runs), label))
            continue
        budgets, guess = iso.for_family(base.objective.name)
        k_sizes, span = iso.placement(base.objective.name)
        sizes = candidate_sizes(iso, base.objective.name)
        sized = [_with_size(base, s) for s in sizes]
        params = []
        for s, cfg in zip(sizes, sized):
            try:
                validate(cfg)
                params.append(plan_counts(cfg).counts.params_non_embedding)
            except (ConfigError, ValueError) as e:
                raise SweepError(f"{spec.path}: run {label} {size_label(s)}: {e}") from e
        order = sorted(range(len(sizes)), key=lambda i: params[i])
        for budget in budgets:
            chosen = order
            if guess is not None:
                n_guess = nopt_guess(guess, budget)
                picked = place_sizes([params[i] for i in order], n_guess, k_sizes, span)
                chosen = [order[i] for i in picked]
                lo, hi = n_guess * 10**-span, n_guess * 10**span
                got_lo, got_hi = params[chosen[0]], params[chosen[-1]]
                short_small, short_large = got_lo > lo * 10**0.15, got_hi < hi * 10**-0.15
                if short_small or short_large:
                    warnings.append(
                        f"{label} C={budget:.3g}: the candidates span {got_lo:,}..{got_hi:,} params, short of "
                        f"the window {lo:,.0f}..{hi:,.0f} around the guess N_opt={n_guess:,.0f} "
                        f"(add shapes at the {'small' if short_small else 'large'} end)"
                    )
            kept = []
            for i in chosen:
                over = axis_over + _size_overrides(sizes[i]) + [f"train.flops={float(budget)!r}"]
                cfg = _with(sized[i], train={"max_steps": None, "tokens": None, "flops": float(budget)})
                what = f"{label} C={budget:.3g} {size_label(sizes[i])}"
                r = _planned(spec, cfg, over, values, float(budget), len(runs), what)
                if r.steps < iso.min_steps:
                    dropped.append(
                        f"{what}: {r.steps} steps < min_steps={iso.min_steps} (params {r.params_non_embedding:,})"
                    )
                    continue
                tpp = iso.tokens_per_param
                if tpp and not (tpp[0] <= r.tokens_per_param <= tpp[1]):
                    warnings.append(
                        f"{what}: {r.tokens_per_param:.3g} tokens/param is outside the band "
                        f"[{tpp[0]:g}, {tpp[1]:g}] (isoflop.tokens_per_param)"
                    )
                runs.append(r)
                kept.append(r)
            if not kept:
                smallest = min(range(len(sizes)), key=lambda i: params[i])
                pr = plan_counts(sized[smallest])
                need = iso.min_steps * pr.derived.tokens_per_step * pr.counts.flops_per_token
                raise SweepError(
                    f"{spec.path}: isoflop budget C={budget:.3g} is too small for the smallest model "
                    f"({size_label(sizes[smallest], ' ')}, {label}): below isoflop.min_steps={iso.min_steps} "
                    f"optimizer steps; the smallest usable budget is {need:.3g} FLOPs (or lower min_steps / "
                    f"train.global_batch)"
                )
    for r in runs:
        if r.epochs is not None and r.epochs < 1:
            warnings.append(
                f"{r.name}: {r.tokens:,} tokens < its {r.unique_tokens:,} unique tokens ({r.epochs:.2g} epochs): "
                f"part of the subset is never seen"
            )
    seen: dict[str, PlannedRun] = {}
    for r in runs:
        if r.name in seen:
            raise SweepError(
                f"{spec.path}: runs {seen[r.name].overrides} and {r.overrides} have the same name {r.name!r} "
                f"(is train.run_name set in the base config?)"
            )
        seen[r.name] = r
    return Plan(spec=spec, runs=runs, dropped=dropped, warnings=warnings)


def epochs_overrides(cfg: Config, epochs: float, where: str) -> list[str]:
    """``train.tokens = round(epochs x U)`` (U = the unique subset in training tokens) as overrides."""
    unique = subset_tokens(cfg.data.unique_tokens, cfg.model.seq_len, cfg.data.add_bos)
    if not unique:
        raise SweepError(f"{where}: axes.epochs needs data.unique_tokens > 0 (in base.overrides or axes)")
    return ["train.max_steps=null", "train.flops=null", f"train.tokens={round(epochs * unique)}"]


def nopt_guess(g: NoptGuess, budget: float) -> float:
    return g.params * (budget / g.at) ** g.exponent


def _size_overrides(size: Size) -> list[str]:
    depth, width = size
    return [f"model.depth={depth}"] + ([f"model.d_model={width}"] if width is not None else [])


def _with_size(cfg: Config, size: Size) -> Config:
    depth, width = size
    return _with(cfg, model={"depth": depth, **({"d_model": width} if width is not None else {})})


def _planned(spec, cfg, over, values, budget, index, what) -> PlannedRun:
    iso = spec.isoflop
    try:
        validate(cfg)
        p = plan_counts(cfg)
    except (ConfigError, ValueError) as e:
        raise SweepError(f"{spec.path}: run {what}: {e}") from e
    counts, derived = p.counts, p.derived
    if iso and iso.lr_rule == "inv_width":
        lr = inv_width_lr(cfg.optim.lr, iso.lr_ref_width, counts.d_model)
        over = over + [f"optim.lr={lr!r}"]
        cfg = _with(cfg, optim={"lr": lr})
    return PlannedRun(
        index=index,
        name=run_name(cfg),
        cfg=cfg,
        overrides=over,
        values=values,
        budget=budget,
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
        vocab_exact=p.vocab_exact,
        unique_tokens=subset_tokens(cfg.data.unique_tokens, cfg.model.seq_len, cfg.data.add_bos),
    )


def format_plan(plan: Plan) -> str:
    """The plan as a table: name, family, shape, params, C, tokens, tokens/param, steps, lr; then the
    dropped pairs and the warnings (runs outside the tokens/param band, size windows cut short)."""
    spec, iso = plan.spec, plan.spec.isoflop
    lines = [f"sweep {spec.name}: {len(plan.runs)} runs under {spec.runs_dir}"]
    if iso:
        sizes = f"shapes {iso.shapes}" if iso.shapes else f"depths {iso.depths}"
        sizes += " (families without their own)" if any(f.shapes for f in iso.families.values()) else ""
        fams = sorted({r.family for r in plan.runs})
        for fam in fams:
            budgets, guess = iso.for_family(fam)
            k_sizes, span = iso.placement(fam)
            where = (
                f"{k_sizes} sizes per budget over N_opt(C) x 10^[-{span:g}, "
                f"+{span:g}], guess N_opt = {guess.params:.3g} (C / {guess.at:.3g})^{guess.exponent:g}"
                if guess
                else "every size at every budget"
            )
            own = iso.families.get(fam)
            shapes = f"; shapes {own.shapes}" if own and own.shapes else ""
            shapes += f"; overrides {own.overrides}" if own and own.overrides else ""
            lines.append(f"isoFLOP {fam}: budgets {[f'{c:.3g}' for c in budgets]}; {where}{shapes}")
        band = f"; tokens/param band {iso.tokens_per_param}" if iso.tokens_per_param else ""
        lines.append(
            f"candidates: {sizes}; min_steps {iso.min_steps}{band}; global batch fixed per family; "
            f"lr rule: {iso.lr_rule}"
        )
    if plan.runs:
        precisions = sorted({r.cfg.train.precision for r in plan.runs})
        lines.append(f"FLOPs: {plan.runs[0].flop_convention}; params = non-embedding (total in brackets)")
        lines.append(f"precision: {', '.join(precisions)}")
        if not all(r.vocab_exact for r in plan.runs):
            lines.append(
                "vocabulary: data not prepared: counts use the vocabulary its tokenizer recipe gives "
                "(mdm.sweep.counts.expected_vocab); mdm train counts on the prepared data"
            )
    unique = any(r.unique_tokens for r in plan.runs)  # data-constrained: U and epochs columns
    if unique:
        lines.append("unique data: U = data.unique_tokens' subset (rows x seq_len); epochs = tokens / U")
    head = (
        f"{'#':>3} {'name':<40} {'family':<7} {'shape':>7} {'params':>22} {'C':>9} {'flops':>9} "
        f"{'tokens':>11} {'tok/param':>9} {'steps':>6} {'lr':>8}"
    ) + (f" {'U':>11} {'epochs':>7}" if unique else "")
    lines += [head, "-" * len(head)]
    for r in plan.runs:
        params = f"{r.params_non_embedding:,} [{r.params_total:,}]"
        c = f"{r.budget:.3g}" if r.budget is not None else "-"
        shape = f"{r.depth}x{r.d_model}"
        lines.append(
            f"{r.index:>3} {r.name:<40} {r.family:<7} {shape:>7} {params:>22} {c:>9} {r.flops:>9.3g} "
            f"{r.tokens:>11,} {r.tokens_per_param:>9.2f} {r.steps:>6} {r.lr:>8.2g}"
            + (
                f" {f'{r.unique_tokens:,}' if r.epochs else '-':>11} {f'{r.epochs:.3g}' if r.epochs else '-':>7}"
                if unique
                else ""
            )
        )
    if plan.runs:
        flops = sum(r.flops for r in plan.runs)
        lines.append(
            f"total: {len(plan.runs)} runs, {flops:.3g} training FLOPs, {sum(r.steps for r in plan.runs):,} steps"
        )
    if plan.dropped:
        lines.append(f"dropped ({len(plan.dropped)}, below min_steps):")
        lines += [f"  {d}" for d in plan.dropped]
    if plan.warnings:
        lines.append(f"WARNING ({len(plan.warnings)}):")
        lines += [f"  {w}" for w in plan.warnings]
    return "\n".join(lines)
