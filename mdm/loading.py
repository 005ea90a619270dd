"""Load a trained run (a run directory, a checkpoint file, or an ``mdm export`` folder) for sampling and
evaluation, and build objectives that are built on trained runs.

The model comes back with its EMA weights (what validation used) in eval mode. Checkpoints are read
with ``torch.load(weights_only=True)``: no arbitrary pickles are executed.

Layering (CONTRIBUTING.md): this module sits above ``mdm.diffusion`` and below ``mdm.train`` /
``mdm.module``; it imports neither of those (nor Lightning). An export folder is read through
mdm/export_folder.py (its format); the writer, mdm/export.py, sits above this module. Objectives built on a trained run (EDLM-NCE's
base run, CCDD's encoder run) never load it themselves: :func:`build_objective` hands them what they
are built on (:func:`load_run`; CCDD's encoder source, mdm/ccdd_encoder.py), and the objective checks
what it gets.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from mdm import diffusion
from mdm.config import Config, from_dict
from mdm.diffusion import OBJECTIVES, Objective
from mdm.diffusion.registry import lookup
from mdm.errors import UserError
from mdm.export_folder import WEIGHTS_FILE, is_export, read_config, read_tokenizer, read_weights
from mdm.models.backbone import Transformer
from mdm.vocab import Vocab


class CheckpointError(UserError):
    pass


@dataclass
class LoadedRun:
    cfg: Config
    vocab: Vocab
    objective: Objective
    model: Transformer
    run_dir: Path | None
    checkpoint: Path
    step: int
    tokenizer: object | None = None  # an exported folder's own tokenizer (mdm/export_folder.py)
    export_dir: Path | None = None  # set when loaded from an `mdm export` folder


def load_checkpoint_safely(path: Path) -> dict:
    """Load a checkpoint with ``weights_only=True``; a corrupt or truncated file raises CheckpointError naming it."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, bad pickle, disallowed global
        first = (str(e).strip().splitlines() or [""])[0][:200]
        raise CheckpointError(
            f"checkpoint {path} is corrupt or truncated ({type(e).__name__}: {first})"
        ) from e


def _encoder_source():
    from mdm.ccdd_encoder import EncoderSource

    return EncoderSource(load_run)


#: what an objective built on trained runs is handed (``Objective.frozen_parts``), by keyword: a fresh
#: part per objective built
PARTS = {"load_run": lambda: load_run, "ccdd_encoder": _encoder_source}


def build_objective(cfg: Config, vocab: Vocab) -> Objective:
    """The objective ``cfg.objective.name``, handed the parts it is built on (``frozen_parts``: the run
    loader :func:`load_run`, CCDD's :class:`mdm.ccdd_encoder.EncoderSource`); the build step ``mdm
    train``, ``mdm eval`` and ``mdm sample`` share."""
    cls = lookup(OBJECTIVES, "objective", cfg.objective.name)
    unknown = [k for k in cls.frozen_parts if k not in PARTS]
    if unknown:
        raise TypeError(
            f"objective {cls.registry_name!r} is built on {unknown}, which mdm.loading.PARTS does not provide "
            f"(it provides: {', '.join(PARTS)})"
        )
    return diffusion.build_objective(cfg, vocab, **{k: PARTS[k]() for k in cls.frozen_parts})


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
    """A run directory, a checkpoint file, or an ``mdm export`` folder (:func:`load_pretrained`)."""
    if is_export(path):
        return load_pretrained(path, device)
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


def load_pretrained(path: str | Path, device: str | torch.device = "cpu") -> LoadedRun:
    """Rebuild an exported model without Lightning: a :class:`LoadedRun` (``export_dir`` set, ``tokenizer``
    loaded when the folder has one); the folder is read by mdm/export_folder.py, written by mdm/export.py."""
    p = Path(path)
    config = read_config(p)
    cfg = from_dict(config["config"])
    vocab = Vocab(**config["vocab"])
    objective = build_objective(cfg, vocab)
    model = objective.build_model(cfg, vocab)
    model.load_state_dict(read_weights(p, config))
    model.to(device).eval()
    tok = read_tokenizer(p, config)
    return LoadedRun(
        cfg,
        vocab,
        objective,
        model,
        p,
        p / WEIGHTS_FILE,
        int(config.get("step", 0)),
        tokenizer=tok,
        export_dir=p,
    )


