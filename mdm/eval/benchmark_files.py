"""Local copies of benchmark files: the table of the files ``mdm benchmarks install`` accepts (name,
benchmark, split, rows, size, sha256) and the checked, atomic copy into the benchmark directory.

A machine that cannot reach the Hugging Face Hub evaluates on local copies. Only files whose sha256 is in
:data:`KNOWN_FILES` are installed, so a truncated download or a different release is refused by name
before anything is copied; any other file the loaders read (your own PTB or raw WikiText copy) is used
in place with ``--data-dir`` / ``$MDM_BENCHMARK_DIR``. Each copy goes to a hidden temporary file in the
destination, is hashed as it is written, and is renamed into place (``os.replace``): the directory never
holds a partial file under a benchmark's name. Re-installing a file already there with the right hash
copies nothing.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from mdm.eval.benchmarks import BENCHMARKS, BenchmarkError, expected_local_files, install_dir


@dataclass(frozen=True)
class KnownFile:
    name: str  # file name in the benchmark directory (what the loaders of mdm.eval.benchmarks look for)
    benchmark: str
    split: str
    rows: int  # rows the loader yields (LAMBADA passages, WikiText lines, AG News records)
    size: int  # bytes
    sha256: str
    release: str


KNOWN_FILES: dict[str, KnownFile] = {
    f.name: f
    for f in [
        KnownFile(
            "lambada_test.jsonl",
            "lambada",
            "test",
            5153,
            1819752,
            "4aa8d02cd17c719165fc8a7887fddd641f43fcafa4b1c806ca8abc31fabdb226",
            "OpenAI's detokenized LAMBADA (GPT-2, MDLM, SEDD), jsonl {'text': ...}",
        ),
        KnownFile(
            "wikitext2_test.tokens",
            "wikitext2",
            "test",
            4358,
            1256449,
            "d790b833ef8cf03a90db7bf1271b7520b83c45ce07ba3c1a9699df81e239eca0",
            "WikiText-2 tokenized release (wiki.test.tokens)",
        ),
        KnownFile(
            "wikitext2_valid.tokens",
            "wikitext2",
            "validation",
            3760,
            1121681,
            "f0737ed31fc1329026e95cb8b98e19c2a182c39c240ab909dc31abf2f8af58e8",
            "WikiText-2 tokenized release (wiki.valid.tokens)",
        ),
        KnownFile(
            "ag_news_test.csv",
            "ag_news",
            "test",
            7600,
            1831781,
            "72b844642f92fb74fe397f0d1dd8a46d4cfd6fff60bc5c1a214fe40c44708fd7",
            "AG News test CSV (label,title,description)",
        ),
    ]
}

_CHUNK = 1 << 20


@dataclass(frozen=True)
class Installed:
    file: KnownFile
    path: Path  # where it is now
    source: Path
    copied: bool  # False: already there with the right hash


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def loader_file_names() -> set[str]:
    """Top-level file names some loader reads (any split): a directory holding one of these that is not
    in :data:`KNOWN_FILES` is refused by name rather than silently left out."""
    names = set()
    for bench in BENCHMARKS.values():
        for split in bench.splits:
            names.update(
                n
                for n in expected_local_files(bench, split)
                if "/" not in n and not any(c in n for c in "*?[")
            )
    return names


def _known() -> str:
    return ", ".join(KNOWN_FILES)


def collect(sources: list[str | Path]) -> tuple[list[tuple[KnownFile, Path]], list[Path]]:
    """The known files named by ``sources`` (directories: their top-level files; files: themselves) and
    the files left out (not benchmark files, e.g. a README). Raises on a missing path, an unknown file
    named explicitly, a loader-readable file without a hash in the table, a name given twice, or a
    directory holding no known file."""
    if not sources:
        raise BenchmarkError(f"no source given: name a directory or files among {_known()}")
    found: dict[str, tuple[KnownFile, Path]] = {}
    ignored: list[Path] = []
    readable = loader_file_names()

    def add(path: Path) -> None:
        kf = KNOWN_FILES[path.name]
        if path.name in found and found[path.name][1].resolve() != path.resolve():
            raise BenchmarkError(f"{path.name} given twice ({found[path.name][1]} and {path})")
        found[path.name] = (kf, path)

    for src in map(Path, sources):
        src = src.expanduser()
        if src.is_dir():
            files = sorted(p for p in src.iterdir() if p.is_file() and not p.name.startswith("."))
            unhashed = [p for p in files if p.name in readable and p.name not in KNOWN_FILES]
            if unhashed:
                raise BenchmarkError(
                    f"{unhashed[0]}: a benchmark file with no sha256 in mdm/eval/benchmark_files.py, so it "
                    f"cannot be checked (installable: {_known()}); use it in place with --data-dir {src}"
                )
            known = [p for p in files if p.name in KNOWN_FILES]
            if not known:
                raise BenchmarkError(f"{src} holds none of the benchmark files {_known()}")
            for p in known:
                add(p)
            ignored += [p for p in files if p.name not in KNOWN_FILES]
        elif src.is_file():
            if src.name not in KNOWN_FILES:
                raise BenchmarkError(f"{src}: not a known benchmark file (installable: {_known()})")
            add(src)
        else:
            raise BenchmarkError(f"{src} does not exist")
    return list(found.values()), ignored


def _check(kf: KnownFile, path: Path, digest: str) -> None:
    if digest != kf.sha256:
        raise BenchmarkError(
            f"{path}: sha256 {digest} is not {kf.sha256} ({kf.release}, {kf.size:,} bytes; this one has "
            f"{path.stat().st_size:,}): a corrupt copy or another release; nothing installed"
        )


def _copy_checked(kf: KnownFile, src: Path, dest: Path) -> None:
    """``src`` -> hidden tmp in ``dest``'s folder, hashed while written, then ``os.replace`` onto ``dest``."""
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    try:
        h = hashlib.sha256()
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "wb") as out, open(src, "rb") as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if h.hexdigest() != kf.sha256:
            raise BenchmarkError(
                f"{src} changed while it was copied (sha256 {h.hexdigest()}); nothing replaced"
            )
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def install(sources: list[str | Path], dest: str | Path | None = None) -> tuple[list[Installed], list[Path]]:
    """Check every known file of ``sources`` against :data:`KNOWN_FILES`, then copy each into ``dest``
    (default :func:`mdm.eval.benchmarks.install_dir`) unless it is there already with the right hash.

    All sources are checked before the first copy: a corrupt one installs nothing. Returns what was
    installed (or found in place) and the files of the source directories that were left out.
    """
    files, ignored = collect(sources)
    for kf, path in files:
        _check(kf, path, sha256_of(path))
    target = Path(dest).expanduser() if dest is not None else install_dir()
    if target.exists() and not target.is_dir():
        raise BenchmarkError(f"install destination {target} is not a directory")
    target.mkdir(parents=True, exist_ok=True)
    done = []
    for kf, path in files:
        out = target / kf.name
        present = out.is_file() and sha256_of(out) == kf.sha256
        if not present:
            _copy_checked(kf, path, out)
        done.append(Installed(kf, out, path, copied=not present))
    return done, ignored


def status(directory: Path) -> dict[str, str]:
    """Each known file in ``directory``: ``ok``, ``missing`` or ``corrupt`` (present, wrong sha256)."""
    out = {}
    for kf in KNOWN_FILES.values():
        p = directory / kf.name
        out[kf.name] = "missing" if not p.is_file() else ("ok" if sha256_of(p) == kf.sha256 else "corrupt")
    return out
