"""Zero-shot benchmarks: where their text comes from (local files or the Hugging Face Hub) and how it is
cut into rows ("documents") before the detokenizer and the model's tokenizer see it.

Each benchmark yields the rows the reference evaluation code sees (one row per Hub dataset record):

==============  ========================================  ==========  ==================  ===============
benchmark       Hub dataset (config)                      field       detokenizer         split (auto)
==============  ========================================  ==========  ==================  ===============
lambada         OpenAI's ``lambada_test.jsonl`` (URL),    text        lambada             test
                then ``EleutherAI/lambada_openai``
wikitext2       ``Salesforce/wikitext`` (wikitext-2-raw)  text        wikitext            validation
wikitext103     ``Salesforce/wikitext`` (wikitext-103-raw) text       wikitext            validation
ptb             ``ptb-text-only/ptb_text_only``           sentence    ptb                 validation
lm1b            ``billion-word-benchmark/lm1b``           text        lm1b                test
ag_news         ``fancyzhx/ag_news``                      text        none                test
pubmed          ``armanc/scientific_papers`` (pubmed)     article     scientific_papers   validation
arxiv           ``armanc/scientific_papers`` (arxiv)      article     scientific_papers   validation
==============  ========================================  ==========  ==================  ===============

``split="auto"`` follows the MDLM/SEDD code, which reports the *validation* split where a dataset has one
(test for LAMBADA, LM1B and AG News); pass ``split="test"`` for the test split.

Local files are searched before the Hub in the benchmark directory: ``data_dir`` (``--data-dir``), else
``$MDM_BENCHMARK_DIR``, else the per-user cache ``$XDG_CACHE_HOME/mdm/benchmarks`` (``~/.cache/...``) when
it holds files; ``mdm benchmarks install DIR`` copies checked files there (mdm/eval/benchmark_files.py).
The loaders read:

* LAMBADA: OpenAI's jsonl (``lambada_test.jsonl``: ``{"text": passage}``, the last word is the target).
* WikiText: the raw release (``wiki.<split>.raw``) or the tokenized release (``wiki.<split>.tokens``; also
  ``wikitext2_<split>.tokens``). Rows are the file's lines as the Hub has them: a whitespace-only line
  becomes ``""``, any other line keeps its leading space and newline. Which release was used is recorded:
  the tokenized release contains ``<unk>`` and its numbers are not comparable to the papers' (raw) ones.
* PTB: Mikolov's ``ptb.<split>.txt`` (lower case, ``<unk>``, ``N``; one sentence per line, stripped, as the
  Hub's ``ptb_text_only`` ``sentence`` field) or a jsonl with a ``sentence`` field.
* LM1B: ``lm1b_<split>.txt`` (one sentence per line) or the release's ``heldout-monolingual...`` files.
* AG News: the CSV (``label,title,description``, with or without that header); text = title + " " +
  description (as the Hub's ``text`` field).
* PubMed / arXiv: jsonl with ``article`` (Hub layout) or ``article_text`` (a list of sentences, the
  original release, joined with newlines).

The Hub is reached through :func:`datasets.load_dataset` (the real code path), streaming the requested
split only. Offline, a clear error
says which local files would have been used. ``hub_mirror`` (or ``$MDM_HUB_MIRROR``) maps a Hub id to a
local directory ``<mirror>/<owner>/<name>`` laid out like the Hub repository (parquet + README configs):
the same ``load_dataset`` call, used by the tests.
"""

from __future__ import annotations

import csv
import glob
import json
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mdm.eval.detokenizers import get_detokenizer

ENV_DIR = "MDM_BENCHMARK_DIR"
ENV_MIRROR = "MDM_HUB_MIRROR"
LAMBADA_URL = "https://openaipublic.blob.core.windows.net/gpt-2/data/lambada_test.jsonl"


class BenchmarkError(ValueError):
    """A benchmark that cannot be loaded; the message names the benchmark, files and what to do."""


@dataclass(frozen=True)
class HubSource:
    path: str
    name: str | None
    field: str
    revision: str | None = None  # e.g. refs/convert/parquet for datasets whose loading script was retired


