"""Export a trained run to a self-contained folder (the writer; reading one back without Lightning is
:func:`mdm.loading.load_pretrained`, importable from here too).

``mdm export RUN OUT/`` writes::

    OUT/
      model.safetensors   the network's weights (the EMA weights by default; ``--raw`` for the trained ones)
      config.json         format, the resolved mdm config (backbone, objective, schedule, ...), vocabulary
                          layout (size, mask_id = number of real tokens, bos/eos/pad ids), tied-weight aliases
      tokenizer.json      the run's tokenizer (when it has a text tokenizer), as the data pipeline saved it
      meta.json           the vocabulary layout of the prepared data (tokenizer kind, ids, sources and their
                          licences; no shard entries), so the folder is also a ``--tokenizer-dir``
      README.md           model card: objective, size, FLOPs, data and its licence, metrics, how to load

No pickle anywhere: weights are safetensors, everything else JSON or Markdown. Tied weights (the output head
sharing the embedding) are stored once and re-tied on load (``config.json`` ``tied``).

The folder's format (file names, version, :class:`ExportError`, reading its parts) is mdm/export_folder.py,
below both this module and mdm/loading.py: the writer depends on the loader, never the other way round.
``load_pretrained(OUT)`` rebuilds objective and network from ``config.json`` and loads the weights; the
logits equal those of ``mdm.loading.load_run(RUN)`` (EMA) exactly (tests/test_export.py). ``load_run`` accepts
an exported folder too, so ``mdm sample``, ``mdm eval`` and the lm-eval adapter take one wherever they take a
run.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import math
from pathlib import Path
from typing import Any

import torch

from mdm.export_folder import (
    CARD_FILE,
    CONFIG_FILE,
    FORMAT,
    FORMAT_VERSION,
    META_FILE,
    TOKENIZER_FILE,
    WEIGHTS_FILE,
    ExportError,
    is_export,
    read_json,
)
from mdm.loading import load_pretrained, load_run

# the folder's format (mdm/export_folder.py) and reader (mdm.loading.load_pretrained) are importable from here
__all__ = [
    "CARD_FILE",
    "CONFIG_FILE",
    "FORMAT",
    "FORMAT_VERSION",
    "META_FILE",
    "TOKENIZER_FILE",
    "WEIGHTS_FILE",
    "ExportError",
    "export_run",
    "is_export",
    "load_pretrained",
    "model_card",
]


def _unique_state(model: torch.nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """state_dict with shared tensors stored once: (tensors, {alias: stored name})."""
    out, tied, seen = {}, {}, {}
    for name, t in model.state_dict().items():
        key = (t.data_ptr(), t.dtype, tuple(t.shape), t.device)
        if t.numel() and key in seen:
            tied[name] = seen[key]
            continue
        seen[key] = name
        out[name] = t.detach().cpu().contiguous().clone()
    return out, tied


def export_run(run: str | Path, out: str | Path, ema: bool = True, force: bool = False) -> Path:
    """Write the export folder of ``run`` (a run dir or a checkpoint) to ``out`` (module docstring)."""
    from safetensors.torch import save_file

    from mdm.io import atomic_write_json, atomic_write_text

    out = Path(out)
    if out.exists() and any(out.iterdir()) and not force:
        raise ExportError(f"{out} exists and is not empty (pass --force to overwrite)")
    loaded = load_run(run, "cpu", ema=ema)
    if loaded.export_dir is not None:
        raise ExportError(f"{run} is already an exported folder")
    out.mkdir(parents=True, exist_ok=True)
    tensors, tied = _unique_state(loaded.model)
    tmp = out / f".{WEIGHTS_FILE}.tmp"
    save_file(tensors, str(tmp), metadata={"format": FORMAT, "weights": "ema" if ema else "raw"})
    tmp.replace(out / WEIGHTS_FILE)

    from mdm.config import to_dict

    meta = _data_meta(loaded.cfg)
    has_tok = False
    if meta is not None and meta.get("tokenizer_file"):
        src = Path(meta["_dir"]) / meta["tokenizer_file"]
        if src.is_file():
            atomic_write_text(out / TOKENIZER_FILE, src.read_text())
            has_tok = True
    run_dir = loaded.run_dir
    summary = read_json(run_dir / "summary.json") if run_dir else None
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "objective": loaded.cfg.objective.name,
        "weights": "ema" if ema else "raw",
        "step": loaded.step,
        "source_run": str(run_dir or loaded.checkpoint),
        "vocab": dataclasses.asdict(loaded.vocab),
        "tokenizer": TOKENIZER_FILE if has_tok else None,
        "tied": tied,
        "config": to_dict(loaded.cfg),
        "exported": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    atomic_write_json(out / CONFIG_FILE, config)
    if meta is not None:
        layout = {k: v for k, v in meta.items() if not k.startswith("_")}
        layout["splits"] = {}
        layout.pop("tokens_per_split", None)
        layout.pop("n_documents", None)
        if not has_tok:
            layout["tokenizer_file"] = None
        else:
            layout["tokenizer_file"] = TOKENIZER_FILE
        atomic_write_json(out / META_FILE, layout)
    zero_shot = read_json(run_dir / "eval" / "zero_shot.json") if run_dir else None
    atomic_write_text(out / CARD_FILE, model_card(loaded, config, summary, meta, zero_shot))
    return out


def _data_meta(cfg) -> dict | None:
    """The run's prepared-data meta.json as a dict (with its folder under ``_dir``), or None."""
    try:
        from mdm.data.datamodule import resolve_data_dir

        d = resolve_data_dir(cfg.data)
    except Exception:
        return None
    raw = read_json(Path(d) / META_FILE)
    if raw is None:
        return None
    raw["_dir"] = str(d)
    return raw


