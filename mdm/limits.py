"""Start-up sanity limits: refuse, with the numbers, a run that cannot fit or cannot finish a step.

Checked by ``mdm train`` before anything is written (``train.force_limits=true`` skips them):

* **memory per device** — parameters with their gradients, AdamW moments and EMA (20 bytes per
  parameter in fp32), plus the activations kept for the backward of one micro-batch, against the
  device's memory (GPU: its total memory; CPU: physical RAM from ``psutil`` or ``os.sysconf``). The
  activation term, ``micro_batch * seq_len * (26 * depth * d_model + 12 * vocab)`` values, was measured
  on the debug model with PyTorch's (flash) SDPA, whose memory is linear in ``seq_len``;
* **time per optimizer step** — FLOPs of one step on one device divided by the matmul throughput
  measured here in ~0.1 s (an optimistic bound: real steps are slower), against
  ``train.preempt_grace_s``, the time a preemption signal waits for the step in progress: a step that
  cannot end in that time could never checkpoint when preempted;
* **the synthetic source's tables** — ``vocab**(order+1)`` float64 transition probabilities and their
  index arrays, before numpy is asked to allocate them.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from mdm.errors import UserError

GiB = 2**30
PARAM_BYTES = 20  # fp32 weight + grad + AdamW exp_avg + exp_avg_sq + EMA copy
ACT_VALUES_PER_LAYER_DIM = 26  # saved activations per token, per layer, per model dimension (measured)
LOGIT_VALUES_PER_VOCAB = 12  # logits, log-softmax, their gradients, the objective's (B, L, V) terms


class LimitError(UserError):
    pass


@dataclass(frozen=True)
class MemoryEstimate:
    params_bytes: int
    activation_bytes: int
    available_bytes: int
    device: str

    @property
    def total_bytes(self) -> int:
        return self.params_bytes + self.activation_bytes


def physical_memory() -> int:
    """Physical RAM, or the container's cgroup memory limit when that is lower."""
    try:
        import psutil

        total = int(psutil.virtual_memory().total)
    except ImportError:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            limit = int(Path(path).read_text().strip())
        except (OSError, ValueError):  # absent, or "max"
            continue
        total = min(total, limit)
    return total


def _uses_cuda(cfg) -> bool:
    import torch

    return torch.cuda.is_available() and cfg.train.accelerator in ("auto", "gpu", "cuda")


def estimate_memory(cfg, counts, derived, vocab_size: int) -> MemoryEstimate:
    cuda = _uses_cuda(cfg)
    act_bytes = 4 if cfg.train.precision in ("32-true", "32") or not cuda else 2
    per_token = (
        ACT_VALUES_PER_LAYER_DIM * counts.n_layer * counts.d_model + LOGIT_VALUES_PER_VOCAB * vocab_size
    )
    activations = derived.micro_batch * cfg.model.seq_len * per_token * act_bytes
    if cuda:
        import torch

        available, device = torch.cuda.get_device_properties(0).total_memory, "GPU"
    else:
        available, device = physical_memory(), "CPU RAM"
    return MemoryEstimate(counts.params_total * PARAM_BYTES, int(activations), int(available), device)


def matmul_flops_per_s(cuda: bool = False, n: int = 512, seconds: float = 0.1) -> float:
    """Achieved FLOP/s of square matmuls on this device (fp32 on CPU, bf16 on GPU) over ~``seconds``."""
    import torch

    dev, dtype = ("cuda", torch.bfloat16) if cuda else ("cpu", torch.float32)
    a = torch.randn(n, n, device=dev, dtype=dtype)
    b = torch.randn(n, n, device=dev, dtype=dtype)
    a @ b  # warm-up
    reps, t0 = 0, time.perf_counter()
    while True:
        a @ b
        reps += 1
        if cuda:
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        if dt >= seconds:
            return 2 * n**3 * reps / dt


def check_synthetic(cfg) -> None:
    """The synthetic source's tables must fit in memory (checked before they are allocated)."""
    if cfg.train.force_limits or cfg.data.name != "synthetic":
        return
    s = cfg.data.synthetic
    need = 4 * 8 * s.vocab ** (s.order + 1)  # transition (float64) + three int64 index arrays
    have = physical_memory()
    if need > have / 2:
        raise LimitError(
            f"data.synthetic.vocab={s.vocab} with order={s.order} needs {s.vocab}^{s.order + 1} transition "
            f"entries ({need / GiB:.1f} GiB) but this machine has {have / GiB:.1f} GiB of RAM; "
            f"lower data.synthetic.vocab (or set train.force_limits=true)"
        )


def check_run(cfg, counts, derived, vocab_size: int) -> MemoryEstimate:
    """Refuse a run that does not fit the device or whose step could not end within the grace period."""
    est = estimate_memory(cfg, counts, derived, vocab_size)
    if cfg.train.force_limits:
        return est
    if est.total_bytes > est.available_bytes:
        raise LimitError(
            f"this run needs about {est.total_bytes / GiB:.1f} GiB per device "
            f"({est.params_bytes / GiB:.2f} GiB parameters+optimizer+EMA, {est.activation_bytes / GiB:.1f} GiB "
            f"activations for micro_batch={derived.micro_batch} x model.seq_len={cfg.model.seq_len}) but the "
            f"{est.device} has {est.available_bytes / GiB:.1f} GiB; lower model.seq_len, train.micro_batch or "
            f"model.depth (or set train.force_limits=true)"
        )
    step_flops = derived.per_device_batch * cfg.model.seq_len * counts.flops_per_token
    rate = matmul_flops_per_s(_uses_cuda(cfg))
    seconds = step_flops / rate
    if seconds > cfg.train.preempt_grace_s:
        raise LimitError(
            f"one optimizer step is {step_flops:.3g} FLOPs per device: at least {seconds:.0f} s at the "
            f"{rate / 1e9:.1f} GFLOP/s measured here, more than train.preempt_grace_s={cfg.train.preempt_grace_s:g} "
            f"(a preempted run could not checkpoint); lower model.seq_len or train.global_batch, add devices, "
            f"or raise train.preempt_grace_s (or set train.force_limits=true)"
        )
    return est
