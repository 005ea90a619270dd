"""Local benchmark copies: the default benchmark directory, ``mdm benchmarks install`` (sha256-checked,
atomic, idempotent; unknown and corrupt files refused by name) and ``mdm benchmarks list``.

Most tests swap the table of known files for one describing small files made here, so they run without
the real copies; the last ones check the real table against the real files (``bench_dir``)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from mdm.cli import main
from mdm.eval import benchmark_files as bf
from mdm.eval.benchmarks import ENV_DIR, default_benchmark_dir, load_benchmark

REPO = Path(__file__).resolve().parents[2]
LAMBADA = b'{"text": "the cat sat on the mat"}\n{"text": "a dog ran to the park"}\n'
AG_NEWS = b"label,title,description\n3,Wall St,Bears claw back\n1,Title,Body text\n"


@pytest.fixture
def env(monkeypatch, tmp_path) -> Path:
    """No $MDM_BENCHMARK_DIR; the user cache under tmp_path. Returns the cache's benchmark folder."""
    monkeypatch.delenv(ENV_DIR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "mdm" / "benchmarks"


@pytest.fixture
def source(monkeypatch, tmp_path) -> Path:
    """A folder of two small benchmark files (plus a README), and a table that knows them."""
    src = tmp_path / "src"
    src.mkdir()
    table = {}
    for name, data, bench, rows in [
        ("lambada_test.jsonl", LAMBADA, "lambada", 2),
        ("ag_news_test.csv", AG_NEWS, "ag_news", 2),
    ]:
        (src / name).write_bytes(data)
        table[name] = bf.KnownFile(
            name, bench, "test", rows, len(data), hashlib.sha256(data).hexdigest(), f"{bench} (test copy)"
        )
    (src / "README.md").write_text("about these files\n")
    monkeypatch.setattr(bf, "KNOWN_FILES", table)
    return src


def _err_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_default_dir_is_the_env_var_else_the_cache_when_it_holds_files(env, monkeypatch, tmp_path):
    assert default_benchmark_dir() is None  # no cache folder: the Hub
    env.mkdir(parents=True)
    (env / ".lambada_test.jsonl.abc.tmp").write_text("partial")  # an interrupted copy does not count
    assert default_benchmark_dir() is None
    (env / "ptb.valid.txt").write_text("a b\n")
    assert default_benchmark_dir() == env
    monkeypatch.setenv(ENV_DIR, str(tmp_path / "mine"))
    assert default_benchmark_dir() == tmp_path / "mine"
    monkeypatch.delenv(ENV_DIR)
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")  # ignored (XDG spec): ~/.cache
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert bf.install_dir() == tmp_path / "home" / ".cache" / "mdm" / "benchmarks"


def test_install_copies_checked_files_into_the_cache_and_eval_finds_them(env, source, capsys):
    assert main(["benchmarks", "install", str(source)]) == 0
    out = capsys.readouterr().out
    assert str(env) in out and "reads this folder by default" in out
    assert "lambada_test.jsonl" in out and "ag_news_test.csv" in out and "installed from" in out
    assert "left out (not benchmark files): README.md" in out
    assert sorted(p.name for p in env.iterdir()) == ["ag_news_test.csv", "lambada_test.jsonl"]  # no tmp left
    assert (env / "lambada_test.jsonl").read_bytes() == LAMBADA
    assert oct((env / "lambada_test.jsonl").stat().st_mode & 0o777) == "0o644"
    lam = load_benchmark("lambada", source="local")  # no data_dir: the cache
    assert lam.rows == ["the cat sat on the mat", "a dog ran to the park"]
    assert lam.source == str(env / "lambada_test.jsonl")


def test_reinstall_is_idempotent_and_repairs_a_damaged_copy(env, source, capsys):
    assert main(["benchmarks", "install", str(source)]) == 0
    capsys.readouterr()
    before = {p.name: p.stat().st_mtime_ns for p in env.iterdir()}
    os.utime(env / "ag_news_test.csv", ns=(1, 1))  # any rewrite would change this
    assert main(["benchmarks", "install", str(source)]) == 0
    out = capsys.readouterr().out
    assert out.count("already installed (sha256 ok)") == 2 and "installed from" not in out
    assert (env / "ag_news_test.csv").stat().st_mtime_ns == 1
    assert (env / "lambada_test.jsonl").stat().st_mtime_ns == before["lambada_test.jsonl"]
    (env / "lambada_test.jsonl").write_bytes(LAMBADA[:10])  # truncated in place
    assert main(["benchmarks", "install", str(source / "lambada_test.jsonl")]) == 0
    out = capsys.readouterr().out
    assert "installed from" in out and (env / "lambada_test.jsonl").read_bytes() == LAMBADA


def test_a_corrupt_source_is_refused_by_name_and_nothing_is_installed(env, source, capsys):
    (source / "lambada_test.jsonl").write_bytes(LAMBADA.replace(b"cat", b"bat"))
    assert main(["benchmarks", "install", str(source)]) == 2
    err = _err_line(capsys)
    assert str(source / "lambada_test.jsonl") in err and "sha256" in err and "nothing installed" in err
    assert not env.exists()  # ag_news_test.csv (good) was not copied either


@pytest.mark.parametrize(
    "setup, expected",
    [
        (lambda src: src / "notes.txt", "not a known benchmark file"),  # a file named explicitly
        (lambda src: src / "missing.jsonl", "does not exist"),
        (lambda src: src.parent / "empty", "holds none of the benchmark files"),
        (lambda src: src, "ptb.test.txt: a benchmark file with no sha256"),  # a loader reads it
    ],
)
def test_unknown_files_and_bad_sources_are_named_in_one_line(env, source, capsys, setup, expected):
    (source / "notes.txt").write_text("x")
    (source.parent / "empty").mkdir()
    (source.parent / "empty" / "README.md").write_text("x")
    if "ptb" in expected:
        (source / "ptb.test.txt").write_text("it was n't\n")
    path = setup(source)
    assert main(["benchmarks", "install", str(path)]) == 2
    err = _err_line(capsys)
    assert expected in err and (path.name in err or "ptb" in expected)
    assert not env.exists()


def test_an_interrupted_copy_leaves_no_file_under_the_benchmark_name(env, source, monkeypatch):
    def boom(a, b):
        raise OSError("disk full")

    monkeypatch.setattr(bf.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        bf.install([source])
    assert list(env.iterdir()) == []  # neither the file nor its hidden tmp


def test_dest_outside_the_default_says_how_to_use_it(env, source, tmp_path, capsys):
    dest = tmp_path / "elsewhere"
    assert main(["benchmarks", "install", str(source), "--dest", str(dest)]) == 0
    assert f"pass --data-dir {dest}" in capsys.readouterr().out
    assert (dest / "ag_news_test.csv").read_bytes() == AG_NEWS
    (tmp_path / "a-file").write_text("x")
    assert main(["benchmarks", "install", str(source), "--dest", str(tmp_path / "a-file")]) == 2
    assert "is not a directory" in _err_line(capsys)


def test_list_shows_the_default_folder_and_each_file(env, source, capsys):
    assert main(["benchmarks", "list"]) == 0
    assert "none: mdm eval uses the Hugging Face Hub" in capsys.readouterr().out
    assert main(["benchmarks", "install", str(source / "lambada_test.jsonl")]) == 0
    capsys.readouterr()
    assert main(["benchmarks", "list"]) == 0
    out = capsys.readouterr().out
    assert f"{env} (the user cache)" in out
    assert [ln.split()[-1] for ln in out.splitlines()[1:]] == ["ok", "missing"]
    (env / "lambada_test.jsonl").write_bytes(b"{}\n")
    assert main(["benchmarks", "list"]) == 2
    assert "corrupt" in capsys.readouterr().out


def test_the_table_matches_the_real_files(bench_dir, tmp_path, capsys):
    """Sizes, hashes and the rows each loader yields, on the real copies; then a corrupted copy of one."""
    for kf in bf.KNOWN_FILES.values():
        path = bench_dir / kf.name
        assert path.stat().st_size == kf.size and bf.sha256_of(path) == kf.sha256, kf.name
        text = load_benchmark(kf.benchmark, split=kf.split, data_dir=bench_dir, source="local")
        assert len(text.rows) == kf.rows and text.source == str(path), kf.name
    assert main(["benchmarks", "install", str(bench_dir), "--dest", str(tmp_path / "a")]) == 0
    assert main(["benchmarks", "install", str(bench_dir), "--dest", str(tmp_path / "a")]) == 0
    assert capsys.readouterr().out.count("already installed") == len(bf.KNOWN_FILES)
    bad = tmp_path / "bad"
    bad.mkdir()
    data = bytearray((bench_dir / "wikitext2_valid.tokens").read_bytes())
    data[1000] ^= 1
    (bad / "wikitext2_valid.tokens").write_bytes(bytes(data))
    assert main(["benchmarks", "install", str(bad), "--dest", str(tmp_path / "b")]) == 2
    assert "wikitext2_valid.tokens: sha256" in _err_line(capsys)


def test_no_repository_code_or_doc_names_the_folder_outside_it():
    files = [*(REPO / "mdm").rglob("*.py"), REPO / "README.md", REPO / "Makefile", REPO / "pyproject.toml"]
    bad = [str(f.relative_to(REPO)) for f in files if "../shared" in f.read_text(encoding="utf-8")]
    assert not bad, f"these point outside the repository: {bad}"
