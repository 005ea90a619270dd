"""The one-command GPU check (``bench/gpu_check.sh``, ``mdm bench gpu``, ``python -m mdm.bench_gpu``).

Sized for one H100/H200 in <= 8 minutes (default budget 420 s of phases). Phases, each under its own
time cap (``--cap PHASE=SECONDS``) and all under ``--budget`` seconds in total:

* ``peak``: the bf16 matmul peak (n x n @ n x n, best of repeated products) measured in this run;
* ``attention``: our backbone with each SDPA kernel (flash, memory-efficient, cuDNN, PyTorch's own
  choice) and the flash-attn package if importable, against the math kernel in fp32: max abs error of
  the logits and worst relative gradient error over the parameters (max |g - g_ref| / max |g_ref| per
  tensor). Tolerance: a candidate in dtype d passes when each error is <= 2 x the error of the math
  kernel in the same dtype d + ``ATOL[d]`` (bf16: 1e-2 logits and grads; fp32: 1e-4 logits, 1e-3 grads);
* ``train_eager`` / ``train_compile``: the 110M-class shape (12 x 768, L = 1024, GPT-2's 50257 real
  tokens, MDLM) on a fixed synthetic batch in bf16 autocast, without and with ``torch.compile``:
  tokens/s, MFU against the peak above, peak memory (``torch.cuda.max_memory_allocated``), compile
  (first steps) seconds and the first and last loss (one fixed batch: over a few hundred steps the
  loss should fall).

``--device cpu --tiny`` runs every phase at a tiny shape in seconds (the CPU-side tests). Results go to
``--json`` as one JSON object (schema :data:`SCHEMA`), rewritten atomically after every phase so that a
killed run still leaves what it measured. Exit 0 when every phase ran and every attention check passed,
1 otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import time
from dataclasses import asdict, dataclass, replace

SCHEMA = "mdm.bench_gpu/1"
PHASES = ("peak", "attention", "train_eager", "train_compile")
DEFAULT_CAPS = {"peak": 30.0, "attention": 90.0, "train_eager": 120.0, "train_compile": 200.0}
DEFAULT_BUDGET = 420.0
MIN_PHASE_S = 3.0  # a phase with less budget left than this is skipped
ATOL = {"bfloat16": (1e-2, 1e-2), "float32": (1e-4, 1e-3)}  # (logits max abs, grads max rel)


@dataclass(frozen=True)
class CheckShape:
    depth: int = 12
    d_model: int = 768
    head_dim: int = 64
    seq_len: int = 1024
    n_real: int = 50257  # GPT-2's vocabulary; the table is padded to a multiple of 64 (+ the mask)
    batch: int = 16  # sequences per training step
    attn_batch: int = 4  # sequences of the attention check
    steps: int = 300  # timed training steps per train phase
    warmup: int = 5  # untimed first steps (compile happens here)
    peak_n: int = 8192
    peak_s: float = 3.0


TINY = CheckShape(
    depth=2, d_model=64, head_dim=32, seq_len=32, n_real=300, batch=2, attn_batch=2, steps=3, warmup=1,
    peak_n=128, peak_s=0.2,
)  # fmt: skip


class PhaseTimeout(Exception):
    pass


@contextlib.contextmanager
def time_cap(seconds: float):
    """Raise PhaseTimeout in the main thread after ``seconds`` (a hard cap, compile included)."""
    if seconds <= 0:
        raise PhaseTimeout("no time left")

    def fire(signum, frame):
        raise PhaseTimeout(f"over its cap of {seconds:.0f} s")

    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


# ---- arguments --------------------------------------------------------------------------------------------
def parse_caps(items: list[str]) -> dict[str, float]:
    caps = dict(DEFAULT_CAPS)
    for item in items:
        name, sep, val = item.partition("=")
        if not sep or name not in PHASES:
            raise SystemExit(f"mdm bench gpu: --cap wants PHASE=SECONDS with PHASE in {PHASES}, got {item!r}")
        try:
            caps[name] = float(val)
        except ValueError:
            raise SystemExit(f"mdm bench gpu: --cap {name} wants seconds, got {val!r}") from None
        if not caps[name] > 0:
            raise SystemExit(f"mdm bench gpu: --cap {name} must be positive, got {val!r}")
    return caps


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mdm bench gpu", description=__doc__.splitlines()[0])
    p.add_argument("--json", required=True, help="where the results go (e.g. $OUT/gpu_check.json)")
    p.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    p.add_argument("--tiny", action="store_true", help="a tiny shape (seconds on a CPU)")
    p.add_argument("--budget", type=float, default=DEFAULT_BUDGET, help="total seconds for all phases")
    p.add_argument("--cap", action="append", default=[], metavar="PHASE=S", help="one phase's time cap")
    p.add_argument("--phases", default=",".join(PHASES), help=f"comma-separated subset of {PHASES}")
    p.add_argument("--steps", type=int, default=None, help="timed steps per train phase")
    p.add_argument("--batch", type=int, default=None, help="sequences per training step")
    p.add_argument("--compile-backend", default="inductor", help="torch.compile backend (tests: eager)")
    return p


def parse_args(argv: list[str]) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    phases = tuple(s.strip() for s in args.phases.split(",") if s.strip())
    bad = [s for s in phases if s not in PHASES]
    if bad or not phases:
        raise SystemExit(f"mdm bench gpu: --phases wants a subset of {PHASES}, got {args.phases!r}")
    args.phases = phases
    args.caps = parse_caps(args.cap)
    if not args.budget > 0:
        raise SystemExit(f"mdm bench gpu: --budget must be positive, got {args.budget}")
    if args.device not in ("cuda", "cpu"):
        raise SystemExit(f"mdm bench gpu: --device must be cuda or cpu, got {args.device!r}")
    for flag in ("steps", "batch"):
        v = getattr(args, flag)
        if v is not None and v < 1:
            raise SystemExit(f"mdm bench gpu: --{flag} must be >= 1, got {v}")
    shape = TINY if args.tiny else CheckShape()
    if args.steps is not None:
        shape = replace(shape, steps=args.steps)
    if args.batch is not None:
        shape = replace(shape, batch=args.batch)
    args.shape = shape
    return args


# ---- the model ----------------------------------------------------------------------------------------------
def _setup(shape: CheckShape, device, batch: int):
    import torch

    from mdm.config import load
    from mdm.loading import build_objective
    from mdm.module import build_model
    from mdm.vocab import Vocab

    cfg = load(
        [],
        [
            "objective.name=mdlm",
            f"model.depth={shape.depth}",
            f"model.d_model={shape.d_model}",
            f"model.head_dim={shape.head_dim}",
            f"model.seq_len={shape.seq_len}",
            "model.attn_backend=sdpa",
            f"train.global_batch={batch}",
        ],
    )
    size = -(-(shape.n_real + 1) // 64) * 64
    vocab = Vocab(size=size, mask_id=shape.n_real)
    torch.manual_seed(0)
    objective = build_objective(cfg, vocab)
    model = build_model(cfg, objective, vocab).to(device)
    return cfg, vocab, objective, model


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def _mem_reset(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()


def _mem_peak(device) -> int | None:
    import torch

    return int(torch.cuda.max_memory_allocated()) if device.type == "cuda" else None


def amp_dtype(device):
    """bf16 autocast on CUDA and on a CPU that runs bf16 matmuls; else None (fp32)."""
    import torch

    from mdm.bench import cpu_bf16_ok

    return torch.bfloat16 if device.type == "cuda" or cpu_bf16_ok() else None


# ---- phases -------------------------------------------------------------------------------------------------
def phase_peak(shape: CheckShape, device, ctx: dict) -> dict:
    import torch

    from mdm.bench import matmul_peak

    dtype = torch.bfloat16 if amp_dtype(device) is not None else torch.float32
    peak = matmul_peak(device, dtype, n=shape.peak_n, seconds=shape.peak_s)
    ctx["peak"] = peak
    return {"dtype": str(dtype).removeprefix("torch."), "n": shape.peak_n, "flops_per_s": peak}


def _sdpa_candidates(device) -> list[tuple[str, object]]:
    from torch.nn.attention import SDPBackend

    names = ["FLASH_ATTENTION", "EFFICIENT_ATTENTION", "CUDNN_ATTENTION"]
    out = [(n.lower(), getattr(SDPBackend, n)) for n in names if hasattr(SDPBackend, n)]
    return out + [("sdpa_auto", None)]


def _errors(ref: tuple, got: tuple) -> tuple[float, float]:
    (lr, gr), (lg, gg) = ref, got
    logits = float((lg - lr).abs().max())
    worst = 0.0
    for name, g in gr.items():
        scale = float(g.abs().max())
        if scale > 0:
            worst = max(worst, float((gg[name] - g).abs().max()) / scale)
    return logits, worst


def phase_attention(shape: CheckShape, device, ctx: dict) -> dict:
    import torch
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from mdm.models.attention import SelfAttention, flash_available

    _, vocab, _, model = _setup(shape, device, shape.attn_batch)
    attn = [m for m in model.modules() if isinstance(m, SelfAttention)]
    g = torch.Generator().manual_seed(1)
    B, L = shape.attn_batch, shape.seq_len
    x = torch.randint(0, vocab.mask_id, (B, L), generator=g).to(device)
    target = torch.randint(0, vocab.mask_id, (B, L), generator=g).to(device)
    sigma = torch.rand(B, generator=g).to(device) if model.time_conditioning else None

    def run(kernel, dtype, backend="sdpa"):
        for m in attn:
            m.backend = backend
        model.zero_grad(set_to_none=True)
        kern = sdpa_kernel([kernel]) if kernel is not None else contextlib.nullcontext()
        with kern, torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            logits = model(x, sigma)
            loss = F.cross_entropy(logits.float().flatten(0, 1), target.flatten())
        loss.backward()
        grads = {
            n: p.grad.detach().float().clone() for n, p in model.named_parameters() if p.grad is not None
        }
        return logits.detach().float(), grads

    dtype = amp_dtype(device)
    dname = str(dtype or torch.float32).removeprefix("torch.")
    atol_logits, atol_grads = ATOL[dname]
    ref = run(SDPBackend.MATH, None)
    floor = _errors(ref, run(SDPBackend.MATH, dtype)) if dtype is not None else (0.0, 0.0)
    rows: dict[str, dict] = {}
    cands: list[tuple[str, object, str]] = [(n, k, "sdpa") for n, k in _sdpa_candidates(device)]
    if flash_available():
        cands.append(("flash_attn_package", None, "flash"))
    for name, kernel, backend in cands:
        try:
            got = run(kernel, dtype, backend)
        except PhaseTimeout:
            raise
        except Exception as e:  # a kernel this device/dtype/shape does not support
            rows[name] = {"status": "unavailable", "error": _one_line(e)}
            continue
        le, ge = _errors(ref, got)
        tol_l, tol_g = 2 * floor[0] + atol_logits, 2 * floor[1] + atol_grads
        rows[name] = {
            "status": "ok",
            "logits_max_abs_err": le,
            "grads_max_rel_err": ge,
            "tol_logits": tol_l,
            "tol_grads": tol_g,
            "passed": bool(le <= tol_l and ge <= tol_g),
        }
    for m in attn:
        m.backend = "sdpa"
    ran = [r for r in rows.values() if r["status"] == "ok"]
    return {
        "dtype": dname,
        "reference": "math kernel, float32",
        "math_same_dtype": {"logits_max_abs_err": floor[0], "grads_max_rel_err": floor[1]},
        "candidates": rows,
        "passed": bool(ran) and all(r["passed"] for r in ran),
    }


def phase_train(shape: CheckShape, device, ctx: dict, compiled: bool, backend: str, deadline: float) -> dict:
    import torch

    from mdm.flops import count
    from mdm.optim import build_optimizer

    cfg, _, objective, model = _setup(shape, device, shape.batch)
    opt = build_optimizer(model, cfg.optim)
    net = torch.compile(model, backend=backend) if compiled else model
    g = torch.Generator().manual_seed(2)
    ids = torch.randint(0, shape.n_real, (shape.batch, shape.seq_len), generator=g)  # real tokens only
    batch = {"input_ids": ids.to(device)}
    dtype = amp_dtype(device)
    clip = cfg.optim.grad_clip
    c = count(model)
    tokens_per_step = shape.batch * shape.seq_len  # MDLM: the network runs on every position

    def step():
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            out = objective.loss(net, batch)
            loss = out.sum / out.count
        loss.backward()
        if clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.detach()

    _mem_reset(device)
    t0 = time.perf_counter()
    first = [step() for _ in range(shape.warmup)]
    _sync(device)
    warm_s = time.perf_counter() - t0
    losses = []
    t1 = time.perf_counter()
    for _ in range(shape.steps):
        losses.append(step())
        if time.perf_counter() > deadline:  # stop early, keep what was timed
            break
    _sync(device)
    dt = time.perf_counter() - t1
    tps = len(losses) * tokens_per_step / dt
    peak = ctx.get("peak")
    return {
        "compiled": compiled,
        "compile_backend": backend if compiled else None,
        "dtype": str(dtype or torch.float32).removeprefix("torch."),
        "batch": shape.batch,
        "seq_len": shape.seq_len,
        "params_total": c.params_total,
        "flops_per_token": c.flops_per_token,
        "warmup_steps": shape.warmup,
        "warmup_s": warm_s,
        "steps": len(losses),
        "steps_asked": shape.steps,
        "seconds": dt,
        "tokens_per_s": tps,
        "mfu": tps * c.flops_per_token / peak if peak else None,
        "peak_memory_bytes": _mem_peak(device),
        "loss_first": float(first[0]) if first else float(losses[0]),
        "loss_last": float(losses[-1]),
    }


# ---- the run -------------------------------------------------------------------------------------------------
def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"[:300]


def device_info(device) -> dict:
    import platform

    import torch

    info = {"type": device.type, "torch": torch.__version__, "python": platform.python_version()}
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(0)
        info.update(
            name=p.name,
            capability=f"{p.major}.{p.minor}",
            memory_bytes=int(p.total_memory),
            cuda=torch.version.cuda,
            multiprocessors=p.multi_processor_count,
        )
    else:
        info.update(name=platform.processor() or platform.machine(), threads=torch.get_num_threads())
    try:
        import flash_attn  # type: ignore[import-not-found]

        info["flash_attn"] = getattr(flash_attn, "__version__", "?")
    except Exception:
        info["flash_attn"] = None
    return info


def _write(path: str, result: dict) -> None:
    from mdm.io import atomic_write_text

    atomic_write_text(path, json.dumps(result, indent=1, allow_nan=False, default=str) + "\n")


def _summary(name: str, r: dict) -> str:
    if r["status"] != "ok":
        return f"{name:14s} {r['status']}: {r.get('error', '')}"
    if name == "peak":
        return f"{name:14s} {r['dtype']} matmul n={r['n']}: {r['flops_per_s'] / 1e12:.1f} TFLOP/s"
    if name == "attention":
        parts = []
        for k, c in r["candidates"].items():
            if c["status"] == "ok":
                verdict = "ok" if c["passed"] else "FAIL"
                parts.append(
                    f"{k} {verdict} (logits {c['logits_max_abs_err']:.2e}, grads {c['grads_max_rel_err']:.2e})"
                )
            else:
                parts.append(f"{k} unavailable")
        floor = r["math_same_dtype"]
        return (
            f"{name:14s} vs math fp32, {r['dtype']} math floor (logits {floor['logits_max_abs_err']:.2e}, "
            f"grads {floor['grads_max_rel_err']:.2e}): " + "; ".join(parts)
        )
    mem = r["peak_memory_bytes"]
    mfu = r["mfu"]
    return (
        f"{name:14s} {r['tokens_per_s']:,.0f} tokens/s over {r['steps']} steps, MFU "
        f"{'n/a' if mfu is None else f'{100 * mfu:.1f}%'}, peak memory "
        f"{'n/a' if mem is None else f'{mem / 2**30:.2f} GiB'}, warm-up {r['warmup_s']:.1f} s, "
        f"loss {r['loss_first']:.3f} -> {r['loss_last']:.3f}"
    )


def run_check(args: argparse.Namespace) -> dict:
    import torch

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(
            "mdm bench gpu: --device cuda but torch sees no CUDA device (use --device cpu --tiny)"
        )
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False  # the fp32 math reference stays fp32
        torch.backends.cudnn.allow_tf32 = False
    start = time.perf_counter()
    result = {
        "schema": SCHEMA,
        "device": device_info(device),
        "shape": asdict(args.shape),
        "tiny": bool(args.tiny),
        "budget_s": args.budget,
        "caps_s": {k: args.caps[k] for k in args.phases},
        "phases": {},
        "elapsed_s": 0.0,
        "ok": False,
    }
    ctx: dict = {}
    for name in args.phases:
        left = args.budget - (time.perf_counter() - start)
        cap = min(args.caps[name], left)
        t0 = time.perf_counter()
        if left < MIN_PHASE_S:
            r = {"status": "skipped", "error": f"{left:.0f} s of the budget left"}
        else:
            try:
                with time_cap(cap):
                    if name == "peak":
                        r = phase_peak(args.shape, device, ctx)
                    elif name == "attention":
                        r = phase_attention(args.shape, device, ctx)
                    else:
                        # stop timing steps with 15% of the cap (at most 20 s) left for the final sync
                        deadline = t0 + cap - min(20.0, 0.15 * cap)
                        compiled = name == "train_compile"
                        r = phase_train(args.shape, device, ctx, compiled, args.compile_backend, deadline)
                r["status"] = "ok"
            except PhaseTimeout as e:
                r = {"status": "timeout", "error": str(e)}
            except Exception as e:  # a failed phase is a result; the next phases still run
                r = {"status": "failed", "error": _one_line(e)}
        r["cap_s"] = cap
        r["phase_s"] = time.perf_counter() - t0
        result["phases"][name] = r
        result["elapsed_s"] = time.perf_counter() - start
        print(_summary(name, r), flush=True)
        _write(args.json, result)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    phases = result["phases"].values()
    att = result["phases"].get("attention")
    result["ok"] = all(r["status"] == "ok" for r in phases) and (att is None or att["passed"])
    _write(args.json, result)
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else list(argv))
    result = run_check(args)
    print(f"gpu check: {'ok' if result['ok'] else 'NOT ok'} in {result['elapsed_s']:.0f} s -> {args.json}")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
