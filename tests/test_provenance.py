"""Provenance in run summaries: git_sha marks a dirty tree; the scaling reader takes train.py's keys."""

from __future__ import annotations

import json
import subprocess

from mdm.rundir import git_sha
from scaling.results import load_run_histories


def _git(cwd, *args):
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd, check=True, capture_output=True
    )


def test_git_sha_dirty_flag(tmp_path):
    assert git_sha(tmp_path) is None  # not a repository
    _git(tmp_path, "init", "-q")
    (tmp_path / "a.txt").write_text("one\n")
    _git(tmp_path, "add", "a.txt")
    _git(tmp_path, "commit", "-q", "-m", "one")
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True
    ).stdout.strip()
    assert git_sha(tmp_path) == head and len(head) == 40
    (tmp_path / "new.txt").write_text("untracked\n")
    assert git_sha(tmp_path) == head  # untracked files do not make the tree dirty
    (tmp_path / "a.txt").write_text("two\n")
    assert git_sha(tmp_path) == f"{head}-dirty"


def _run(root, dirname, **summary):
    d = root / dirname
    d.mkdir()
    (d / "summary.json").write_text(json.dumps({"params_non_embedding": 10, **summary}))
    (d / "metrics.jsonl").write_text(json.dumps({"step": 1, "tokens": 100, "loss": 3.0}) + "\n")
    return d


def test_results_read_run_name_and_family_with_old_keys_as_fallback(tmp_path):
    new = _run(tmp_path, "dir_new", run_name="mdlm-abc", family="ccdd", objective="mdlm", name="old")
    old = _run(tmp_path, "dir_old", name="old-name", objective="radd")
    bare = _run(tmp_path, "dir_bare")
    h = load_run_histories([new, old, bare])
    assert h["name"].tolist() == ["mdlm-abc", "old-name", "dir_bare"]
    assert h["family"].tolist()[:2] == ["ccdd", "radd"]
