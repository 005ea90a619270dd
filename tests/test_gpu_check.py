"""The GPU check (mdm/bench_gpu.py, bench/gpu_check.sh) on CPU: arguments, a tiny run of every phase,
the JSON it writes, and that bench/gpu_wheels.txt covers what the check imports beyond the GPU image."""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mdm import bench_gpu as bg

ROOT = Path(__file__).resolve().parents[1]
TINY_ARGS = ["--device", "cpu", "--tiny", "--compile-backend", "eager"]


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


# ---- arguments ------------------------------------------------------------------------------------------------
def test_defaults_are_the_110m_shape_within_8_minutes():
    a = bg.parse_args(["--json", "x.json"])
    s = a.shape
    assert (s.depth, s.d_model, s.seq_len, s.n_real) == (12, 768, 1024, 50257)
    assert a.device == "cuda" and a.phases == bg.PHASES
    assert a.budget == bg.DEFAULT_BUDGET and a.budget + 30 <= 8 * 60  # ~30 s for start-up and imports
    assert sum(a.caps.values()) >= a.budget  # the budget, not the caps, is what binds


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--cap", "peak"], "PHASE=SECONDS"),
        (["--cap", "warp=3"], "PHASE=SECONDS"),
        (["--cap", "peak=abc"], "--cap peak wants seconds"),
        (["--cap", "peak=0"], "--cap peak must be positive"),
        (["--phases", "peak,nope"], "--phases wants a subset"),
        (["--phases", ","], "--phases wants a subset"),
        (["--budget", "0"], "--budget must be positive"),
        (["--device", "tpu"], "--device must be cuda or cpu"),
        (["--steps", "0"], "--steps must be >= 1"),
        (["--batch", "-1"], "--batch must be >= 1"),
    ],
)
def test_bad_arguments_say_which(argv, message):
    with pytest.raises(SystemExit, match=re.escape(message)):
        bg.parse_args(["--json", "x.json", *argv])


def test_overrides_land():
    a = bg.parse_args(["--json", "x", "--tiny", "--steps", "7", "--batch", "3", "--cap", "attention=12.5"])
    assert (a.shape.steps, a.shape.batch, a.shape.depth) == (7, 3, bg.TINY.depth)
    assert a.caps["attention"] == 12.5 and a.caps["peak"] == bg.DEFAULT_CAPS["peak"]


def test_json_is_required():
    with pytest.raises(SystemExit):
        bg.parse_args(["--tiny"])


