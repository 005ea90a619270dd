"""The ``mdm export`` folder format: its file names and version, :class:`ExportError`, and reading a folder's
parts (config, weights, tokenizer) without building anything.

Below both the writer (mdm/export.py, :func:`mdm.export.export_run`) and the run loader (mdm/loading.py,
whose :func:`mdm.loading.load_pretrained` rebuilds the objective and network from these parts), so that
the writer depends on the loader and the loader never on the writer. Imports neither torch nor Lightning
at module level (safetensors and the tokenizer are read on demand).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FORMAT = "mdm-export"
FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
TOKENIZER_FILE = "tokenizer.json"
META_FILE = "meta.json"
CARD_FILE = "README.md"


class ExportError(ValueError):
    """A folder that is not an mdm export, or a run that cannot be exported."""


def is_export(path: str | Path) -> bool:
    p = Path(path)
    return p.is_dir() and (p / CONFIG_FILE).is_file() and (p / WEIGHTS_FILE).is_file()


def read_json(path: Path) -> dict | None:
    """A JSON file's contents, or None when it is missing or not JSON."""
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def read_config(path: str | Path) -> dict[str, Any]:
    """The export folder's ``config.json`` (format and version checked); ExportError naming what is wrong."""
    p = Path(path)
    if not is_export(p):
        raise ExportError(f"{p} is not an mdm export folder (needs {CONFIG_FILE} and {WEIGHTS_FILE})")
    config = read_json(p / CONFIG_FILE)
    if not config or config.get("format") != FORMAT:
        raise ExportError(f"{p / CONFIG_FILE} is not an mdm export config (format != {FORMAT!r})")
    if int(config.get("format_version", 0)) > FORMAT_VERSION:
        raise ExportError(
            f"{p / CONFIG_FILE} format_version={config['format_version']} is newer than this mdm"
        )
    return config


def read_weights(path: str | Path, config: dict[str, Any]) -> dict[str, Any]:
    """The network's state dict from ``model.safetensors``, tied weights (``config['tied']``) re-tied."""
    from safetensors.torch import load_file

    state = load_file(str(Path(path) / WEIGHTS_FILE))
    for alias, name in (config.get("tied") or {}).items():
        state[alias] = state[name]
    return state


def read_tokenizer(path: str | Path, config: dict[str, Any]):
    """The folder's own tokenizer, or None when it was exported without one."""
    p = Path(path)
    if config.get("tokenizer") and (p / META_FILE).is_file():
        from mdm.data.tokenizer import load_tokenizer

        return load_tokenizer(p)
    return None
