"""Helpers shared by command modules: config files and key=value overrides from argv."""

from __future__ import annotations

import argparse

from mdm.config import Config, load


def add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "config",
        nargs="*",
        metavar="CONFIG_OR_KEY=VALUE",
        help="YAML files (deltas over the defaults, applied in order) then key=value overrides",
    )


def config_from_args(args: argparse.Namespace) -> Config:
    files = [a for a in args.config if "=" not in a]
    overrides = [a for a in args.config if "=" in a]
    return load(files, overrides)
