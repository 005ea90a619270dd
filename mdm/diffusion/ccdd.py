"""CCDD: coevolutionary continuous-discrete diffusion on the shared backbone (docs/MATH.md, "CCDD").

Joint forward process over tokens x and per-token vectors z0 = f(x0) in R^{L x d_c} (a frozen encoder
of a trained run, standardised per dimension; mdm/diffusion/encoders.py, handed in by mdm/ccdd_encoder.py):

* tokens: the absorbing process of MDLM at time t (each token masked with probability 1 - alpha_t);
* vectors, at a linked time s = link(t):
  - ``vp``:   z_s = a_s z0 + b_s eps, a_s = cos(pi s / 2), b_s = sin(pi s / 2)  (a^2 + b^2 = 1, a_1 = 0);
  - ``flow``: z_s = (1 - s) z0 + s eps  (rectified flow);
  with eps ~ N(0, I) and ``time_link``: ``shared`` (s = t), ``power`` (s = t^gamma), ``independent``
  (s ~ U[t_min, 1], drawn separately). With probability ``cont_drop`` a sequence gets s = 1 (z = pure
  noise: a "z-blind" input), which trains the unconditional prediction used by guidance.

One network (mdm/models/ccdd.py): token logits and a continuous output from one stream. Continuous target:
``eps``; ``x0`` (z0); ``velocity``: vp: v = a eps - b z0 (Salimans & Ho 2022), flow: v = eps - z0 = dz/ds.

Loss of one sequence (summed over tokens; divided by the global token count by the caller):

    L(x) = -alpha'_t / (1 - alpha_t) sum_{l masked} -log p_theta(x^l | x_t, z_s)          [discrete]
           + lambda_c sum_{l valid} (1/d_c) || out_theta(x_t, z_s)^l - target^l ||^2       [continuous]

The continuous term is an unweighted MSE (an auxiliary objective, not a likelihood term).

What the reported perplexity bound measures (``objective.ccdd.bound``; :meth:`CCDD.sequence_loss`):

* ``discrete`` (default): the discrete term above with z_s drawn from the forward process, as trained.
  It is the discrete part of the joint NELBO of (x0, z0). It is NOT an upper bound on -log p(x) when z_s
  carries information about masked tokens -- which it does for every encoder except ``hidden`` with
  ``encoder_input=masked`` (an embedding encoder's z_s^l is a noisy copy of E[x0^l]) -- so it can fall
  below the data entropy. Labelled "discrete term of the joint NELBO" wherever it is printed.
* ``z_blind``: the same term with the continuous input at s = 1 (z = fresh noise, independent of x0).
  The denoiser then sees nothing beyond x_t (plus independent noise), and by convexity of the KL in its
  second argument the estimate is an upper bound on -log p(x) of the model whose transitions average
  over that noise: a perplexity bound comparable with MDLM's.

With ``continuous=false`` the network is the backbone alone and every number equals MDLM's exactly.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import replace

import torch

from mdm.config import Config
from mdm.config_counts import forward_flops
from mdm.derived import backbone_counts, resolve_dims
from mdm.diffusion import noise
from mdm.diffusion.base import LossOut
from mdm.diffusion.ccdd_options import BOUNDS, PROCESSES, TARGETS, TIME_LINKS, CcddConfig  # noqa: F401
from mdm.diffusion.encoders import EncoderError, FrozenEncoder, check_encoder_options
from mdm.diffusion.mdlm import MDLM
from mdm.diffusion.registry import OBJECTIVES, lookup, register_objective
from mdm.flops import Counts
from mdm.models.ccdd import LEVEL_FEATURES, resolve_layer
from mdm.vocab import Vocab

_MIN_COEF = 1e-4  # floor of a denominator when converting an eps/x0 prediction at a degenerate level


def _encoder_flops(forward: float, width: int, d_cont: int, d_model: int) -> float:
    """Per token: the encoder's ``forward``, z0 = (f - mu) @ P (2 W d_c), less the input gradient of z_in
    (never computed: z needs none)."""
    z_in = (d_cont + LEVEL_FEATURES) * d_model
    return forward + 2 * width * d_cont - 2 * z_in


@register_objective("ccdd")
class CCDD(MDLM):
    options = CcddConfig
    causal = False
    default_time_conditioning = False
    # the frozen encoder of objective.ccdd.encoder_run with its statistics, from the source the build step
    # hands in (mdm.ccdd_encoder.EncoderSource: the run and files are read there, on first use)
    frozen_parts = ("ccdd_encoder",)

    def __init__(self, cfg: Config, vocab: Vocab, ccdd_encoder=None):
        super().__init__(cfg, vocab)
        c = self.ccfg = cfg.objective.ccdd
        self.continuous = c.continuous
        self.d_cont = c.d_cont if c.continuous else 0
        # ``source(objective, statistics=True) -> FrozenEncoder`` (None: built without one; a test may set
        # ``_encoder`` to a FrozenEncoder directly)
        self.encoder_source = ccdd_encoder
        self._encoder: FrozenEncoder | None = None

    def build_model(self, cfg: Config, vocab: Vocab):
        """The shared backbone wrapped with the z input and the continuous head (none when continuous=false)."""
        from mdm.models.ccdd import CoevolutionNet

        return CoevolutionNet(super().build_model(cfg, vocab), self.d_cont)

    # -- the Gaussian process on z --------------------------------------------------------------------
    def coefficients(self, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(a_s, b_s) with z_s = a_s z0 + b_s eps; s (B,) -> two (B,) tensors. a_1 = 0 exactly."""
        s = s.float()
        if self.ccfg.process == "vp":
            a = torch.where(s >= 1, torch.zeros_like(s), torch.cos(0.5 * math.pi * s))
            return a, torch.sin(0.5 * math.pi * s)
        return 1 - s, s

    def noise(self, z0: torch.Tensor, s: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """z_s = a_s z0 + b_s eps. z0, eps: (B, L, d); s: (B,)."""
        a, b = self.coefficients(s)
        return a[:, None, None] * z0 + b[:, None, None] * eps

    def target(self, z0: torch.Tensor, eps: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """What the continuous head regresses: eps, z0 or the velocity (see the module docstring)."""
        if self.ccfg.target == "eps":
            return eps
        if self.ccfg.target == "x0":
            return z0
        if self.ccfg.process == "flow":
            return eps - z0
        a, b = self.coefficients(s)
        return a[:, None, None] * eps - b[:, None, None] * z0

    def predictions(
        self, out: torch.Tensor, z: torch.Tensor, s: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(z0_hat, eps_hat) from the head output ``out`` at z_s (all (B, L, d)); inverts :meth:`target`."""
        a, b = (c[:, None, None] for c in self.coefficients(s))
        tgt = self.ccfg.target
        if tgt == "velocity":
            if self.ccfg.process == "vp":  # a^2 + b^2 = 1: z0 = a z - b v, eps = b z + a v
                return a * z - b * out, b * z + a * out
            return z - b * out, z + a * out  # flow: z0 = z - s v, eps = z + (1 - s) v
        if tgt == "eps":
            return (z - b * out) / a.clamp_min(_MIN_COEF), out
        return out, (z - a * out) / b.clamp_min(_MIN_COEF)

    def link(self, t: torch.Tensor) -> torch.Tensor:
        """The deterministic continuous time at token time t: shared/independent -> t, power -> t^gamma."""
        return t.pow(self.ccfg.time_power) if self.ccfg.time_link == "power" else t

    def continuous_times(self, t: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """s (B,) for training: the link rule, then s = 1 for a ``cont_drop`` fraction of sequences."""
        c = self.ccfg
        if c.time_link == "independent":
            u = noise.rand(t.shape, generator, device=t.device)
            s = self.ocfg.t_min + (1 - self.ocfg.t_min) * u
        else:
            s = self.link(t)
        if c.cont_drop > 0:
            drop = noise.rand(t.shape, generator, device=t.device) < c.cont_drop
            s = torch.where(drop, torch.ones_like(s), s)
        return s.float()

    # -- the frozen encoder -------------------------------------------------------------------------------
    def encoder(self, device: torch.device | str = "cpu") -> FrozenEncoder:
        """The frozen encoder with its statistics, from the handed-in source on first use."""
        if self._encoder is None:
            self._encoder = self._from_source(statistics=True)
        if self._encoder.mean.device != torch.device(device):
            self._encoder.to(device)
        return self._encoder

    def _from_source(self, statistics: bool) -> FrozenEncoder:
        c = self.ccfg
        check_encoder_options(c.encoder, c.encoder_run, c.encoder_input)
        if self.encoder_source is None:
            raise EncoderError(
                f"objective.ccdd.encoder_run={c.encoder_run!r}: this CCDD objective was built without its "
                f"encoder; build it with mdm.loading.build_objective (which hands it the encoder source), "
                f"not mdm.diffusion.build_objective"
            )
        return self.encoder_source(self, statistics=statistics)

    def statistics_features(
        self, enc: FrozenEncoder, batches: Iterable[dict], generator: torch.Generator
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        """(raw features (B, L, W), valid (B, L) | None) of training batches, what the statistics are
        fitted on (:func:`mdm.diffusion.encoders.fit_statistics`): f(x0), or for ``encoder_input=masked``
        f(x_t) at t ~ U[t_min, 1] with x_t from the forward process (``generator``: t, then the masks)."""
        for batch in batches:
            x, valid = batch["input_ids"], batch.get("attention_mask")
            if self.ccfg.encoder_input == "masked":
                t = self.ocfg.t_min + (1 - self.ocfg.t_min) * torch.rand(x.shape[0], generator=generator)
                x_t, _ = self.mask_tokens(x, t, valid, generator)
                yield enc.features(x_t, t, valid), valid
            else:
                yield enc.features(x, None, valid), valid

    # -- counting -------------------------------------------------------------------------------------------
    def extra_flops_per_token(self, counts) -> float:
        """Per training token: one forward of the frozen encoder (nothing for an embedding lookup; the first
        ``layer`` blocks of a hidden encoder) and its projection, less z_in's input gradient, which is
        never computed (z needs none); docs/MATH.md, "Counting". Needs the encoder run, not its statistics."""
        if not self.continuous:
            return 0.0
        from mdm.flops import forward_flops_per_token

        enc = self._encoder if self._encoder is not None else self._from_source(statistics=False)
        spec = enc.spec
        f = (
            0.0
            if spec.kind == "embedding"
            else forward_flops_per_token(enc.network, counts.seq_len, spec.layer)
        )
        return _encoder_flops(f, spec.width, self.d_cont, counts.d_model)

    @classmethod
    def config_counts(cls, cfg: Config, vocab: Vocab, read_run_config) -> Counts:
        """:meth:`counts` of the built network from the configs: this run's and the encoder run's
        (``config.yaml``, read by ``read_run_config``; its weights are not loaded)."""
        c = cfg.objective.ccdd
        tc = cls.time_conditioning_of(cfg)
        counts = backbone_counts(cfg.model, vocab.size, tc)
        if not c.continuous:
            return counts
        D = counts.d_model
        heads = (c.d_cont + LEVEL_FEATURES) * D + D * c.d_cont  # z_in and cont_head, bias-free matmuls
        counts = replace(
            counts,
            params_total=counts.params_total + heads,
            params_non_embedding=counts.params_non_embedding + heads,
            n_matmul=counts.n_matmul + heads,
        )
        check_encoder_options(c.encoder, c.encoder_run, c.encoder_input)
        enc_cfg = read_run_config(c.encoder_run, "objective.ccdd.encoder_run")
        enc_cls = lookup(OBJECTIVES, "objective", enc_cfg.objective.name)
        enc_tc = enc_cls.time_conditioning_of(enc_cfg)
        dims = resolve_dims(enc_cfg.model)
        f = 0.0
        if c.encoder == "hidden":
            try:
                k = resolve_layer(c.encoder_layer, dims.depth)
            except ValueError as e:
                raise EncoderError(f"objective.ccdd.encoder_layer={c.encoder_layer}: {e}") from e
            f = forward_flops(enc_cfg.model, vocab.size, enc_tc, counts.seq_len, k)
        return replace(counts, extra_flops_per_token=_encoder_flops(f, dims.d_model, c.d_cont, D))

    def encode(
        self, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor, valid: torch.Tensor | None = None
    ) -> torch.Tensor:
        """z0 (B, L, d_c) of clean tokens x0 (or of x_t for the leak-free ``encoder_input=masked``)."""
        return self.encoder(x0.device)(x0, x_t, t, valid)

    # -- losses -----------------------------------------------------------------------------------------------
    def terms(
        self,
        model,
        batch: dict[str, torch.Tensor],
        t: torch.Tensor,
        generator: torch.Generator | None = None,
        blind: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(discrete term (B,), summed per-token continuous MSE (B,), continuous token count ()).

        Random draws in order: masks (exactly as MDLM's), the continuous times, eps. ``blind``: s = 1 for
        every sequence (no encoder call; the MSE is then not computed and returned as zeros).
        """
        x = batch["input_ids"]  # (B, L)
        valid = batch.get("attention_mask")
        z_tok, masked = self.mask_tokens(x, t, valid, generator)  # (B, L)
        s = torch.ones_like(t) if blind else self.continuous_times(t, generator)  # (B,)
        eps = noise.randn((*x.shape, self.d_cont), generator, device=x.device)  # (B, L, d)
        if blind:
            z0, zs = None, eps
        else:
            z0 = self.encode(x, z_tok, t, valid)  # (B, L, d)
            zs = self.noise(z0, s, eps)
        logits, out = model(z_tok, self.sigma_input(t), z=zs, level=s, key_mask=valid)
        nll = self.masked_nll(logits, x, masked)  # (B, L)
        disc = self.schedule.mask_weight(t) * nll.sum(-1)  # (B,)
        n = torch.tensor(float(x.numel()), device=x.device) if valid is None else valid.sum().float()
        if blind:
            return disc, torch.zeros_like(disc), n
        se = (out.float() - self.target(z0, eps, s)).pow(2).mean(-1)  # (B, L)
        if valid is not None:
            se = torch.where(valid, se, torch.zeros_like(se))
        return disc, se.sum(-1), n

    def denoiser_log_probs(
        self, model, z: torch.Tensor, t: torch.Tensor, generator: torch.Generator | None = None, **kw
    ) -> torch.Tensor:
        """The z-blind denoiser p_theta(x0 | z_t, eps at level 1), (B, L, V), with SUBS carry-over.

        What the token-only samplers (ancestral, cached, first-hitting, ...) and conditional evaluations
        use: a fresh eps per call, so their draws follow the model whose bound is ``bound=z_blind``.
        The joint reverse process (continuous z evolving with the tokens) is the ``ccdd`` sampler.
        """
        if not self.continuous:
            return super().denoiser_log_probs(model, z, t, **kw)
        eps = noise.randn((*z.shape, self.d_cont), generator, device=z.device)  # (B, L, d)
        level = torch.ones(z.shape[0], device=z.device)

        def blind(x, sigma, **k):
            return model(x, sigma, z=eps, level=level, **k)[0]

        return super().denoiser_log_probs(blind, z, t, **kw)

    def sequence_loss(self, model, batch, t, generator=None):
        """The discrete term per sequence (B,) in nats (see the module docstring for what it bounds)."""
        if not self.continuous:
            return super().sequence_loss(model, batch, t, generator)
        return self.terms(model, batch, t, generator, blind=self.ccfg.bound == "z_blind")[0]

    def loss(self, model, batch, t=None, generator=None) -> LossOut:
        """sum = discrete term + lambda_c * MSE (summed over sequences); metrics hold the two terms' sums."""
        x = batch["input_ids"]
        if t is None:
            t = self.sample_times(x.shape[0], x.device)
        count = self.scored_tokens(batch)
        if not self.continuous:
            disc = super().sequence_loss(model, batch, t, generator).sum()
            return LossOut(sum=disc, count=count, metrics={"loss_discrete": disc.detach()})
        disc, mse, n = self.terms(model, batch, t, generator)
        total = disc.sum() + self.ccfg.lambda_cont * mse.sum()
        metrics = {
            "loss_discrete": disc.sum().detach(),
            "loss_cont_mse": mse.sum().detach(),
            "cont_tokens": n,
        }
        return LossOut(sum=total, count=count, metrics=metrics)
