"""``mdm export RUN OUT/ [--raw] [--force]``: a self-contained folder (safetensors weights, config.json,
tokenizer, vocabulary layout, README.md model card; no pickle) that ``mdm.load_pretrained`` loads without
Lightning and that ``mdm sample``, ``mdm eval`` and the lm-eval adapter accept in place of a run
(:mod:`mdm.export`)."""

from __future__ import annotations

import sys

HELP = "export a run to a folder: safetensors weights, config, tokenizer, model card"


def add_parser(sub) -> None:
    p = sub.add_parser("export", help=HELP, description=__doc__)
    p.add_argument("run", help="run directory (or a checkpoint file inside one)")
    p.add_argument("out", help="output folder (created; must be empty unless --force)")
    p.add_argument("--raw", action="store_true", help="export the trained weights instead of the EMA ones")
    p.add_argument("--force", action="store_true", help="write into a non-empty folder")
    p.set_defaults(func=run)


def run(args) -> int:
    from mdm.export import export_run

    try:
        out = export_run(args.run, args.out, ema=not args.raw, force=args.force)
    except (FileNotFoundError, ValueError) as e:
        print(f"mdm export: error: {e}", file=sys.stderr)
        return 2
    files = ", ".join(sorted(p.name for p in out.iterdir() if not p.name.startswith(".")))
    print(f"[export] wrote {out}: {files}")
    return 0
