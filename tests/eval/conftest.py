"""Fixtures for the evaluation tests: a tiny text corpus, tiny MDLM and AR runs trained on it (once per
session), and the real benchmark files (installed from $MDM_TEST_BENCHMARK_SOURCE when set)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEBUG_YAML = REPO / "configs" / "debug.yaml"
REPO_DOWNLOADS = REPO / "data" / "cache" / "_downloads"
ENV_TEST_SOURCE = "MDM_TEST_BENCHMARK_SOURCE"  # a folder of benchmark copies the tests install from

_SUBJ = [
    "the cat",
    "a dog",
    "the old man",
    "my sister",
    "the teacher",
    "a small bird",
    "the river",
    "our friend",
]
_VERB = ["sees", "likes", "follows", "finds", "watches", "remembers", "carries", "paints"]
_OBJ = ["the red ball", "a green house", "the long road", "an old book", "the quiet garden", "her brother"]
_ADV = ["today", "slowly", "at night", "again", "in the rain", "without a word", "every morning", "with care"]


def write_corpus(path: Path, n_docs: int = 200, seed: int = 0) -> Path:
    """Simple English sentences as a jsonl corpus for data.name=files."""
    rng = random.Random(seed)
    path.mkdir(parents=True, exist_ok=True)
    with open(path / "docs.jsonl", "w") as f:
        for _ in range(n_docs):
            sents = []
            for _ in range(rng.randint(3, 8)):
                s = f"{rng.choice(_SUBJ)} {rng.choice(_VERB)} {rng.choice(_OBJ)} {rng.choice(_ADV)}."
                sents.append(s[0].upper() + s[1:])
            f.write(json.dumps({"text": " ".join(sents)}) + "\n")
    return path


def tiny_overrides(root: Path, objective: str, *extra: str) -> list[str]:
    return [
        "data.name=files",
        f"data.path={root / 'corpus'}",
        f"data.dir={root / 'data'}",
        "data.tokenizer=bpe",
        "data.vocab_size=320",
        f"objective.name={objective}",
        "train.max_steps=4",
        "train.val_every=1000",
        "train.ckpt_every=1000",
        f"train.runs_dir={root / 'runs'}",
        "train.threads=1",
        *extra,
    ]


def train_tiny(root: Path, objective: str, *extra: str) -> Path:
    import torch

    from mdm.config import load
    from mdm.rundir import RunDir
    from mdm.train import train

    cfg = load([DEBUG_YAML], tiny_overrides(root, objective, *extra))
    threads = torch.get_num_threads()
    try:
        summary = train(cfg)  # train.threads=1 sets torch's global thread count: restore it after
    finally:
        torch.set_num_threads(threads)
    assert summary["status"] == "completed"
    return RunDir.for_config(cfg).path


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models run fastest on one thread; two threads on shared, busy cores spin (~50x slower)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def eval_root(tmp_path_factory) -> Path:
    os.environ.setdefault("MDM_DOWNLOADS_DIR", str(REPO_DOWNLOADS))
    root = tmp_path_factory.mktemp("evalruns")
    write_corpus(root / "corpus")
    return root


@pytest.fixture(scope="session")
def mdlm_run(eval_root) -> Path:
    return train_tiny(eval_root, "mdlm")


@pytest.fixture(scope="session")
def ar_run(eval_root) -> Path:
    return train_tiny(eval_root, "ar")


@pytest.fixture(scope="session")
def mdlm_loaded(mdlm_run):
    from mdm.loading import load_run

    return load_run(mdlm_run)


@pytest.fixture(scope="session")
def ar_loaded(ar_run):
    from mdm.loading import load_run

    return load_run(ar_run)


@pytest.fixture(scope="session")
def tok(mdlm_loaded):
    from mdm.eval.tokenizer import run_tokenizer

    return run_tokenizer(mdlm_loaded.cfg, mdlm_loaded.vocab)


@pytest.fixture(scope="session")
def bench_dir(tmp_path_factory) -> Path:
    """The real benchmark files (mdm/eval/benchmark_files.py). With ``$MDM_TEST_BENCHMARK_SOURCE=DIR``
    (CI's .ci/run sets it) ``mdm benchmarks install DIR`` copies them into a test-local cache, and a
    failed install fails the tests that need them; without it the default benchmark directory
    (``$MDM_BENCHMARK_DIR`` or the user cache) is used when it holds them all, else those tests skip."""
    from mdm.cli import main
    from mdm.eval.benchmark_files import KNOWN_FILES
    from mdm.eval.benchmarks import default_benchmark_dir

    source = os.environ.get(ENV_TEST_SOURCE)
    if source:
        dest = tmp_path_factory.mktemp("benchmark-cache")
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            rc = main(["benchmarks", "install", source, "--dest", str(dest)])
        missing = [n for n in KNOWN_FILES if not (dest / n).is_file()]
        if rc != 0 or missing:
            pytest.fail(
                f"${ENV_TEST_SOURCE}={source}: `mdm benchmarks install` exit {rc}, missing {missing}: "
                + err.getvalue().strip()
            )
        return dest
    d = default_benchmark_dir()
    if d is None or any(not (d / n).is_file() for n in KNOWN_FILES):
        pytest.skip(
            f"benchmark files absent ({', '.join(KNOWN_FILES)}): set {ENV_TEST_SOURCE}=DIR to a folder "
            "holding them, or install them once with `mdm benchmarks install DIR`"
        )
    return d


def _write_hub_repo(root: Path, repo: str, configs: dict[str, dict[str, list[dict]]]) -> Path:
    """A local directory laid out like a Hub dataset repository: parquet files + README ``configs:``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    base = root / repo
    lines = ["---", "configs:"]
    for cfg, splits in configs.items():
        lines += [f"- config_name: {cfg}", "  data_files:"]
        for split, rows in splits.items():
            rel = f"{cfg}/{split}/0000.parquet"
            (base / rel).parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(pa.Table.from_pylist(rows), base / rel)
            lines += [f"  - split: {split}", f"    path: {rel}"]
    (base / "README.md").write_text("\n".join([*lines, "---", ""]))
    return base


@pytest.fixture
def hub_repo():
    """``hub_repo(mirror_root, "owner/name", {config: {split: rows}})`` writes a Hub-like dataset repo."""
    return _write_hub_repo
