"""``mdm bench train``: training throughput and MFU of small models, robust to a shared machine.

What one run measures, at each width (``--widths``, default 64 and 128) and thread count (``--threads``):

* **bare**: the module's training step alone (objective loss as sum / count, backward, gradient
  clipping, fused AdamW) on a fixed batch;
* **full**: the whole ``mdm train`` loop (Lightning Trainer, our module, data loader, EMA, logging,
  metrics rows) at the same shape on synthetic data, timed in windows of steady-state steps taken
  INTERLEAVED with bare windows inside the same run (start-up, validation and checkpoints excluded);
* **ours(ar)** vs **minimal(ar)**: our AR step against the plainest GPT of the same shape and FLOPs
  (``mdm.bench_minimal``), interleaved window by window;
* the thread layout: aggregate tokens/s of two concurrent one-thread processes against one two-thread
  process (bare step), alternated;
* precision: fp32 against bf16 autocast (bare step), interleaved.

Every rate is the best window (the one least disturbed by other processes); every ratio is the median
of per-round ratios of adjacent windows, the order alternating. GFLOP/s = tokens/s x training
FLOPs/token (mdm.flops); MFU is against a large-matmul peak in the same dtype re-measured just before
each row (the peak of a shared machine moves by 2x within minutes).
"""

from __future__ import annotations

import contextlib
import io
import logging
import multiprocessing as mp
import os
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from mdm.config import Config, load
from mdm.flops import count
from mdm.loading import build_objective
from mdm.module import build_model
from mdm.optim import build_optimizer
from mdm.vocab import Vocab


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int = 2048, seconds: float = 2.0) -> float:
    """Best observed FLOP/s of an (n x n) @ (n x n) matmul (2 n^3 FLOPs)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    _sync(device)
    best, spent = 0.0, 0.0
    while spent < seconds:
        t0 = time.perf_counter()
        a @ b
        _sync(device)
        dt = time.perf_counter() - t0
        spent += dt
        best = max(best, 2 * n**3 / dt)
    return best


def row_peak(dtype: torch.dtype, device: torch.device | None = None) -> float:
    """The peak re-measured beside a row: short, so it can be taken before every row."""
    return matmul_peak(device or torch.device("cpu"), dtype, n=1536, seconds=0.4)


def cpu_bf16_ok() -> bool:
    try:
        a = torch.randn(64, 64, dtype=torch.bfloat16)
        (a @ a).sum().item()
        return True
    except RuntimeError:
        return False


_cpu_bf16_ok = cpu_bf16_ok  # old name


# ---- the shape and its config --------------------------------------------------------------------------
@dataclass(frozen=True)
class Shape:
    width: int = 64
    depth: int = 2
    head_dim: int = 32
    seq_len: int = 64
    batch: int = 32
    vocab: int = 256  # real tokens of the synthetic source (the model's vocabulary is padded to 64)
    activation: str = "gelu"


def bench_config(
    shape: Shape, objective: str, data_dir: Path, runs_dir: Path, threads: int, max_steps: int = 10
) -> Config:
    """The run ``mdm train`` would do at this shape on the synthetic source (also used for the bare step)."""
    return load(
        [],
        [
            f"objective.name={objective}",
            "data.name=synthetic",
            f"data.synthetic.vocab={shape.vocab}",
            "data.synthetic.num_tokens=200000",
            "data.synthetic.eval_tokens=8192",
            f"data.dir={data_dir}",
            f"model.depth={shape.depth}",
            f"model.d_model={shape.width}",
            f"model.head_dim={shape.head_dim}",
            f"model.seq_len={shape.seq_len}",
            f"model.activation={shape.activation}",
            "model.cond_dim=32",
            f"train.global_batch={shape.batch}",
            f"train.max_steps={max_steps}",
            "train.val_every=1000000000",
            "train.val_batches=1",
            "train.ckpt_every=1000000000",
            "train.keep_periodic=false",
            f"train.threads={threads}",
            "train.precision=32-true",
            "train.accelerator=cpu",
            f"train.runs_dir={runs_dir}",
            f"eval.batch_size={shape.batch}",
            "logging.progress_bar=false",
        ],
    )


def prepared_vocab(cfg: Config) -> Vocab:
    from mdm.data.datamodule import ensure_prepared
    from mdm.data.meta import load_meta

    return Vocab.from_meta(load_meta(ensure_prepared(cfg.data, progress=False)))


# ---- timed steps ---------------------------------------------------------------------------------------
class BareStep:
    """The module's training step alone on a fixed batch: loss, backward, clipping, fused AdamW."""

    def __init__(
        self,
        cfg: Config,
        vocab: Vocab,
        autocast: torch.dtype | None = None,
        seed: int = 0,
        device: torch.device | None = None,
        compile: bool = False,
    ):
        torch.manual_seed(seed)
        self.device = device or torch.device("cpu")
        self.objective = build_objective(cfg, vocab)
        self.model = build_model(cfg, self.objective, vocab).to(self.device)
        self.opt = build_optimizer(self.model, cfg.optim)
        if compile:  # as train.compile does (mdm/module.py): the network, in place
            self.model.compile()
        self.autocast, self.clip = autocast, cfg.optim.grad_clip
        B, L = cfg.train.global_batch, cfg.model.seq_len
        self.batch = {"input_ids": torch.randint(0, vocab.mask_id, (B, L), device=self.device)}
        c = count(self.model)
        self.flops_per_token, self.params_total = c.flops_per_token, c.params_total
        self.tokens_per_step = (
            B * (L - 1) if self.objective.causal else B * L
        )  # positions the network runs on

    def step(self) -> None:
        with torch.autocast(self.device.type, dtype=self.autocast, enabled=self.autocast is not None):
            out = self.objective.loss(self.model, self.batch)
            loss = out.sum / out.count
        loss.backward()
        if self.clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)

    def window(self, steps: int) -> float:
        """Seconds for ``steps`` steps."""
        with torch.enable_grad():
            _sync(self.device)
            t0 = time.perf_counter()
            for _ in range(steps):
                self.step()
            _sync(self.device)
            return time.perf_counter() - t0