@dataclass(frozen=True)
class LocalSource:
    pattern: str  # relative to the benchmark dir; "{split}" / "{s}" (short split: valid/test) substituted
    fmt: str  # lambada_jsonl | wikitext_lines | ptb_lines | lines | ag_news_csv | jsonl:<field> | parquet:<field>
    release: str  # what the file is, for the report


@dataclass(frozen=True)
class Benchmark:
    name: str
    description: str
    detokenizer: str
    auto_split: str  # the split the MDLM/SEDD code evaluates
    local: tuple[LocalSource, ...]
    hub: tuple[HubSource, ...]
    url: str | None = None  # a plain download (LAMBADA), tried before the Hub
    lambada: bool = False  # also report last-word accuracy
    splits: tuple[str, ...] = ("test",)


def _wikitext(n: str, hub_cfg: str) -> Benchmark:
    return Benchmark(
        name=f"wikitext{n}",
        description=f"WikiText-{n} (Merity et al. 2016)",
        detokenizer="wikitext",
        auto_split="validation",
        splits=("test", "validation"),
        local=(
            LocalSource(f"wikitext{n}_{{split}}.raw", "wikitext_lines", f"wikitext-{n} raw release"),
            LocalSource(f"wikitext-{n}-raw/wiki.{{s}}.raw", "wikitext_lines", f"wikitext-{n} raw release"),
            LocalSource(f"wikitext-{n}-raw-v1/wiki.{{s}}.raw", "wikitext_lines", f"wikitext-{n} raw release"),
            LocalSource(
                f"wikitext{n}_{{s}}.tokens",
                "wikitext_lines",
                f"wikitext-{n} TOKENIZED release (<unk>; not comparable)",
            ),
            LocalSource(
                f"wikitext-{n}/wiki.{{s}}.tokens",
                "wikitext_lines",
                f"wikitext-{n} TOKENIZED release (<unk>; not comparable)",
            ),
        ),
        hub=(HubSource("Salesforce/wikitext", hub_cfg, "text"),),
    )


BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in [
        Benchmark(
            name="lambada",
            description="LAMBADA, OpenAI's detokenized test set (Paperno et al. 2016; Radford et al. 2019)",
            detokenizer="lambada",
            auto_split="test",
            local=(
                LocalSource("lambada_test.jsonl", "lambada_jsonl", "OpenAI lambada_test.jsonl"),
                LocalSource("lambada/lambada_test.jsonl", "lambada_jsonl", "OpenAI lambada_test.jsonl"),
            ),
            hub=(HubSource("EleutherAI/lambada_openai", "default", "text"),),
            url=LAMBADA_URL,
            lambada=True,
        ),
        _wikitext("2", "wikitext-2-raw-v1"),
        _wikitext("103", "wikitext-103-raw-v1"),
        Benchmark(
            name="ptb",
            description="Penn Treebank, Mikolov's LM version (Marcus et al. 1993; Mikolov et al. 2010)",
            detokenizer="ptb",
            auto_split="validation",
            splits=("test", "validation"),
            local=(
                LocalSource("ptb.{s}.txt", "ptb_lines", "PTB Mikolov format"),
                LocalSource("ptb/ptb.{s}.txt", "ptb_lines", "PTB Mikolov format"),
                LocalSource("simple-examples/data/ptb.{s}.txt", "ptb_lines", "PTB Mikolov format"),
                LocalSource("ptb_text_only_{split}.jsonl", "jsonl:sentence", "PTB ptb_text_only (jsonl)"),
            ),
            hub=(
                HubSource("ptb-text-only/ptb_text_only", "penn_treebank", "sentence", "refs/convert/parquet"),
            ),
        ),
        Benchmark(
            name="lm1b",
            description="One Billion Word benchmark (Chelba et al. 2013)",
            detokenizer="lm1b",
            auto_split="test",
            local=(
                LocalSource("lm1b_{split}.txt", "lines", "LM1B one sentence per line"),
                LocalSource(
                    "1-billion-word-language-modeling-benchmark-r13output/heldout-monolingual.tokenized.shuffled/news.en.heldout-*",
                    "lines",
                    "LM1B release heldout files",
                ),
            ),
            hub=(HubSource("billion-word-benchmark/lm1b", "plain_text", "text", "refs/convert/parquet"),),
        ),
        Benchmark(
            name="ag_news",
            description="AG News (Zhang et al. 2015), title + description",
            detokenizer="none",
            auto_split="test",
            local=(
                LocalSource("ag_news_{split}.csv", "ag_news_csv", "AG News CSV"),
                LocalSource("ag_news_csv/{split}.csv", "ag_news_csv", "AG News CSV"),
            ),
            hub=(HubSource("fancyzhx/ag_news", None, "text"),),
        ),
        *[
            Benchmark(
                name=sub,
                description=f"scientific_papers {sub} articles (Cohan et al. 2018)",
                detokenizer="scientific_papers",
                auto_split="validation",
                splits=("test", "validation"),
                local=(
                    LocalSource(f"{sub}_{{split}}.jsonl", "jsonl:article", f"{sub} articles (jsonl)"),
                    LocalSource(f"{sub}-dataset/{{v}}.txt", "jsonl:article", f"{sub} original release"),
                ),
                hub=(HubSource("armanc/scientific_papers", sub, "article"),),
            )
            for sub in ("pubmed", "arxiv")
        ],
    ]
}