def _fmt(v: Any, spec: str = ".4g") -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and math.isnan(v):
        return "nan"
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return format(v, spec)
    return str(v)


def model_card(loaded, config: dict, summary: dict | None, meta: dict | None, zero_shot: dict | None) -> str:
    """README.md of an export: what the model is, how big, trained on what (and its licence), how good."""
    cfg = loaded.cfg
    s = summary or {}
    n_params = sum(p.numel() for p in loaded.model.parameters())
    lines = [
        f"# {Path(str(config['source_run'])).name} ({config['objective']})",
        "",
        f"An `mdm` {config['objective']} model exported from `{config['source_run']}` at step {config['step']} "
        f"({config['weights']} weights). Load it with `mdm.load_pretrained(FOLDER)` or pass the folder to "
        "`mdm sample`, `mdm eval` and the lm-eval adapter (`pretrained=FOLDER`).",
        "",
        "## Model",
        "",
        "| field | value |",
        "|---|---|",
        f"| objective | {cfg.objective.name} |",
        f"| backbone | depth {cfg.model.depth}, context {cfg.model.seq_len}, "
        f"{'causal' if loaded.model.causal else 'bidirectional'}, "
        f"time-conditioned {bool(getattr(loaded.model, 'time_conditioning', False))} |",
        f"| parameters (total, in this file) | {n_params:,} |",
        f"| parameters (non-embedding, run summary) | {_fmt(s.get('params_non_embedding'), ',')} |",
        f"| FLOPs per token (run summary) | {_fmt(s.get('flops_per_token'), '.4g')} |",
        f"| training tokens | {_fmt(s.get('tokens'), ',')} |",
        f"| training FLOPs | {_fmt(s.get('flops'), '.4g')} |",
        f"| vocabulary | size {loaded.vocab.size}, mask id {loaded.vocab.mask_id} (= real tokens), "
        f"BOS {loaded.vocab.bos_id}, EOS {loaded.vocab.eos_id}, pad {loaded.vocab.pad_id} |",
        f"| tokenizer | {(meta or {}).get('tokenizer', cfg.data.tokenizer)}"
        f"{' (tokenizer.json)' if config['tokenizer'] else ' (none: token ids only)'} |",
        "",
        "## Metrics",
        "",
        f"- validation loss: {_fmt(s.get('val_loss'))} nats/token"
        f" (a bound for diffusion models); perplexity bound {_fmt(s.get('val_ppl_bound'))}",
        f"- run status: {s.get('status', '-')}, wall time {_fmt(s.get('wall_s'), '.1f')} s, git {s.get('git_sha', '-')}",
    ]
    results = (zero_shot or {}).get("results") or {}
    if results:
        lines += [
            "",
            "Zero-shot (`mdm eval`; ± one standard error):",
            "",
            "| benchmark | split | protocol | nats/token | PPL bound | tokens |",
            "|---|---|---|---:|---:|---:|",
        ]
        for name, r in results.items():
            lines.append(
                f"| {name} | {r.get('split', '-')} | {r.get('protocol', '-')} | "
                f"{_fmt(r.get('nats_per_token'))} ± {_fmt(r.get('se'))} | {_fmt(r.get('ppl_bound'))} | "
                f"{_fmt(r.get('tokens_scored'))} |"
            )
    lines += ["", "## Data", ""]
    sources = (meta or {}).get("sources") or []
    lines.append(f"Corpus `{cfg.data.name}` (tokenizer `{cfg.data.tokenizer}`).")
    if sources:
        lines += ["", "| source | version | licence |", "|---|---|---|"]
        for src in sources:
            lines.append(
                f"| {src.get('name', '-')} | {src.get('version', '-')} | "
                f"{src.get('licence', src.get('license', 'unknown'))} |"
            )
    else:
        lines.append(
            "No source records (synthetic or unprepared data): licence unknown unless stated by the data."
        )
    lines += [
        "",
        "## Files",
        "",
        "`model.safetensors` (weights), `config.json` (config, vocabulary layout), "
        + ("`tokenizer.json`, " if config["tokenizer"] else "")
        + "`meta.json` (vocabulary layout of the data), this card. No pickle.",
        "",
    ]
    return "\n".join(lines)
