"""``mdm <command>``: train | demo | bench | data | benchmarks | sweep | eval | sample.

Each command lives in its own module exposing ``add_parser(subparsers)`` (which registers the
sub-command and sets ``func``) and ``run(args) -> int``; this file only wires them together. Only the
module of the command being run is imported (``mdm --help`` imports no torch); the one-line helps of
the others come from :data:`COMMANDS` (a test checks they match the modules').

Errors: a user error (see :mod:`mdm.errors`) prints ``mdm: error: <message>`` (a few lines at most) and
exits 2; anything else is a bug and prints its traceback (exit 1). ``MDM_DEBUG=1`` shows tracebacks
of user errors too. Exit 75: the run was interrupted (SIGINT/SIGTERM/SIGUSR1) after checkpointing;
re-run the same command to resume.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# command -> (module, one-line help). Add one line per new command.
COMMANDS = {
    "train": ("mdm.commands.train", "train a model (re-run the same command to resume)"),
    "bench": ("mdm.commands.bench", "benchmarks that print figures (never timed tests)"),
    "demo": (
        "mdm.commands.demo",
        "the main job: a CPU-sized isoFLOP sweep of MDLM vs AR, fitted and reported",
    ),
    "sweep": ("mdm.commands.sweep", "plan, run, watch and collect a sweep (configs/sweeps/*.yaml)"),
    "eval": ("mdm.commands.eval", "zero-shot perplexity bounds, LAMBADA accuracy, gen-PPL, lm-eval tasks"),
    "sample": (
        "mdm.commands.sample",
        "draw samples from a trained run; report NFE, entropy and gen. perplexity",
    ),
    "data": ("mdm.data.cli", "prepare and inspect tokenized data"),
    "benchmarks": (
        "mdm.commands.benchmarks",
        "install and list local copies of the zero-shot benchmark files (offline mdm eval)",
    ),
    "export": (
        "mdm.commands.export",
        "export a run to a folder: safetensors weights, config, tokenizer, model card",
    ),
}
COMMAND_MODULES = [m for m, _ in COMMANDS.values()]


def _chosen(argv: list[str]) -> str | None:
    """The sub-command named on the command line (the first word that is a command), if any."""
    for a in argv:
        if not a.startswith("-"):
            return a if a in COMMANDS else None
    return None


def build_parser(argv: list[str] | None = None, load_all: bool = False) -> argparse.ArgumentParser:
    """The parser; only the chosen command's module is imported (all of them with ``load_all``)."""
    parser = argparse.ArgumentParser(prog="mdm", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chosen = _chosen(sys.argv[1:] if argv is None else argv)
    for name, (module, help_) in COMMANDS.items():
        if load_all or name == chosen:
            importlib.import_module(module).add_parser(sub)
        else:
            sub.add_parser(name, help=help_, add_help=False)  # placeholder: never parsed
    return parser


def main(argv: list[str] | None = None) -> int:
    from mdm.errors import USER_ERROR_EXIT, debug, is_user_error, one_line

    argv = sys.argv[1:] if argv is None else argv
    try:
        args = build_parser(argv).parse_args(argv)
        return int(args.func(args) or 0)
    except KeyboardInterrupt:  # outside training (training turns SIGINT into a checkpoint, exit 75)
        print("mdm: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        if not is_user_error(e) or debug():
            raise
        from mdm.config import ConfigError

        kind = "config error" if isinstance(e, ConfigError) else "error"
        print(f"mdm: {kind}: {one_line(e)}", file=sys.stderr)
        return USER_ERROR_EXIT


if __name__ == "__main__":
    sys.exit(main())