@dataclass
class TrainBench:
    width: int
    depth: int
    params_total: int
    flops_per_token: float
    tokens_per_s: float
    mfu: float


def bench_train_step(
    cfg: Config,
    device: torch.device,
    peak: float,
    steps: int = 10,
    warmup: int = 3,
    autocast: torch.dtype | None = None,
    repeats: int = 3,
) -> TrainBench:
    """Best-of-``repeats`` tokens/s of the bare step for any config (vocabulary: data.vocab_size + 64)."""
    vocab = Vocab(size=cfg.data.vocab_size + 64, mask_id=cfg.data.vocab_size)
    s = BareStep(cfg, vocab, autocast=autocast, device=device)
    s.window(warmup)
    tps = max(steps * s.tokens_per_step / s.window(steps) for _ in range(repeats))
    m = s.model.dims
    return TrainBench(
        m.d_model, m.depth, s.params_total, s.flops_per_token, tps, tps * s.flops_per_token / peak
    )


class MinimalStep:
    """The minimal GPT's AR step at the shape of ``ours`` (same matmul weights, so same FLOPs/token)."""

    def __init__(self, ours: BareStep, seed: int = 0):
        from mdm.bench_minimal import build_minimal

        torch.manual_seed(seed)
        m = ours.model
        d = m.dims
        self.model, self.opt = build_minimal(
            m.vocab_size, d.d_model, d.depth, d.n_heads, d.seq_len, d.d_mlp // d.d_model, m.cfg.tie_embeddings
        )
        self.x = ours.batch["input_ids"]
        self.flops_per_token, self.tokens_per_step = ours.flops_per_token, ours.tokens_per_step
        self.params_total = sum(p.numel() for p in self.model.parameters())

    def window(self, steps: int) -> float:
        from mdm.bench_minimal import minimal_train_step

        t0 = time.perf_counter()
        for _ in range(steps):
            minimal_train_step(self.model, self.opt, self.x)
        return time.perf_counter() - t0