# ---------------------------------------------------------------------------------------------------
# EDLM's energies from trained runs (the checks are the objective's: mdm/diffusion/edlm.py)
# ---------------------------------------------------------------------------------------------------
def load_base_run(path: str | Path, device: str | torch.device = "cpu", key: str = "objective.edlm.base_run"):
    """Load a base run (EMA weights, frozen); it must be a masked diffusion model (mdlm | radd)."""
    from mdm.diffusion.edlm import check_base_run

    return check_base_run(load_run(path, device), path, key)


def load_ar_run(
    path: str | Path,
    base_cfg: Config,
    base_vocab: Vocab,
    base_desc: str = "the base run",
    device: str | torch.device = "cpu",
    key: str = "objective.edlm.ar_run",
):
    """Load the AR model of the AR energy; it must be an ``ar`` run with the base run's tokenizer."""
    from mdm.diffusion.edlm import check_ar_run

    return check_ar_run(load_run(path, device), path, base_cfg, base_vocab, base_desc, key)


def energy_from(objective: Objective, model, ar_run: str | Path | None = None, device=None):
    """The EDLM energy for an already loaded run: an ``edlm_nce`` run gives its NCE energy; a base run
    (mdlm | radd) plus ``ar_run`` gives the AR energy; anything else is a clear error."""
    from mdm.config import ConfigError
    from mdm.diffusion.edlm import BASE_OBJECTIVES, ArEnergy, edlm_source, freeze

    source = edlm_source(objective)
    if source == "nce":
        if ar_run is not None:
            raise ConfigError("ar_run was given for an edlm_nce run: its energy is the trained network")
        return objective.energy(model)
    name = getattr(objective, "registry_name", "?")
    if source == "base":
        if ar_run is None:
            raise ConfigError(
                f"EDLM over a {name} run needs an energy: pass ar_run=<AR run> (AR energy) or sample an edlm_nce run"
            )
        dev = device or next(model.parameters()).device
        freeze(model)
        ar = load_ar_run(ar_run, objective.cfg, objective.vocab, f"the base ({name}) run", dev, key="ar_run")
        return ArEnergy(objective, model, ar.objective, ar.model)
    raise ConfigError(
        f"EDLM needs an edlm_nce run, or a masked diffusion run ({' or '.join(BASE_OBJECTIVES)}) with ar_run; "
        f"got a run of objective {name!r}"
    )


def load_energy(
    source: str | Path | Config, ar_run: str | Path | None = None, device: str | torch.device = "cpu"
):
    """Build an EDLM energy (with its base model) from

    * a run directory / checkpoint of an ``edlm_nce`` run -> its NCE energy;
    * a run directory / checkpoint of a base run (mdlm | radd) and ``ar_run`` -> the AR energy;
    * a Config (e.g. ``configs/edlm_ar.yaml`` + overrides): ``edlm_ar`` reads objective.edlm.base_run and
      .ar_run (``ar_run`` overrides the latter); ``edlm_nce`` loads the trained run the config names.
    """
    from mdm.config import ConfigError
    from mdm.diffusion.edlm import ArEnergy, check_edlm_config

    if isinstance(source, Config):
        name, e = source.objective.name, source.objective.edlm
        if name == "edlm_ar":
            ar_path = ar_run or e.ar_run
            if not e.base_run or not ar_path:
                raise ConfigError("objective edlm_ar needs objective.edlm.base_run and objective.edlm.ar_run")
            check_edlm_config(e)
            base = load_base_run(e.base_run, device)
            ar = load_ar_run(ar_path, base.cfg, base.vocab, f"the base run {e.base_run}", device)
            return ArEnergy(base.objective, base.model, ar.objective, ar.model)
        if name == "edlm_nce":
            from mdm.rundir import RunDir

            source = RunDir.for_config(source).path
        else:
            raise ConfigError(f"objective.name={name!r} is not an EDLM objective (edlm_nce | edlm_ar)")
    run = load_run(source, device)
    return energy_from(run.objective, run.model, ar_run, device)