@dataclass
class BenchmarkText:
    """The rows of one benchmark split: ``rows`` as stored, ``docs`` after the detokenizer."""

    name: str
    split: str
    rows: list[str]
    docs: list[str]
    source: str  # file path(s) or hub id
    release: str
    notes: list[str] = field(default_factory=list)


def valid_names() -> str:
    return ", ".join(BENCHMARKS)


def parse_benchmarks(spec: str | list[str]) -> list[Benchmark]:
    """``"lambada,wikitext2"`` -> benchmarks; an unknown name raises listing the valid ones."""
    names = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    if not names:
        raise BenchmarkError(f"no benchmark given; valid: {valid_names()}")
    bad = [n for n in names if n not in BENCHMARKS]
    if bad:
        raise BenchmarkError(f"unknown benchmark(s) {', '.join(map(repr, bad))}; valid: {valid_names()}")
    return [BENCHMARKS[n] for n in names]


def user_cache_dir() -> Path:
    """Where ``mdm benchmarks install`` puts local copies: ``$XDG_CACHE_HOME/mdm/benchmarks``, else
    ``~/.cache/mdm/benchmarks`` (a relative ``$XDG_CACHE_HOME`` is ignored, as the XDG spec says)."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "mdm" / "benchmarks"


def install_dir() -> Path:
    """The folder ``mdm benchmarks install`` writes to by default: ``$MDM_BENCHMARK_DIR``, else the cache."""
    env = os.environ.get(ENV_DIR)
    return Path(env).expanduser() if env else user_cache_dir()


def _holds_files(d: Path) -> bool:
    """A directory with at least one entry that is not hidden (an interrupted copy leaves a hidden tmp)."""
    return d.is_dir() and any(not p.name.startswith(".") for p in d.iterdir())


def default_benchmark_dir() -> Path | None:
    """``$MDM_BENCHMARK_DIR``, else :func:`user_cache_dir` when it holds files, else None (the Hub)."""
    env = os.environ.get(ENV_DIR)
    if env:
        return Path(env).expanduser()
    cache = user_cache_dir()
    return cache if _holds_files(cache) else None


def resolve_split(bench: Benchmark, split: str) -> str:
    split = {"valid": "validation", "val": "validation"}.get(split, split)
    if split == "auto":
        return bench.auto_split
    if split not in bench.splits:
        raise BenchmarkError(
            f"{bench.name} has no split {split!r}; choose one of: auto, {', '.join(bench.splits)}"
        )
    return split


# -- local files ----------------------------------------------------------------------------------------


def _expand(pattern: str, split: str) -> str:
    short = {"validation": "valid"}.get(split, split)
    v = {"validation": "val"}.get(split, split)
    return pattern.replace("{split}", split).replace("{s}", short).replace("{v}", v)


def expected_local_files(bench: Benchmark, split: str) -> list[str]:
    return [_expand(s.pattern, split) for s in bench.local]


def find_local(bench: Benchmark, split: str, data_dir: Path) -> tuple[LocalSource, list[Path]] | None:
    for src in bench.local:
        pat = _expand(src.pattern, split)
        if any(c in pat for c in "*?["):
            files = sorted(Path(p) for p in glob.glob(str(data_dir / pat)))
        else:
            files = [data_dir / pat] if (data_dir / pat).is_file() else []
        if files:
            return src, files
    return None


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise BenchmarkError(f"{path} is not UTF-8 text: {e}") from e


def _jsonl(path: Path) -> list[dict]:
    rows = []
    for i, line in enumerate(_read_text(path).splitlines()):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise BenchmarkError(f"{path}: line {i + 1} is not valid JSON ({e})") from e
    return rows


def _field(row: dict, key: str, path: Path, i: int) -> str:
    if key not in row:
        alt = {"article": "article_text"}.get(key)
        if alt and alt in row:
            key = alt
        else:
            raise BenchmarkError(f"{path}: record {i + 1} has no {key!r} field (keys: {sorted(row)})")
    v = row[key]
    return "\n".join(v) if isinstance(v, list) else str(v)


def wikitext_rows(text: str) -> list[str]:
    """Lines as the Hub's wikitext rows: whitespace-only -> "", others keep their newline."""
    return [line if line.strip() else "" for line in text.splitlines(keepends=True)]


