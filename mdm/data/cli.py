"""``mdm data prepare NAME [CONFIG.yaml ...] [key=value ...]`` and ``mdm data info NAME ...``.

Overrides may name data fields with or without the ``data.`` prefix (``tokenizer=gpt2``,
``data.vocab_size=8192``, ``synthetic.order=2``); other keys (``train.seed=1``) pass through unchanged.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import fields

from mdm.config import DataConfig


def add_parser(sub) -> None:
    p = sub.add_parser("data", help="prepare and inspect tokenized data")
    dsub = p.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    for action, help_ in [
        ("prepare", "tokenize a source into shards + meta.json (a no-op when already prepared)"),
        ("info", "print the meta.json of a prepared source"),
    ]:
        q = dsub.add_parser(action, help=help_)
        q.add_argument(
            "name",
            help="source name (books, synthetic, openwebtext, wikitext103, lm1b, text8, fineweb_edu, files)",
        )
        q.add_argument(
            "config", nargs="*", metavar="CONFIG_OR_KEY=VALUE", help="YAML files, then key=value overrides"
        )
        if action == "prepare":
            q.add_argument(
                "--force", action="store_true", help="re-prepare even if the directory is complete"
            )
            q.add_argument("--quiet", action="store_true", help="no progress bars")
        q.set_defaults(func=run)


def _qualify(item: str) -> str:
    key, _, value = item.partition("=")
    top = key.split(".")[0]
    data_fields = {f.name for f in fields(DataConfig)}
    if top in data_fields and top != "data":
        key = "data." + key
    return f"{key}={value}"


def _data_cfg(args: argparse.Namespace) -> DataConfig:
    from mdm.config import load

    files = [a for a in args.config if "=" not in a]
    overrides = [f"data.name={args.name}"] + [_qualify(a) for a in args.config if "=" in a]
    return load(files, overrides).data


def run(args: argparse.Namespace) -> int:
    from mdm.data.datamodule import ensure_prepared, resolve_data_dir
    from mdm.data.meta import DataError, load_meta

    cfg = _data_cfg(args)
    try:
        if args.data_command == "info":
            print(load_meta(resolve_data_dir(cfg)).to_json(), end="")
            return 0
        t0 = time.perf_counter()
        data_dir = ensure_prepared(cfg, progress=not args.quiet, force=args.force)
        meta = load_meta(data_dir)
    except DataError as e:
        print(f"mdm data: error: {e}", file=sys.stderr)
        return 1
    summary = {
        "dir": str(data_dir),
        "tokenizer": meta.tokenizer,
        "vocab_size": meta.vocab_size,
        "mask_id": meta.mask_id,
        "dtype": meta.dtype,
        "tokens_per_split": meta.tokens_per_split,
        "n_documents": meta.n_documents,
        "sources": [s.get("name") for s in meta.sources],
        "entropy_per_token": meta.entropy_per_token,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    print(json.dumps(summary, indent=2))
    return 0