def interleave(
    a: Callable[[int], float], b: Callable[[int], float], steps: int, rounds: int, warmup: int = 2
) -> tuple[list[float], list[float]]:
    """Alternate timed windows of ``a`` and ``b`` (order flipped every round); seconds per window."""
    a(warmup)
    b(warmup)
    ta, tb = [], []
    for r in range(rounds):
        if r % 2 == 0:
            ta.append(a(steps))
            tb.append(b(steps))
        else:
            tb.append(b(steps))
            ta.append(a(steps))
    return ta, tb


def _ratio(num: list[float], den: list[float]) -> float:
    """Median over rounds of rate(num) / rate(den), from window seconds."""
    return statistics.median(d / n for n, d in zip(num, den))


# ---- the full mdm train loop, interleaved with bare windows -------------------------------------------
@contextmanager
def _interleaving_callback(bare: BareStep, steps: int, rounds: int, warmup: int, out: dict):
    """Patch mdm.train's RunCallback so that, in the run ``train`` builds, every ``steps`` optimizer
    steps (after ``warmup``) the elapsed full-loop window is recorded and a bare window is timed."""
    import mdm.train as tr

    base = tr.RunCallback

    class Interleaving(base):
        def on_train_start(self, trainer, pl_module):
            super().on_train_start(trainer, pl_module)
            out.update(full=[], bare=[], t=None)

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            now = time.perf_counter()
            step = trainer.global_step
            boundary = step >= warmup and (step - warmup) % steps == 0
            if boundary and out["t"] is not None:
                out["full"].append(now - out["t"])
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
            if boundary:
                if len(out["full"]) < rounds:
                    out["bare"].append(bare.window(steps))
                out["t"] = time.perf_counter()

    tr.RunCallback = Interleaving
    try:
        yield
    finally:
        tr.RunCallback = base


def full_vs_bare(cfg: Config, bare: BareStep, steps: int, rounds: int, warmup: int = 3) -> dict:
    """Run ``mdm train`` (in-process, fresh run dir) for warmup + rounds x steps steps; window seconds."""
    import dataclasses

    from mdm.train import train

    bare.window(2)
    runs = Path(cfg.train.runs_dir)
    runs.mkdir(parents=True, exist_ok=True)
    fresh = tempfile.mkdtemp(prefix="full-", dir=runs)  # a fresh run dir: train() skips completed runs
    train_cfg = dataclasses.replace(cfg.train, max_steps=warmup + rounds * steps, runs_dir=fresh)
    cfg = dataclasses.replace(cfg, train=train_cfg)
    out: dict = {}
    quiet = [logging.getLogger(n) for n in ("lightning", "lightning.pytorch", "lightning.fabric")]
    levels = [q.level for q in quiet]
    try:
        for q in quiet:
            q.setLevel(logging.WARNING)
        with (
            _interleaving_callback(bare, steps, rounds, warmup, out),
            contextlib.redirect_stdout(io.StringIO()),
            warnings.catch_warnings(),
        ):
            warnings.simplefilter("ignore")
            train(cfg)
    finally:
        for q, lv in zip(quiet, levels):
            q.setLevel(lv)
    if len(out.get("full", ())) != rounds or len(out.get("bare", ())) != rounds:
        raise RuntimeError(
            f"mdm bench: the full-loop run in {fresh} did not train {warmup + rounds * steps} steps"
        )
    return out


# ---- thread layout: 2 processes x 1 thread against 1 process x 2 threads ----------------------------------
def _layout_worker(cfgs: list, vocab: dict, threads: int, cmd, res) -> None:  # runs in a spawned process
    torch.set_num_threads(threads)
    steppers: dict[int, BareStep] = {}
    while (msg := cmd.get()) is not None:
        i, steps, start_at = msg
        if i not in steppers:
            steppers[i] = BareStep(cfgs[i], Vocab(**vocab))
            steppers[i].window(2)
            res.put(None)  # built and warm
            continue
        while time.time() < start_at:
            time.sleep(0.001)
        t0 = time.time()
        steppers[i].window(steps)
        res.put((t0, time.time(), steps * steppers[i].tokens_per_step))