def read_local(src: LocalSource, files: list[Path]) -> list[str]:
    rows: list[str] = []
    for path in files:
        if src.fmt == "lambada_jsonl":
            rows += [_field(r, "text", path, i) for i, r in enumerate(_jsonl(path))]
        elif src.fmt == "wikitext_lines":
            rows += wikitext_rows(_read_text(path))
        elif src.fmt == "ptb_lines" or src.fmt == "lines":
            rows += [ln.strip() for ln in _read_text(path).splitlines() if ln.strip()]
        elif src.fmt == "ag_news_csv":
            with open(path, newline="", encoding="utf-8") as f:
                for i, rec in enumerate(csv.reader(f)):
                    if i == 0 and [c.strip().lower() for c in rec] == ["label", "title", "description"]:
                        continue
                    if len(rec) != 3:
                        raise BenchmarkError(
                            f"{path}: row {i + 1} has {len(rec)} columns, expected label,title,description"
                        )
                    rows.append(f"{rec[1]} {rec[2]}")
        elif src.fmt.startswith("jsonl:"):
            key = src.fmt.split(":", 1)[1]
            rows += [_field(r, key, path, i) for i, r in enumerate(_jsonl(path))]
        else:  # pragma: no cover - table above is closed
            raise AssertionError(src.fmt)
    return rows


# -- the Hub --------------------------------------------------------------------------------------------


def hub_reachable(host: str = "huggingface.co", timeout: float = 3.0) -> bool:
    """A quick TCP probe so an offline machine fails in seconds instead of minutes of retries."""
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def load_hub(
    src: HubSource, split: str, mirror: Path | None = None, cache_dir: str | None = None
) -> list[str]:
    """``datasets.load_dataset`` on the Hub id (or its local mirror directory) -> the field of every record."""
    import datasets

    if mirror is not None:
        path, revision = str(mirror / src.path), None
        if not Path(path).is_dir():
            raise BenchmarkError(f"Hub mirror has no {path}")
    else:
        path, revision = src.path, src.revision
    # streaming: only the requested split is read (LM1B's and scientific_papers' train splits are GBs)
    ds = datasets.load_dataset(
        path, src.name, split=split, revision=revision, cache_dir=cache_dir, streaming=True
    )
    rows = []
    for rec in ds:
        if src.field not in rec:
            raise BenchmarkError(f"{src.path}: no column {src.field!r} (columns: {sorted(rec)})")
        rows.append(_join(rec[src.field]))
    return rows


def _join(v) -> str:
    return "\n".join(v) if isinstance(v, list) else str(v)


def load_url_jsonl(url: str, field_name: str, timeout: float = 60.0) -> list[str]:
    import urllib.request

    with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 - a fixed https URL
        lines = r.read().decode("utf-8").splitlines()
    return [str(json.loads(ln)[field_name]) for ln in lines if ln.strip()]


