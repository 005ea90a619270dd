"""The one typed config tree.

Dataclasses are the schema; YAML files in ``configs/`` are deltas over these defaults; CLI
``key=value`` overrides come last. Everything is loaded in OmegaConf struct mode, so an unknown key or a
value of the wrong type fails at start-up naming the key. Names that select an implementation
(objective, schedule, data source, ...) are checked against their registries in :func:`validate`.

Derived values (per-device batch, gradient accumulation, steps from a token or FLOP budget, warmup,
width and heads from depth) are computed in :mod:`mdm.derived`, never interpolated in YAML.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from mdm import options


class ConfigError(ValueError):
    """A config problem, with a message naming the key and, where it applies, the valid choices."""


@dataclass
class ModelConfig:
    """The shared transformer backbone. One size dial: ``depth``.

    Width rule: ``d_model = aspect_ratio * depth`` (64 per layer by default), rounded up to a multiple of
    ``head_dim``; heads = ``d_model // head_dim``. ``d_model``/``n_heads`` override the rule.
    """

    depth: int = 4
    d_model: int | None = None  # None -> aspect_ratio * depth
    n_heads: int | None = None  # None -> d_model // head_dim
    aspect_ratio: int = 64
    head_dim: int = 64
    mlp_ratio: int = 4
    seq_len: int = 128  # context length in tokens
    cond_dim: int = 128  # width of the time embedding feeding adaLN
    time_conditioning: bool | None = None  # None -> the objective decides
    tie_embeddings: bool = False
    dropout: float = 0.0
    attn_backend: str = "auto"  # auto | sdpa | flash
    activation: str = "gelu"  # MLP: gelu (exact erf; 2.7x faster than tanh on CPU) | gelu_tanh
    norm_eps: float = 1e-5
    rope_base: float = 10000.0
    init_std: float = 0.02


@dataclass
class ScheduleConfig:
    """Noise schedule (docs/MATH.md, "Schedules")."""

    name: str = "loglinear"  # loglinear | geometric
    eps: float = 1e-3  # log-linear: alpha_1 = eps
    sigma_min: float = 1e-4  # geometric
    sigma_max: float = 20.0  # geometric


@dataclass
class ObjectiveBase:
    """Which training objective, and what every objective reads (docs/MATH.md).

    Each objective's own options are declared in its own file (``mdm/diffusion/<objective>_options.py``,
    :mod:`mdm.options`) and join this section in ``ObjectiveConfig``: ``objective.loss`` and
    ``objective.graph`` (RADD, SEDD), ``objective.edlm.*`` (EDLM), ``objective.ccdd.*`` (CCDD), ...
    """

    name: str = "mdlm"  # a registered objective: mdlm | ar | radd | sedd | edlm_nce | edlm_ar | ccdd
    t_min: float = 1e-3  # lower end of the sampled time interval
    antithetic: bool = True  # stratified times across the global batch


_OBJECTIVE_CLASSES: dict[tuple, type] = {}


def objective_config_class() -> type:
    """``ObjectiveConfig``: :class:`ObjectiveBase` with the options every declared objective owns (the flat
    keys first, then one field per section, by key); one class per set of declared sections."""
    secs = sorted(options.sections(), key=lambda s: (s.key is not None, s.key or "", s.owner))
    ident = tuple((s.owner, s.key, s.cls) for s in secs)
    if ident not in _OBJECTIVE_CLASSES:
        flat: dict[str, dataclasses.Field] = {}
        for s in (s for s in secs if s.key is None):
            for f in dataclasses.fields(s.cls):
                if f.name in flat and flat[f.name].default != f.default:
                    raise ValueError(
                        f"objective.{f.name}: default {f.default!r} ({s.owner}) differs from "
                        f"{flat[f.name].default!r} declared by another objective"
                    )
                flat.setdefault(f.name, f)
        spec: list[tuple] = [
            (name, flat[name].type, field(default=flat[name].default))
            for name in options.FLAT_KEYS
            if name in flat
        ]
        spec += [(s.key, s.cls, field(default_factory=s.cls)) for s in secs if s.key is not None]
        cls = dataclasses.make_dataclass(
            "ObjectiveConfig", spec, bases=(ObjectiveBase,), namespace={"__module__": __name__}
        )
        cls.__doc__ = ObjectiveBase.__doc__
        _OBJECTIVE_CLASSES[ident] = cls
    return _OBJECTIVE_CLASSES[ident]


def __getattr__(name: str) -> Any:
    if name == "ObjectiveConfig":  # composed from the declared options (objective_config_class)
        return objective_config_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass
class SyntheticConfig:
    """The synthetic source: a seeded random order-k Markov chain with an exactly computable entropy rate."""

    vocab: int = 16
    order: int = 1
    concentration: float = 0.3  # Dirichlet concentration of each transition row (smaller = lower entropy)
    num_tokens: int = 2_000_000  # training split length (one stationary chain)
    eval_tokens: int = 100_000  # validation and test split lengths (independent chains)
    seed: int = 0


@dataclass
class PrepareConfig:
    """How ``mdm data prepare`` works; none of it changes the token stream (runs are not renamed by it)."""

    num_proc: int = 1  # tokenizer worker processes; 1 = in the main process (tokenizers' own threads)
    streaming: bool = False  # HF sources: datasets.load_dataset(..., streaming=True) (no Arrow cache)
    revision: str | None = None  # HF sources: the dataset revision (a commit sha pins it) for load_dataset
    shard_tokens: int = 1 << 28  # a split longer than this is written as several <split>-NNNNN.bin shards
    batch_chars: int = 1 << 20  # characters per tokenizer batch (the unit of work and of memory)
    batch_docs: int = 1024  # at most this many documents per tokenizer batch
    tokenizer_from: str | None = None  # a prepared data dir whose tokenizer to reuse (bpe/char mixtures)


@dataclass
class MixtureSource:
    """One source of a mixture: a data.name (and path/dir) and its sampling weight."""

    name: str = "books"
    weight: float = 1.0
    path: str | None = None
    dir: str | None = None


@dataclass
class DataConfig:
    """Where tokens come from. ``name`` selects a source recipe (see mdm/data)."""

    name: str = "books"
    dir: str | None = None  # None -> $MDM_DATA_DIR/<name>-<tokenizer> or data/cache/<...>
    tokenizer: str = "bpe"  # bpe (trained on the corpus) | gpt2 | bert | char
    vocab_size: int = 4096  # size of the trained BPE
    path: str | None = None  # for name=files: a directory or glob of .txt/.jsonl/.parquet
    wrap: bool = True  # True: join documents with EOS and cut into blocks; False: one padded doc per row
    add_bos: bool = False  # prepend BOS / append EOS to each block
    dtype: str = "auto"  # shard dtype: auto (uint16 when the vocabulary fits) | uint16 | uint32
    on_bad_file: str = "skip"  # empty / non-UTF-8 input file: skip (warn, naming it) | error
    books_sources: str = "auto"  # books: auto (Debian packages when apt can fetch them) | pypi | all
    # Data-constrained training: the training split's first ceil(U / block) blocks in stored order, cycled
    # in a fresh seeded order per epoch (mdm/data/unique.py); 0 = the whole split. Validation: unchanged.
    unique_tokens: int = 0
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    prepare: PrepareConfig = field(default_factory=PrepareConfig)
    # Several sources sampled by weight (the other data fields apply to each); empty = just data.name.
    mixture: list[MixtureSource] = field(default_factory=list)


@dataclass
class OptimConfig:
    """AdamW with warmup and a decay schedule. No weight decay on norms, biases and embeddings."""

    lr: float = 3e-3
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-8
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    schedule: str = "cosine"  # cosine | wsd | constant
    warmup_steps: int | None = None  # None -> warmup_frac * max_steps
    warmup_frac: float = 0.05
    min_lr_ratio: float = 0.1
    decay_frac: float = 0.2  # wsd: fraction of steps spent decaying
    ema: float = 0.999  # 0 disables EMA


@dataclass
class TrainConfig:
    """Batch, budget and run bookkeeping. Exactly one of max_steps / tokens / flops sets the length."""

    global_batch: int = 32  # sequences per optimizer step, all devices together
    micro_batch: int | None = None  # per-device sequences per forward; None -> global_batch // devices
    max_steps: int | None = 200
    tokens: int | None = None  # token budget -> steps
    flops: float | None = None  # FLOP budget -> steps (6N+attn convention, see mdm/flops.py)
    seed: int = 0
    precision: str = "auto"  # auto | 32-true | bf16-mixed | bf16-true | 16-mixed
    accelerator: str = "auto"
    devices: int = 1
    num_nodes: int = 1
    strategy: str = "auto"  # auto | ddp | fsdp
    ckpt_every: int = 100
    keep_periodic: bool = True
    val_every: int = 100
    val_batches: int = 8
    log_every: int = 1
    runs_dir: str = "runs"
    run_name: str | None = None  # None -> derived from the config
    compile: bool = False  # torch.compile the network (inductor; CPU needs a C compiler)
    activation_checkpointing: bool = False  # recompute each block's activations in backward (less memory)
    threads: int | None = None  # torch CPU threads; None -> torch default
    preempt_grace_s: float = 300.0  # a signal waits this long for the step in progress (then exit 75)
    force_limits: bool = False  # skip the start-up memory / step-time / table-size checks (mdm/limits.py)


@dataclass
class EvalConfig:
    """Likelihood-bound evaluation."""

    time_samples: int = 1  # Monte Carlo time samples per sequence
    seed: int = 1234
    batch_size: int = 16
    protocol: str = "mdlm"  # mdlm | sedd


@dataclass
class LoggingConfig:
    wandb: bool = False  # offline mode only unless WANDB_MODE says otherwise
    wandb_project: str = "mdm"
    progress_bar: bool = True


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    objective: ObjectiveBase = field(default_factory=lambda: objective_config_class()())
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)


# Registries of names. Objectives/schedules register themselves; the others are closed sets here.
CHOICES: dict[str, tuple[str, ...]] = {
    "model.attn_backend": ("auto", "sdpa", "flash"),
    "model.activation": ("gelu", "gelu_tanh"),
    "data.tokenizer": ("bpe", "gpt2", "bert", "char"),
    "optim.schedule": ("cosine", "wsd", "constant"),
    "train.precision": ("auto", "32-true", "bf16-mixed", "bf16-true", "16-mixed"),
    "train.strategy": ("auto", "ddp", "fsdp"),
    "eval.protocol": ("mdlm", "sedd"),
}


def declared_names() -> dict[str, tuple[str, ...]]:
    """The names ``mdm/diffusion/*.py`` register (``@register_objective("x")``, ``@register_schedule("x")``),
    read from the files: what the registries hold once ``mdm.diffusion`` is imported (tests/test_layering.py
    checks it), known without importing it (and torch)."""
    import re

    text = "".join(f.read_text() for f in sorted((Path(__file__).parent / "diffusion").glob("*.py")))
    return {
        kind: tuple(sorted(set(re.findall(rf'^@register_{kind}\(\s*"([^"]+)"', text, re.M))))
        for kind in ("objective", "schedule")
    }


def _registry_choices() -> dict[str, tuple[str, ...]]:
    """Choices that come from registries filled by importing the implementations (the names the package
    declares while it is not imported: loading a config does not import torch)."""
    import sys

    out = dict(CHOICES)
    if "mdm.diffusion.registry" in sys.modules:  # filled, runtime registrations (a test's objective) too
        from mdm.diffusion import registry

        out["objective.name"] = tuple(sorted(registry.OBJECTIVES))
        out["schedule.name"] = tuple(sorted(registry.SCHEDULES))
    else:
        names = declared_names()
        out["objective.name"], out["schedule.name"] = names["objective"], names["schedule"]
    try:
        from mdm.data.sources import SOURCES

        out["data.name"] = tuple(sorted(SOURCES))
    except ImportError:  # data package not installed yet
        pass
    return out


def _get(cfg: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        cfg = getattr(cfg, part)
    return cfg


def validate(cfg: Config) -> None:
    """Check every registry name and simple ranges; raise ConfigError naming the key."""
    for key, valid in _registry_choices().items():
        value = _get(cfg, key)
        if value not in valid:
            raise ConfigError(f"{key}={value!r} is not valid; choose one of: {', '.join(valid)}")
    budgets = [k for k in ("max_steps", "tokens", "flops") if getattr(cfg.train, k) is not None]
    if len(budgets) != 1:
        raise ConfigError(
            f"set exactly one of train.max_steps, train.tokens, train.flops (got {budgets or 'none'})"
        )
    positive = ["model.depth", "model.seq_len", "train.global_batch", "eval.time_samples"]
    for key in positive:
        if _get(cfg, key) <= 0:
            raise ConfigError(f"{key} must be positive, got {_get(cfg, key)}")
    if cfg.data.unique_tokens < 0:
        raise ConfigError(
            f"data.unique_tokens must be >= 0 (0 = the whole split), got {cfg.data.unique_tokens}"
        )
    if cfg.data.unique_tokens and cfg.data.mixture:
        raise ConfigError("data.unique_tokens is not supported with data.mixture (set it to 0)")
    bad = options.invalid_choice(cfg.objective, cfg.objective.name)  # the trained objective's own options
    if bad:
        raise ConfigError(bad)
    if not 0.0 <= cfg.objective.t_min < 1.0:
        raise ConfigError(f"objective.t_min must be in [0, 1), got {cfg.objective.t_min}")


def _schema() -> DictConfig:
    schema = OmegaConf.structured(Config)
    OmegaConf.set_struct(schema, True)
    return schema


def load(files: list[str | Path] | tuple = (), overrides: list[str] | tuple = ()) -> Config:
    """Load defaults <- each YAML file in order <- CLI ``key=value`` overrides; validate; return a Config.

    Errors (unknown key, wrong type, unknown registry name, unreadable file) raise ConfigError with the
    offending key or file in the message.
    """
    merged = _schema()
    for f in files:
        path = Path(f)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            delta = OmegaConf.load(path)
        except Exception as e:  # yaml syntax
            raise ConfigError(f"cannot parse config file {path}: {e}") from e
        merged = _merge(merged, delta, source=str(path))
    deltas = []
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        deltas.append((OmegaConf.from_dotlist([item]), f"override {item!r}"))
    try:  # one merge of all overrides (= merging them one by one, with one copy of the tree, not one each)
        merged = OmegaConf.merge(merged, *[d for d, _ in deltas]) if deltas else merged
    except OmegaConfBaseException:
        for delta, source in deltas:  # again one by one, for the message naming the bad override
            merged = _merge(merged, delta, source=source)
        raise
    cfg: Config = OmegaConf.to_object(merged)  # type: ignore[assignment]
    validate(cfg)
    return cfg


def _merge(base: DictConfig, delta: DictConfig, source: str) -> DictConfig:
    try:
        return OmegaConf.merge(base, delta)  # type: ignore[return-value]
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None) or "?"
        msg = str(e).splitlines()[0]
        raise ConfigError(f"{source}: bad key {key!r}: {msg}") from e


def to_dict(cfg: Config) -> dict[str, Any]:
    """Plain nested dict (for YAML dumps, checkpoints and hashing): what
    ``OmegaConf.to_container(OmegaConf.structured(cfg))`` gives (an int in a float field as a float), read
    off the dataclasses directly, ~100x faster (the sweep planner names every run)."""
    return _plain(cfg)


def _plain(obj: Any, kind: str = "") -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: _plain(getattr(obj, f.name), str(f.type)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        inner = kind[kind.find("[") + 1 : -1] if "[" in kind else ""
        return type(obj)(_plain(v, inner) for v in obj)
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, int) and not isinstance(obj, bool) and "float" in kind and "int" not in kind:
        return float(obj)  # OmegaConf's FloatNode
    return obj


def to_yaml(cfg: Config) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def from_dict(d: dict[str, Any]) -> Config:
    """Rebuild a Config from :func:`to_dict` output (e.g. a run's config.yaml), strictly."""
    merged = _merge(_schema(), OmegaConf.create(d), source="saved config")
    return OmegaConf.to_object(merged)  # type: ignore[return-value]


def replace(cfg: Config, **sections: Any) -> Config:
    """Shallow functional update of top-level sections (``replace(cfg, train=...)``)."""
    return dataclasses.replace(cfg, **sections)
