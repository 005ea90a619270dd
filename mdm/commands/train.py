"""``mdm train [CONFIG.yaml ...] [key=value ...]``: train, resume or skip the run the config names."""

from __future__ import annotations

from mdm.commands.common import add_config_args, config_from_args


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="train a model (re-run the same command to resume)")
    add_config_args(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from mdm.train import train

    cfg = config_from_args(args)
    summary = train(cfg)
    return 0 if summary.get("status") == "completed" else 1
