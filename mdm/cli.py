"""``mdm <command>``: train | demo | bench | data | sweep | eval | sample.

Each command lives in its own module exposing ``add_parser(subparsers)`` (which registers the
sub-command and sets ``func``) and ``run(args) -> int``; this file only wires them together.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Command modules; each adds its own sub-command. Add one line per new command.
COMMAND_MODULES = [
    "mdm.commands.train",
    "mdm.commands.bench",
    "mdm.commands.demo",
    "mdm.commands.sweep",
    "mdm.commands.eval",
    "mdm.commands.sample",
    "mdm.data.cli",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mdm", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from mdm.config import ConfigError

    try:
        return int(args.func(args) or 0)
    except ConfigError as e:
        print(f"mdm: config error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
