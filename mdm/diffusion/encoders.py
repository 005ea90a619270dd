"""Frozen encoders for CCDD: per-token continuous vectors z0 = standardise(project(f(x))) from a trained run.

Two representations f, both from a run of this project (EMA weights, frozen; loaded outside this package
by mdm/ccdd_encoder.py, which also reads and writes the statistics files: here is only the maths):

* ``embedding``: f(x)^l = E[x^l], the row of the run's token-embedding table. Per position: z0^l is a
  function of the token x^l alone.
* ``hidden``: f(x)^l = h_k(x)^l, the state of the run's *bidirectional* backbone after ``k`` blocks
  (``objective.ccdd.encoder_layer``; 0 = embeddings, -1 = the final normed state).

Affine map to d_c dimensions, fitted once on training tokens and stored (the "statistics"):
``z0 = (f - mu) @ P`` with P (W, d_c):

* ``pca``: P = U_{d_c} diag(lambda^-1/2), the top-d_c eigenvectors of the feature covariance, whitened;
* ``truncate``: P = I[:, :d_c] diag(1/std), the first d_c coordinates standardised.

On the tokens the statistics were computed from, every z0 dimension has mean 0 and variance 1 exactly
(and, for pca, zero cross-covariance).

Leakage -- can information about a *masked* token reach the denoiser through z? (docs/MATH.md, "CCDD")

* ``embedding``: no cross-position leak: z_t^l depends on x0^l only. At a masked position l, z_t^l is
  still a noisy copy of E[x0^l]: that is the joint process by design (tokens and vectors co-evolve), and
  it is why the discrete term of the joint NELBO is not a bound on -log p(x) (see mdm/diffusion/ccdd.py).
* ``hidden`` with ``encoder_input=clean``: LEAKS. h_k(x0)^l depends on every token of x0 (bidirectional
  attention), so z_t at *unmasked* positions carries information about masked tokens elsewhere.
  CCDD's public features (a causal LM's hidden states on the clean text) leak the same way, for
  positions after the masked one.
* ``hidden`` with ``encoder_input=masked``: leak-free. f is computed on the masked sequence x_t
  (z0 = f(x_t), a function of what the denoiser already sees), so z adds no information about masked
  tokens; the discrete term is then a valid NELBO.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from mdm.diffusion.ccdd_options import ENCODER_INPUTS, ENCODERS, PROJECTIONS  # noqa: F401  (re-exported)
from mdm.models.ccdd import hidden_states, resolve_layer
from mdm.vocab import Vocab

STATS_VERSION = 1
# Fields of the statistics' metadata that must match the encoder they are used with.
IDENTITY_KEYS = (
    "version",
    "encoder",
    "layer",
    "encoder_input",
    "projection",
    "d_cont",
    "width",
    "vocab",
    "encoder_step",
    "data",
)


class EncoderError(ValueError):
    """A bad encoder run or statistics file; the message names the key or file."""


@dataclass(frozen=True)
class EncoderSpec:
    """What the frozen map f is: which run, which representation, which projection."""

    kind: str  # embedding | hidden
    layer: int  # resolved block count (hidden); 0 for embedding
    input: str  # clean | masked
    projection: str  # pca | truncate
    d_cont: int
    width: int  # W, the raw feature width
    vocab: Vocab
    checkpoint: str
    step: int
    data: str  # data key the statistics are computed on

    @property
    def leaks_masked_tokens(self) -> bool:
        """True when z0 at one position carries information about tokens at other (masked) positions."""
        return self.kind == "hidden" and self.input == "clean"

    def identity(self) -> dict[str, Any]:
        return {
            "version": STATS_VERSION,
            "encoder": self.kind,
            "layer": self.layer,
            "encoder_input": self.input,
            "projection": self.projection,
            "d_cont": self.d_cont,
            "width": self.width,
            "vocab": dataclasses.asdict(self.vocab),
            "encoder_step": self.step,
            "data": self.data,
        }

    def descriptor(self) -> str:
        """File name of the statistics: readable fields + a hash of the identity."""
        digest = hashlib.sha256(json.dumps(self.identity(), sort_keys=True).encode()).hexdigest()[:8]
        layer = f"-layer{self.layer}-{self.input}" if self.kind == "hidden" else ""
        return f"{self.kind}{layer}-{self.projection}{self.d_cont}-step{self.step}-{digest}.pt"


class FrozenEncoder(nn.Module):
    """x (B, L) [, x_t] -> z0 (B, L, d_c), standardised; no gradients, never trained.

    ``network`` is the encoder run's backbone; ``sigma_fn(t)`` its objective's noise input (None for a
    time-agnostic run). The statistics (``mean`` (W,), ``proj`` (W, d_c)) are buffers set by
    :meth:`set_statistics`.
    """

    def __init__(self, network: nn.Module, spec: EncoderSpec, sigma_fn: Callable[[torch.Tensor], Any]):
        super().__init__()
        self.network = network.eval().requires_grad_(False)
        self.spec = spec
        self.sigma_fn = sigma_fn
        self.register_buffer("mean", torch.zeros(spec.width))
        self.register_buffer("proj", torch.zeros(spec.width, spec.d_cont))
        self.has_statistics = False

    @torch.no_grad()
    def features(
        self, x: torch.Tensor, t: torch.Tensor | None = None, key_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Raw features f(x) (B, L, W), float32. ``t`` (B,) is the masking time of ``x`` (hidden, masked input)."""
        if self.spec.kind == "embedding":
            return self.network.embed.weight[x].float()
        tt = torch.zeros(x.shape[0], device=x.device) if t is None else t
        return hidden_states(self.network, x, self.spec.layer, self.sigma_fn(tt), key_mask).float()

    @torch.no_grad()
    def forward(
        self,
        x0: torch.Tensor,
        x_t: torch.Tensor | None = None,
        t: torch.Tensor | None = None,
        key_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """z0 (B, L, d_c) for clean tokens ``x0``; the masked-input variant encodes ``x_t`` (at time ``t``)."""
        if not self.has_statistics:
            raise EncoderError("encoder statistics not loaded (FrozenEncoder.set_statistics)")
        if self.spec.input == "masked":
            if x_t is None or t is None:
                raise ValueError("encoder_input=masked encodes the masked sequence: pass x_t and t")
            f = self.features(x_t, t, key_mask)
        else:
            f = self.features(x0, None, key_mask)
        return (f - self.mean) @ self.proj  # (B, L, d_c)

    def set_statistics(self, stats: dict[str, Any], source: str) -> None:
        check_statistics(stats, self.spec, source)
        self.mean.copy_(stats["mean"].float())
        self.proj.copy_(stats["proj"].float())
        self.has_statistics = True


# --- statistics: fitted once, checked (stored and read by mdm/ccdd_encoder.py) ---------------------
@torch.no_grad()
def fit_statistics(
    feature_batches: Iterable[tuple[torch.Tensor, torch.Tensor | None]], projection: str, d_cont: int
) -> dict[str, torch.Tensor]:
    """Fit ``mean`` (W,) and ``proj`` (W, d_c) from batches of (features (B, L, W), valid (B, L) | None).

    Exact moments in float64: mu = sum f / n, C = sum (f - mu)(f - mu)^T / n (population covariance, so
    the fitted z0 has variance exactly 1 on these tokens).
    """
    if projection not in PROJECTIONS:
        raise EncoderError(
            f"objective.ccdd.projection={projection!r} is not valid; choose one of: {', '.join(PROJECTIONS)}"
        )
    n, s, ss = 0, None, None
    for f, valid in feature_batches:
        f = f.double().reshape(-1, f.shape[-1]) if valid is None else f.double()[valid]  # (N, W)
        if s is None:
            s = torch.zeros(f.shape[-1], dtype=torch.float64)
            ss = torch.zeros(f.shape[-1], f.shape[-1], dtype=torch.float64)
        n += f.shape[0]
        s += f.sum(0).cpu()
        ss += (f.T @ f).cpu()
    if not n:
        raise EncoderError("no tokens to compute the encoder statistics from")
    mean = s / n
    cov = ss / n - torch.outer(mean, mean)  # (W, W)
    W = mean.numel()
    if d_cont > W:
        raise EncoderError(f"objective.ccdd.d_cont={d_cont} exceeds the encoder width {W}")
    if projection == "truncate":
        var = cov.diagonal()[:d_cont]
        proj = torch.zeros(W, d_cont, dtype=torch.float64)
        proj[torch.arange(d_cont), torch.arange(d_cont)] = var.clamp_min(1e-12).rsqrt()
        spectrum = var
    else:
        evals, evecs = torch.linalg.eigh(cov)  # ascending
        evals, evecs = evals.flip(0)[:d_cont], evecs.flip(1)[:, :d_cont]  # (d_c,), (W, d_c)
        sign = torch.sign(evecs.gather(0, evecs.abs().argmax(0, keepdim=True)))  # deterministic sign
        evecs = evecs * sign
        proj = evecs * evals.clamp_min(1e-12).rsqrt()
        spectrum = evals
    # Directions with no variance on these tokens (d_c above the features' rank, e.g. more dimensions than
    # distinct tokens) are set to zero rather than amplified numerical noise.
    degenerate = spectrum <= 1e-10 * spectrum.max().clamp_min(1e-300)
    proj[:, degenerate] = 0.0
    return {
        "mean": mean,
        "proj": proj,
        "spectrum": spectrum,
        "tokens": torch.tensor(n),
        "rank": torch.tensor(int((~degenerate).sum())),
    }


def check_statistics(stats: dict[str, Any], spec: EncoderSpec, source: str) -> None:
    """The statistics must belong to this encoder: same identity fields, shapes (W,), (W, d_c)."""
    W, d = spec.width, spec.d_cont
    if tuple(stats["mean"].shape) != (W,) or tuple(stats["proj"].shape) != (W, d):
        raise EncoderError(
            f"statistics {source} have mean {tuple(stats['mean'].shape)} and proj {tuple(stats['proj'].shape)}; "
            f"this encoder needs width {W} and d_cont {d}: ({W},) and ({W}, {d})"
        )
    want, got = spec.identity(), stats["meta"]
    bad = [k for k in IDENTITY_KEYS if got.get(k) != want[k]]
    if bad:
        diffs = "; ".join(f"{k}: file {got.get(k)!r} vs encoder {want[k]!r}" for k in bad)
        raise EncoderError(
            f"statistics {source} were computed for another encoder ({diffs}); delete the file or point "
            f"objective.ccdd.stats_file elsewhere"
        )


# --- the frozen run (loaded outside this package, mdm/ccdd_encoder.py, and handed in) --------------
def check_encoder_options(encoder: str, encoder_run: str | None, encoder_input: str) -> None:
    """The encoder choices, checked before the encoder run is loaded."""
    if encoder not in ENCODERS:
        raise EncoderError(
            f"objective.ccdd.encoder={encoder!r} is not valid; choose one of: {', '.join(ENCODERS)}"
        )
    if encoder_input not in ENCODER_INPUTS:
        raise EncoderError(
            f"objective.ccdd.encoder_input={encoder_input!r} is not valid; choose one of: {', '.join(ENCODER_INPUTS)}"
        )
    if encoder == "embedding" and encoder_input != "clean":
        raise EncoderError(
            "objective.ccdd.encoder_input=masked applies to encoder=hidden only (embeddings are per token)"
        )
    if not encoder_run:
        raise EncoderError(
            "objective.ccdd.encoder_run is not set: give a run directory or checkpoint of this project "
            "(e.g. an MDLM run trained on the same data) whose embeddings/hidden states define z0"
        )


def frozen_encoder(
    run,
    encoder_run: str,
    encoder: str,
    layer: int,
    encoder_input: str,
    projection: str,
    d_cont: int,
    vocab: Vocab,
    seq_len: int,
    data: str,
    device: str | torch.device = "cpu",
) -> FrozenEncoder:
    """The encoder (without statistics) of a loaded run (:class:`mdm.loading.LoadedRun` of
    ``encoder_run``, loaded by the caller: mdm/ccdd_encoder.py), checked to fit (vocabulary, width,
    layer, context, direction)."""
    if run.vocab != vocab:
        raise EncoderError(
            f"objective.ccdd.encoder_run={encoder_run!r} has vocabulary {run.vocab} but the data has {vocab}: "
            f"the encoder must be trained on the same tokenizer"
        )
    net = run.model.backbone if hasattr(run.model, "backbone") else run.model
    depth, width = net.dims.depth, net.dims.d_model
    k = 0
    if encoder == "hidden":
        if run.objective.causal:
            raise EncoderError(
                f"objective.ccdd.encoder_run={encoder_run!r} is causal (objective {run.cfg.objective.name!r}); "
                f"encoder=hidden needs a bidirectional run (or use encoder=embedding)"
            )
        try:
            k = resolve_layer(layer, depth)
        except ValueError as e:
            raise EncoderError(f"objective.ccdd.encoder_layer={layer}: {e}") from e
        if net.dims.seq_len < seq_len:
            raise EncoderError(
                f"objective.ccdd.encoder_run={encoder_run!r} has context {net.dims.seq_len} < model.seq_len={seq_len}"
            )
    if d_cont > width:
        raise EncoderError(
            f"objective.ccdd.d_cont={d_cont} exceeds the width {width} of the encoder run {encoder_run!r}"
        )
    spec = EncoderSpec(
        encoder, k, encoder_input, projection, d_cont, width, vocab, str(run.checkpoint), run.step, data
    )
    sigma_fn = run.objective.sigma_input if hasattr(run.objective, "sigma_input") else (lambda t: None)
    return FrozenEncoder(net, spec, sigma_fn).to(device)