def test_cuda_without_a_gpu_is_a_clear_error(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is here")
    with pytest.raises(SystemExit, match="sees no CUDA device"):
        bg.main(["--json", str(tmp_path / "r.json"), "--tiny"])


# ---- caps and budget -------------------------------------------------------------------------------------------
def test_time_cap_fires_and_clears():
    import time

    with pytest.raises(bg.PhaseTimeout):
        with bg.time_cap(0.05):
            time.sleep(1)
    with bg.time_cap(5):  # no alarm left behind
        pass
    time.sleep(0.1)


def test_a_phase_over_its_cap_is_recorded_and_the_rest_run(tmp_path, monkeypatch):
    import time

    def slow(shape, device, ctx):
        time.sleep(10)

    monkeypatch.setattr(bg, "phase_peak", slow)
    out = tmp_path / "r.json"
    args = bg.parse_args(
        ["--json", str(out), *TINY_ARGS, "--phases", "peak,train_eager", "--cap", "peak=0.3"]
    )
    r = bg.run_check(args)
    assert r["phases"]["peak"]["status"] == "timeout"
    t = r["phases"]["train_eager"]
    assert t["status"] == "ok" and t["mfu"] is None  # no peak measured: no MFU, not a made-up one
    assert r["ok"] is False
    assert json.loads(out.read_text()) == json.loads(json.dumps(r))


def test_budget_spent_skips_the_remaining_phases(tmp_path, monkeypatch):
    import time

    def slow(shape, device, ctx):
        time.sleep(1.5)
        return {"dtype": "float32", "n": 1, "flops_per_s": 1.0}

    monkeypatch.setattr(bg, "phase_peak", slow)
    args = bg.parse_args(
        ["--json", str(tmp_path / "r.json"), *TINY_ARGS, "--budget", "4", "--phases", "peak,attention"]
    )
    r = bg.run_check(args)
    assert r["phases"]["peak"]["status"] == "ok"
    assert r["phases"]["attention"]["status"] == "skipped"
    assert r["ok"] is False


# ---- a tiny run of every phase, and its JSON -----------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu") / "gpu_check.json"
    p = subprocess.run(
        [sys.executable, "-m", "mdm.bench_gpu", "--json", str(out), *TINY_ARGS],
        cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    return p, json.loads(out.read_text())


def test_tiny_run_passes_and_prints_one_line_per_phase(tiny_run):
    p, r = tiny_run
    assert p.returncode == 0, p.stdout + p.stderr
    lines = p.stdout.splitlines()
    for name in bg.PHASES:
        assert any(line.startswith(name) for line in lines), name
    assert "gpu check: ok" in lines[-1]


def test_json_schema(tiny_run):
    _, r = tiny_run
    assert r["schema"] == bg.SCHEMA and r["ok"] is True and r["tiny"] is True
    assert set(r) == {"schema", "device", "shape", "tiny", "budget_s", "caps_s", "phases", "elapsed_s", "ok"}
    assert r["device"]["type"] == "cpu" and r["device"]["torch"]
    assert list(r["phases"]) == list(bg.PHASES)
    for ph in r["phases"].values():
        assert ph["status"] == "ok" and ph["phase_s"] <= ph["cap_s"]
    assert r["elapsed_s"] <= r["budget_s"]
    peak = r["phases"]["peak"]
    assert peak["flops_per_s"] > 0
    att = r["phases"]["attention"]
    assert att["passed"] is True and att["reference"] == "math kernel, float32"
    assert att["candidates"]["sdpa_auto"]["status"] == "ok"  # PyTorch's own choice always runs
    for c in att["candidates"].values():
        assert c["status"] in ("ok", "unavailable")
        if c["status"] == "ok":
            assert c["logits_max_abs_err"] <= c["tol_logits"] and c["grads_max_rel_err"] <= c["tol_grads"]
    for name in ("train_eager", "train_compile"):
        t = r["phases"][name]
        assert t["compiled"] is (name == "train_compile")
        assert t["steps"] == t["steps_asked"] == bg.TINY.steps
        assert t["tokens_per_s"] > 0 and 0 < t["mfu"]
        assert t["peak_memory_bytes"] is None  # CPU: no CUDA allocator to ask
        assert t["flops_per_token"] > 6 * t["params_total"] / 2  # embeddings aside, >= 6N-ish
    e, c = r["phases"]["train_eager"], r["phases"]["train_compile"]
    # the same seed, batch and noise: the compiled step (eager backend) computes the same losses
    assert e["loss_first"] == pytest.approx(c["loss_first"], rel=1e-5)
    assert e["loss_last"] == pytest.approx(c["loss_last"], rel=1e-4)


def test_attention_check_catches_a_wrong_kernel(monkeypatch):
    """A candidate that differs from the math kernel must fail: the check can fail."""
    import torch
    import torch.nn.functional as F

    real = F.scaled_dot_product_attention

    def wrong(q, k, v, **kw):
        from torch.nn.attention import SDPBackend, _cur_sdpa_kernel_backends

        out = real(q, k, v, **kw)
        backends = _cur_sdpa_kernel_backends()
        return out if backends == [SDPBackend.MATH] else out * 1.1

    monkeypatch.setattr(F, "scaled_dot_product_attention", wrong)
    r = bg.phase_attention(bg.TINY, torch.device("cpu"), {})
    assert r["passed"] is False
    assert r["candidates"]["sdpa_auto"]["passed"] is False


def test_gpu_check_sh_runs_the_tiny_check(tmp_path):
    p = subprocess.run(
        ["bash", "bench/gpu_check.sh", "", *TINY_ARGS, "--phases", "peak"],
        cwd=ROOT, env={**_env(), "OUT": str(tmp_path), "PYTHON": sys.executable}, capture_output=True,
        text=True, timeout=300,
    )  # fmt: skip
    assert p.returncode == 0, p.stdout + p.stderr
    r = json.loads((tmp_path / "gpu_check.json").read_text())
    assert list(r["phases"]) == ["peak"] and r["ok"] is True


def test_mdm_bench_gpu_and_train_flags(tmp_path):
    from mdm.cli import build_parser
    from mdm.commands import bench as bench_cmd

    out = tmp_path / "r.json"
    argv = ["bench", "gpu", *TINY_ARGS, "--phases", "peak", "--json", str(out)]
    args = build_parser(argv).parse_args(argv)
    assert bench_cmd.run(args) == 0 and json.loads(out.read_text())["phases"]["peak"]["status"] == "ok"
    argv = ["bench", "train", "--widths", "96", "--steps", "2"]  # train's flags still parse after 'train'
    args = build_parser(argv).parse_args(argv)
    with pytest.raises(SystemExit, match="--rounds must be >= 1"):
        args.rest += ["--rounds", "0"]
        bench_cmd.run(args)
    assert args.widths == "96" and args.steps == 2


# ---- the wheel list covers what the check imports ------------------------------------------------------------
IMAGE_ROOTS = ("torch", "triton", "lightning")  # what the GPU image is relied on to hold
# imported under try/except ImportError; the traced run blocks them, proving the check runs without
OPTIONAL = {
    "flash_attn": "flash-attn",  # mdm.models.attention and the check's device info (the GPU extra)
    "attr": "attrs",  # omegaconf._utils
}

_TRACE = textwrap.dedent(
    """
    import builtins, json, sys
    edges = set()
    real = builtins.__import__
    def hook(name, globals=None, locals=None, fromlist=(), level=0):
        if level == 0 and globals is not None:
            edges.add(((globals.get("__name__") or "").split(".")[0], name.split(".")[0]))
        return real(name, globals, locals, fromlist, level)
    builtins.__import__ = hook
    for mod in json.loads(sys.argv[2]):
        sys.modules[mod] = None  # import raises ImportError
    from mdm import bench_gpu
    code = bench_gpu.main(sys.argv[3:])
    json.dump(sorted(edges), open(sys.argv[1], "w"))
    sys.exit(code)
    """
)


def _closure(roots) -> set[str]:
    """Distributions ``roots`` need (their requirements, transitively, extras left out)."""
    from packaging.requirements import Requirement

    seen, todo = set(), [_norm(r) for r in roots]
    while todo:
        d = todo.pop()
        if d in seen:
            continue
        seen.add(d)
        try:
            reqs = md.requires(d) or []
        except md.PackageNotFoundError:
            continue
        for text in reqs:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(_norm(req.name))
    return seen


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _wheel_names() -> set[str]:
    lines = (ROOT / "bench" / "gpu_wheels.txt").read_text().splitlines()
    return {
        _norm(re.split(r"[<>=!~ ;\[]", s.split("#")[0].strip())[0]) for s in lines if s.split("#")[0].strip()
    }


def test_wheel_list_covers_the_checks_imports(tmp_path):
    edges_file = tmp_path / "edges.json"
    p = subprocess.run(
        [sys.executable, "-c", _TRACE, str(edges_file), json.dumps(sorted(OPTIONAL)), "--json", str(tmp_path / "r.json"), *TINY_ARGS],
        cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert p.returncode == 0, p.stdout + p.stderr
    edges = [tuple(e) for e in json.loads(edges_file.read_text())]
    std = set(sys.stdlib_module_names) | {"", "__main__", "builtins"}
    dists = md.packages_distributions()
    image, wheels = _closure(IMAGE_ROOTS), _wheel_names()
    assert wheels, "bench/gpu_wheels.txt lists nothing"

    def dist(mod: str) -> str:
        return _norm(dists.get(mod, [mod])[0])

    # walk from mdm: what mdm imports, and what a wheel package imports in turn; an image package's own
    # imports are the image's business
    needed, todo, seen = set(), ["mdm"], set()
    while todo:
        mod = todo.pop()
        if mod in seen:
            continue
        seen.add(mod)
        for src, dst in edges:
            if src != mod or dst in std or dst in OPTIONAL or dst == "mdm" or dst.startswith("_"):
                continue
            d = dist(dst)
            needed.add(d)
            if d not in image:
                todo.append(dst)
    missing = sorted(d for d in needed if d not in image and d not in wheels)
    assert not missing, (
        f"imported by the GPU check but neither in the image nor in bench/gpu_wheels.txt: {missing}"
    )
    assert "omegaconf" in needed  # the walk saw the config's import (it can find something)
    unused = sorted(w for w in wheels if w not in needed)
    assert not unused, f"bench/gpu_wheels.txt lists what the check never imports: {unused}"


def test_gpu_wheels_sh_downloads_for_cp312_manylinux():
    text = (ROOT / "bench" / "gpu_wheels.sh").read_text()
    for flag in ("--only-binary=:all:", "--python-version 3.12", "manylinux2014_x86_64", "gpu_wheels.txt"):
        assert flag in text
    assert "pip install --no-index --find-links bench/.gpu_wheels" in text
    assert "/bench/.gpu_wheels/" in (ROOT / ".gitignore").read_text()
