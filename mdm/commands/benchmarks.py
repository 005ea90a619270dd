"""``mdm benchmarks``: local copies of the zero-shot benchmark files, for machines without the Hub.

    mdm benchmarks install SOURCE [SOURCE ...] [--dest DIR]
    mdm benchmarks list [--dir DIR]

``install`` takes directories (their top-level files) or files, checks each known file's sha256 against
the table in mdm/eval/benchmark_files.py (a corrupt or unknown file is refused by name and nothing is
copied), copies them atomically into DIR (default: ``$MDM_BENCHMARK_DIR``, else the per-user cache
``$XDG_CACHE_HOME/mdm/benchmarks`` or ``~/.cache/mdm/benchmarks``) and lists what it installed; a file
already there with the right hash is left alone. ``mdm eval`` then finds them with no ``--data-dir``.
``list`` shows the folder ``mdm eval`` reads by default and the state of each known file there.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

HELP = "install and list local copies of the zero-shot benchmark files (offline mdm eval)"


def add_parser(sub) -> None:
    p = sub.add_parser(
        "benchmarks", help=HELP, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    bsub = p.add_subparsers(dest="benchmarks_command", required=True, metavar="ACTION")
    q = bsub.add_parser("install", help="check and copy benchmark files into the benchmark directory")
    q.add_argument("sources", nargs="+", metavar="SOURCE", help="directories or files holding the copies")
    q.add_argument(
        "--dest", default=None, help="install here (default: $MDM_BENCHMARK_DIR, else the user cache)"
    )
    q.set_defaults(func=run)
    q = bsub.add_parser("list", help="the benchmark directory mdm eval reads and the files in it")
    q.add_argument("--dir", default=None, help="inspect this folder instead of the default one")
    q.set_defaults(func=run)


def run(args) -> int:
    from mdm.eval.benchmarks import BenchmarkError

    try:
        return _install(args) if args.benchmarks_command == "install" else _list(args)
    except BenchmarkError as e:
        print(f"mdm benchmarks: error: {e}", file=sys.stderr)
        return 2


def _where_default() -> tuple[Path | None, str]:
    from mdm.eval.benchmarks import ENV_DIR, default_benchmark_dir, user_cache_dir

    d = default_benchmark_dir()
    if os.environ.get(ENV_DIR):
        return d, f"${ENV_DIR}"
    if d is not None:
        return d, "the user cache"
    return None, f"none: mdm eval uses the Hugging Face Hub; `install` writes to {user_cache_dir()}"


def _install(args) -> int:
    from mdm.eval.benchmark_files import install
    from mdm.eval.benchmarks import ENV_DIR

    done, ignored = install(args.sources, args.dest)
    target = done[0].path.parent
    print(f"[benchmarks] {target}:")
    width = max(len(i.file.name) for i in done)
    for i in done:
        kf = i.file
        what = f"installed from {i.source}" if i.copied else "already installed (sha256 ok)"
        print(f"  {kf.name:<{width}}  {kf.benchmark} {kf.split}, {kf.rows:,} rows  {what}")
    if ignored:
        print(f"  left out (not benchmark files): {', '.join(p.name for p in ignored)}")
    default, _ = _where_default()
    if default is not None and default.expanduser().resolve() == target.resolve():
        print("[benchmarks] mdm eval reads this folder by default (no --data-dir needed)")
    else:
        print(
            f"[benchmarks] not the default folder: pass --data-dir {target} to mdm eval (or set ${ENV_DIR})"
        )
    return 0


def _list(args) -> int:
    from mdm.eval.benchmark_files import KNOWN_FILES, status

    if args.dir is not None:
        d, why = Path(args.dir).expanduser(), "--dir"
    else:
        d, why = _where_default()
    if d is None:
        print(f"benchmark directory: {why}")
        return 0
    print(f"benchmark directory: {d} ({why})")
    if not d.is_dir():
        print("  (does not exist)")
        return 0
    states = status(d)
    width = max(map(len, states))
    for name, state in states.items():
        kf = KNOWN_FILES[name]
        print(f"  {name:<{width}}  {kf.benchmark} {kf.split}  {state}")
    others = sorted(p.name for p in d.iterdir() if p.name not in KNOWN_FILES and not p.name.startswith("."))
    if others:
        print(f"  other files (read in place if a loader knows them): {', '.join(others)}")
    bad = [n for n, s in states.items() if s == "corrupt"]
    if bad:
        print(
            f"mdm benchmarks: error: {', '.join(bad)} in {d} fail the sha256 check; re-run "
            "`mdm benchmarks install SOURCE` to replace them",
            file=sys.stderr,
        )
        return 2
    return 0
