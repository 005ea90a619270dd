"""A user's own text as a benchmark: ``mdm eval RUN --text FILE_OR_GLOB [--text-field NAME]``.

Files (a path or a glob, matched in sorted order) by extension:

* ``.jsonl`` / ``.json`` (JSON lines): one row per record, its ``--text-field`` (default ``text``);
* ``.parquet``: one row per record of the column ``--text-field``;
* anything else: plain UTF-8 text, one row per file (``--text-rows lines``: one per non-empty line;
  ``paragraphs``: one per blank-line-separated paragraph).

The rows go through the same protocols (:mod:`mdm.eval.protocols`), bound and standard errors as the named
benchmarks (no detokenizer: the text is scored as given). The entry is named after the file (or the glob).
"""

from __future__ import annotations

import glob
from pathlib import Path

from mdm.eval.benchmarks import Benchmark, BenchmarkError, BenchmarkText, _field, _jsonl, _read_text

ROW_MODES = ("file", "lines", "paragraphs")


def text_files(spec: str) -> list[Path]:
    """The files a path or glob names (sorted); BenchmarkError naming the pattern when there are none."""
    p = Path(spec).expanduser()
    if p.is_file():
        return [p]
    if p.is_dir():
        raise BenchmarkError(f"--text {spec} is a directory; give a file or a glob such as '{spec}/*.txt'")
    files = sorted(Path(f) for f in glob.glob(str(p), recursive=True) if Path(f).is_file())
    if not files:
        raise BenchmarkError(f"--text {spec}: no file matches")
    return files


def _parquet_rows(path: Path, column: str) -> list[str]:
    try:
        import pyarrow.parquet as pq
    except ImportError as e:  # pragma: no cover - pyarrow comes with datasets
        raise BenchmarkError(f"reading {path} needs pyarrow ({e})") from e
    table = pq.read_table(path)
    if column not in table.column_names:
        raise BenchmarkError(f"{path} has no column {column!r} (columns: {', '.join(table.column_names)})")
    return [
        "\n".join(v) if isinstance(v, list) else ("" if v is None else str(v))
        for v in table[column].to_pylist()
    ]


def _plain_rows(text: str, mode: str) -> list[str]:
    if mode == "file":
        return [text]
    if mode == "lines":
        return [ln for ln in text.splitlines() if ln.strip()]
    return [p.strip() for p in text.replace("\r\n", "\n").split("\n\n") if p.strip()]


def load_text(spec: str, field: str = "text", rows: str = "file") -> tuple[Benchmark, BenchmarkText]:
    """(a Benchmark describing it, its rows) for the files ``spec`` names (module docstring)."""
    if rows not in ROW_MODES:
        raise BenchmarkError(f"--text-rows {rows!r} is not valid; choose one of: {', '.join(ROW_MODES)}")
    files = text_files(spec)
    out: list[str] = []
    kinds = set()
    for path in files:
        ext = path.suffix.lower()
        if ext in (".jsonl", ".json"):
            kinds.add(f"jsonl field {field!r}")
            out += [_field(r, field, path, i) for i, r in enumerate(_jsonl(path))]
        elif ext == ".parquet":
            kinds.add(f"parquet column {field!r}")
            out += _parquet_rows(path, field)
        else:
            kinds.add(f"plain text, rows = {rows}")
            out += _plain_rows(_read_text(path), rows)
    if not any(r.strip() for r in out):
        raise BenchmarkError(f"--text {spec}: the files hold no text")
    name = files[0].name if len(files) == 1 else spec
    release = f"user text: {len(files)} file(s), {'; '.join(sorted(kinds))}"
    bench = Benchmark(
        name=name, description=f"user text {spec}", detokenizer="none", auto_split="-", local=(), hub=()
    )
    source = str(files[0]) if len(files) == 1 else f"{spec} ({len(files)} files)"
    return bench, BenchmarkText(name, "-", out, list(out), source, release)