def thread_layout(cfgs: list[Config], vocab: Vocab, steps: int, rounds: int) -> list[dict]:
    """Aggregate bare tokens/s of two concurrent 1-thread processes vs one 2-thread process, per config."""
    import dataclasses

    ctx = mp.get_context("spawn")
    workers = []
    for threads in (1, 1, 2):
        cmd, res = ctx.Queue(), ctx.Queue()
        p = ctx.Process(target=_layout_worker, args=(cfgs, dataclasses.asdict(vocab), threads, cmd, res))
        p.start()
        workers.append((p, cmd, res))
    singles, double = workers[:2], workers[2:]

    def run(group, i) -> float:
        start_at = time.time() + 0.05
        for _, cmd, _ in group:
            cmd.put((i, steps, start_at))
        got = [res.get(timeout=600) for _, _, res in group]
        return sum(g[2] for g in got) / (max(g[1] for g in got) - min(g[0] for g in got))

    rows = []
    try:
        for i, cfg in enumerate(cfgs):
            for group in (singles, double):  # build + warm, one group at a time
                for _, cmd, _ in group:
                    cmd.put((i, 0, 0.0))
                for _, _, res in group:
                    res.get(timeout=600)
            two_by_one, one_by_two = [], []
            for r in range(rounds):
                order = (singles, double) if r % 2 == 0 else (double, singles)
                for g in order:
                    (two_by_one if g is singles else one_by_two).append(run(g, i))
            rows.append(
                {
                    "width": cfg.model.d_model,
                    "two_procs_1_thread_tokens_per_s": max(two_by_one),
                    "one_proc_2_threads_tokens_per_s": max(one_by_two),
                    "ratio_2x1_over_1x2": statistics.median(a / b for a, b in zip(two_by_one, one_by_two)),
                }
            )
    finally:
        for _p, cmd, _ in workers:
            cmd.put(None)
        for p, _, _ in workers:
            p.join(timeout=30)
            if p.is_alive():
                p.terminate()
    return rows


# ---- the whole bench -------------------------------------------------------------------------------------
def _rate_row(
    what: str, threads: int, shape: Shape, s, secs: list[float], steps: int, peak: float, **kw
) -> dict:
    tps = steps * s.tokens_per_step / min(secs)
    return {
        "what": what,
        "threads": threads,
        "width": shape.width,
        "depth": shape.depth,
        "params_total": s.params_total,
        "flops_per_token": s.flops_per_token,
        "tokens_per_s": tps,
        "gflops": tps * s.flops_per_token / 1e9,
        "peak_gflops": peak / 1e9,
        "mfu": tps * s.flops_per_token / peak,
        **kw,
    }