# -- entry point ----------------------------------------------------------------------------------------


def load_benchmark(
    bench: Benchmark | str,
    split: str = "auto",
    data_dir: str | Path | None = None,
    source: str = "auto",
    hub_mirror: str | Path | None = None,
    cache_dir: str | None = None,
    reachable: Callable[[], bool] = hub_reachable,
) -> BenchmarkText:
    """Rows of ``bench`` from local files (``source`` local/auto) or the Hub (hub/auto).

    ``data_dir`` defaults to :func:`default_benchmark_dir`. With ``source="local"`` a missing file is an
    error naming the files looked for; with ``auto`` the Hub is tried next, and if that fails too the
    error names both.
    """
    if isinstance(bench, str):
        bench = parse_benchmarks(bench)[0]
    if source not in ("auto", "local", "hub"):
        raise BenchmarkError(f"source={source!r} is not valid; choose one of: auto, local, hub")
    split = resolve_split(bench, split)
    detok = get_detokenizer(bench.detokenizer)
    ddir = Path(data_dir).expanduser() if data_dir is not None else default_benchmark_dir()
    mirror = hub_mirror if hub_mirror is not None else os.environ.get(ENV_MIRROR)
    mirror = Path(mirror).expanduser() if mirror else None

    def done(rows: list[str], where: str, release: str) -> BenchmarkText:
        if not rows:
            raise BenchmarkError(f"{bench.name}: {where} holds no text")
        return BenchmarkText(bench.name, split, rows, [detok(r) for r in rows], where, release)

    looked = []
    if source in ("auto", "local"):
        if ddir is not None:
            if not ddir.is_dir():
                raise BenchmarkError(f"benchmark directory {ddir} does not exist")
            hit = find_local(bench, split, ddir)
            if hit is not None:
                src, files = hit
                where = str(files[0]) if len(files) == 1 else f"{files[0].parent}/ ({len(files)} files)"
                return done(read_local(src, files), where, src.release)
            looked = [str(ddir / f) for f in expected_local_files(bench, split)]
        if source == "local":
            where = (
                f"in {ddir}"
                if ddir is not None
                else f"(no --data-dir or ${ENV_DIR} given, nothing in {user_cache_dir()})"
            )
            raise BenchmarkError(
                f"benchmark file for {bench.name} ({split}) not found {where}; looked for: "
                + (", ".join(looked) if looked else ", ".join(expected_local_files(bench, split)))
            )

    errors = []
    if mirror is None and not reachable():
        local_hint = ", ".join(expected_local_files(bench, split))
        raise BenchmarkError(
            f"{bench.name} ({split}): no local file"
            + (f" in {ddir}" if ddir is not None else "")
            + f" and the Hugging Face Hub is not reachable (offline?). Put one of [{local_hint}] in a "
            f"directory and pass --data-dir DIR (or set ${ENV_DIR}), or install local copies with "
            "`mdm benchmarks install DIR`"
        )
    if bench.url and mirror is None and split == "test":
        try:
            return done(load_url_jsonl(bench.url, "text"), bench.url, "OpenAI lambada_test.jsonl (download)")
        except Exception as e:  # noqa: BLE001 - fall through to the Hub, report all
            errors.append(f"{bench.url}: {type(e).__name__}: {e}")
    for hs in bench.hub:
        try:
            rows = load_hub(hs, split, mirror, cache_dir)
            name = (
                f"{hs.path}"
                + (f" ({hs.name})" if hs.name else "")
                + (f" from mirror {mirror}" if mirror else "")
            )
            return done(rows, name, f"Hub {hs.path}" + (f"/{hs.name}" if hs.name else ""))
        except BenchmarkError as e:
            errors.append(str(e))
        except Exception as e:  # noqa: BLE001 - datasets raises many kinds; report them all
            errors.append(f"{hs.path}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
    raise BenchmarkError(
        f"cannot load {bench.name} ({split}): "
        + "; ".join(errors)
        + (f". Local files looked for: {', '.join(looked)}" if looked else "")
    )