def run_train_bench(
    widths: tuple[int, ...] = (64, 128),
    objective: str = "mdlm",
    steps: int = 6,
    rounds: int = 3,
    threads: tuple[int, ...] = (1, 2),
    shape: Shape = Shape(),
    full: bool = True,
    minimal: bool = True,
    layout: bool = True,
    precision_widths: tuple[int, ...] = (64, 128, 256),
    compile: bool = False,
    work_dir: str | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """Measure and print everything in the module docstring; return the rows (dicts)."""
    import dataclasses

    tmp = tempfile.TemporaryDirectory(prefix="mdm-bench-") if work_dir is None else None
    work = Path(work_dir or tmp.name)
    data_dir, runs_dir = work / "data", work / "runs"
    shapes = {w: dataclasses.replace(shape, width=w) for w in widths}
    cfg_of = lambda w, obj, t=1: bench_config(  # noqa: E731
        shapes.get(w, dataclasses.replace(shape, width=w)), obj, data_dir, runs_dir, t
    )
    vocab = prepared_vocab(cfg_of(widths[0], objective))
    model_name = _cpu_model()
    log(
        f"mdm bench train: cpu={model_name!r} torch={torch.__version__} load={_load()} "
        f"shape: depth {shape.depth}, head_dim {shape.head_dim}, batch {shape.batch} x {shape.seq_len} tokens, "
        f"vocabulary {vocab.size} ({shape.vocab} real), activation {shape.activation}; {steps} steps a window, "
        f"{rounds} rounds"
    )
    log("peak = fp32 (or bf16) 1536^2 matmul GFLOP/s RE-MEASURED just before each row; MFU against it")
    result: dict = {"rows": [], "layout": [], "precision": [], "compile": [], "cpu": model_name}
    result["load_start"] = _load()
    rows = result["rows"]
    saved_threads = torch.get_num_threads()
    try:
        for t in threads:
            torch.set_num_threads(t)
            for w in widths:
                sh = shapes[w]
                bare = BareStep(cfg_of(w, objective, t), vocab)
                peak = row_peak(torch.float32)
                if full:
                    o = full_vs_bare(cfg_of(w, objective, t), bare, steps, rounds)
                    torch.set_num_threads(t)
                    rows.append(_rate_row(f"bare({objective})", t, sh, bare, o["bare"], steps, peak))
                    rows.append(
                        _rate_row(
                            f"full({objective})", t, sh, bare, o["full"], steps, peak,
                            full_over_bare=_ratio(o["full"], o["bare"]),
                        )
                    )  # fmt: skip
                else:
                    secs = [bare.window(steps) for _ in range(rounds)]
                    rows.append(_rate_row(f"bare({objective})", t, sh, bare, secs, steps, peak))
                log(_fmt(rows[-2:] if full else rows[-1:], header=(t == threads[0] and w == widths[0])))
                if minimal:
                    ours = BareStep(cfg_of(w, "ar", t), vocab)
                    mini = MinimalStep(ours)
                    peak = row_peak(torch.float32)
                    ta, tb = interleave(ours.window, mini.window, steps, rounds)
                    rows.append(
                        _rate_row("ours(ar)", t, sh, ours, ta, steps, peak, ours_over_minimal=_ratio(ta, tb))
                    )
                    rows.append(_rate_row("minimal(ar)", t, sh, mini, tb, steps, peak))
                    log(_fmt(rows[-2:]))
            bare_rows = {r["width"]: r for r in rows if r["threads"] == t and r["what"].startswith("bare")}
            if 64 in bare_rows and 128 in bare_rows:
                q = bare_rows[64]["gflops"] / bare_rows[128]["gflops"]
                result[f"gflops_64_over_128_threads{t}"] = q
                log(f"   bare-step GFLOP/s(width 64) / GFLOP/s(width 128) at {t} thread(s): {q:.2f}")
        if len(threads) > 1:
            for w in widths:
                r1 = [r for r in rows if r["width"] == w and r["what"].startswith("bare")]
                if len(r1) > 1:
                    log(
                        f"   width {w}: bare tokens/s at {r1[-1]['threads']} threads / at {r1[0]['threads']}: "
                        f"{r1[-1]['tokens_per_s'] / r1[0]['tokens_per_s']:.2f}"
                    )
        if layout:
            lw = [w for w in widths if w in (64, 128)] or list(widths[:1])
            result["layout"] = thread_layout([cfg_of(w, objective) for w in lw], vocab, steps, rounds)
            log("thread layout (bare step, aggregate tokens/s over the common window, best of rounds):")
            for r in result["layout"]:
                best = "2 processes x 1 thread" if r["ratio_2x1_over_1x2"] > 1 else "1 process x 2 threads"
                log(
                    f"   width {r['width']:>4}: 2 x 1 thread {r['two_procs_1_thread_tokens_per_s']:>9.0f}   "
                    f"1 x 2 threads {r['one_proc_2_threads_tokens_per_s']:>9.0f}   "
                    f"(2x1)/(1x2) = {r['ratio_2x1_over_1x2']:.2f}  -> faster: {best}"
                )
        if precision_widths:
            t = min(threads)  # the demo's layout (single-thread processes) unless --threads says otherwise
            torch.set_num_threads(t)
            bf16 = cpu_bf16_ok()
            log(f"precision (bare {objective} step, {t} thread(s); fp32 vs bf16 autocast, interleaved):")
            for w in precision_widths:
                sh = dataclasses.replace(shape, width=w)
                cfg = cfg_of(w, objective, t)
                f32 = BareStep(cfg, vocab)
                p32 = row_peak(torch.float32)
                row = {"width": w, "threads": t, "fp32_tokens_per_s": None, "bf16_tokens_per_s": None}
                if bf16:
                    b16 = BareStep(cfg, vocab, autocast=torch.bfloat16)
                    p16 = row_peak(torch.bfloat16)
                    ta, tb = interleave(f32.window, b16.window, steps, rounds)
                    r32 = _rate_row("fp32", t, sh, f32, ta, steps, p32)
                    r16 = _rate_row("bf16", t, sh, b16, tb, steps, p16)
                    row.update(
                        fp32_tokens_per_s=r32["tokens_per_s"], bf16_tokens_per_s=r16["tokens_per_s"],
                        bf16_over_fp32=_ratio(tb, ta), fp32_peak_gflops=p32 / 1e9, bf16_peak_gflops=p16 / 1e9,
                        fp32_mfu=r32["mfu"], bf16_mfu=r16["mfu"],
                    )  # fmt: skip
                    log(
                        f"   width {w:>4}: fp32 {r32['tokens_per_s']:>8.0f} tok/s ({r32['gflops']:5.1f} GFLOP/s, "
                        f"MFU {100 * r32['mfu']:4.1f}% of {p32 / 1e9:.0f})   bf16 {r16['tokens_per_s']:>8.0f} tok/s "
                        f"({r16['gflops']:5.1f} GFLOP/s, MFU {100 * r16['mfu']:4.1f}% of {p16 / 1e9:.0f})   "
                        f"bf16/fp32 = {row['bf16_over_fp32']:.2f}"
                    )
                else:
                    log(f"   width {w}: bf16 matmul not supported on this CPU; fp32 only")
                result["precision"].append(row)
        if compile:
            t = min(threads)
            torch.set_num_threads(t)
            log(
                f"compile (bare {objective} step, {t} thread(s); eager vs torch.compile of the network, interleaved):"
            )
            for w in widths:
                result["compile"].append(compile_row(cfg_of(w, objective, t), vocab, steps, rounds, t, log))
        result["load_end"] = _load()
        log(f"load average at the end: {result['load_end']}")
    finally:
        torch.set_num_threads(saved_threads)
        if tmp is not None:
            tmp.cleanup()
    return result


def compile_row(cfg: Config, vocab: Vocab, steps: int, rounds: int, threads: int, log=print) -> dict:
    """Eager vs ``torch.compile``'d bare step at one shape: tokens/s of each (best window), the median
    per-round ratio, and the seconds the first compiled step took (compilation, not counted in rates)."""
    eager = BareStep(cfg, vocab)
    comp = BareStep(cfg, vocab, compile=True)
    t0 = time.perf_counter()
    comp.window(1)  # compiles (forward and backward graphs)
    compile_s = time.perf_counter() - t0
    ta, tb = interleave(eager.window, comp.window, steps, rounds)
    n = steps * eager.tokens_per_step
    row = {
        "width": eager.model.dims.d_model,
        "threads": threads,
        "eager_tokens_per_s": n / min(ta),
        "compiled_tokens_per_s": n / min(tb),
        "compiled_over_eager": _ratio(tb, ta),
        "compile_s": compile_s,
    }
    log(
        f"   width {row['width']:>4}: eager {row['eager_tokens_per_s']:>8.0f} tok/s   compiled "
        f"{row['compiled_tokens_per_s']:>8.0f} tok/s   compiled/eager = {row['compiled_over_eager']:.2f}   "
        f"(first compiled step {compile_s:.1f} s)"
    )
    return row


def _fmt(rows: list[dict], header: bool = False) -> str:
    lines = []
    if header:
        lines.append(
            f"{'thr':>3} {'width':>5} {'depth':>5} {'what':<12} {'params':>9} {'FLOP/tok':>9} {'tok/s':>9} "
            f"{'GFLOP/s':>8} {'peak':>6} {'MFU':>6}  ratio"
        )
    for r in rows:
        ratio = ""
        if "full_over_bare" in r:
            ratio = f"full/bare {r['full_over_bare']:.2f}"
        elif "ours_over_minimal" in r:
            ratio = f"ours/minimal {r['ours_over_minimal']:.2f}"
        lines.append(
            f"{r['threads']:>3} {r['width']:>5} {r['depth']:>5} {r['what']:<12} {r['params_total']:>9,} "
            f"{r['flops_per_token']:>9.3g} {r['tokens_per_s']:>9.0f} {r['gflops']:>8.1f} "
            f"{r['peak_gflops']:>6.0f} {100 * r['mfu']:>5.1f}%  {ratio}"
        )
    return "\n".join(lines)


def _load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "?"
