"""The objective interface: ``loss(model, batch) -> LossOut(sum, count)``.

An objective owns the maths of one training criterion (forward noising, weighting, likelihood bound);
the model is any callable ``model(tokens, sigma=None, ...) -> logits`` (the shared backbone). Losses are
returned as a sum of per-token losses and the number of tokens it is normalised by, so callers divide
by a global count and never average averages (CONTRIBUTING.md, "Losses are sums and counts").
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F

from mdm.config import Config, ConfigError
from mdm.config_counts import time_conditioning
from mdm.derived import backbone_counts
from mdm.diffusion import noise
from mdm.diffusion.graphs import absorb
from mdm.diffusion.schedules import Schedule, build_schedule
from mdm.flops import Counts, count
from mdm.options import invalid_choice
from mdm.vocab import Vocab


@dataclass
class LossOut:
    sum: torch.Tensor  # () sum of per-token losses in nats
    count: torch.Tensor  # () number of tokens the sum is normalised by
    metrics: dict[str, torch.Tensor] = field(default_factory=dict)  # extra sums to log (already summed)


def stratified_times(
    n: int,
    t_min: float,
    device: torch.device | str = "cpu",
    offset: int = 0,
    total: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """t_i = t_min + (1 - t_min) ((u + i/total) mod 1) for i = offset .. offset+n-1 (MDLM's antithetic sampling).

    One uniform ``u`` is shared by the whole global batch of ``total`` sequences; a rank passes its
    ``offset`` so the strata are disjoint across ranks (all ranks must draw the same u: same seed).
    """
    total = n if total is None else total
    u = torch.rand((), device=device, generator=generator, dtype=torch.float64)
    i = torch.arange(offset, offset + n, device=device, dtype=torch.float64)
    t = t_min + (1 - t_min) * torch.remainder(u + i / total, 1.0)
    return t.float()


class Objective:
    """Base class. Subclasses set ``causal`` and implement :meth:`sequence_loss`."""

    registry_name = "?"
    causal: bool = False  # attention mask of the backbone
    default_time_conditioning: bool = False
    supports_time_conditioning: bool = True
    uses_schedule: bool = True
    #: its own options: a dataclass declared with ``@objective_options`` (mdm/options.py), else None
    options: type | None = None
    # -- capabilities: what samplers and evaluations may ask of it, declared here and read by them (never
    #    guessed from the methods it happens to have, nor from its name) -----------------------------------
    exact_likelihood: bool = (
        False  # sequence_loss is the exact NLL (no time, no noise): mdm.eval.bound.is_exact
    )
    has_denoiser: bool = False  # denoiser_log_probs(model, z, t): p_theta(x0 | z_t), carry-over at unmasked
    graph_name: str | None = "absorb"  # the forward process its denoiser inverts (SEDD sets its graph's)
    has_scores: bool = False  # log_scores(model, x, t) and ``graph`` (mdm/diffusion/graphs.py)
    has_conditional_loss: bool = False  # conditional_sequence_loss(model, batch, t, target, generator)
    default_sampler: str = "ancestral"  # what `mdm sample` uses without --sampler
    bound_estimator: str | None = (
        None  # its own likelihood estimate (mdm.eval.bound.OWN_BOUNDS), else sequence_loss
    )

    #: what it is built on, handed in by the build step (:func:`mdm.loading.build_objective`) as keyword
    #: arguments of ``__init__`` named here: ``load_run`` (the run loader, EDLM-NCE's base run),
    #: ``ccdd_encoder`` (CCDD's frozen encoder source). Nothing in mdm/diffusion reads a file or a run.
    frozen_parts: tuple[str, ...] = ()
    load_run = None  # (path, device) -> mdm.loading.LoadedRun, handed in by the build step

    def frozen_run(self, path, key: str, device="cpu"):
        """The trained run at ``path`` (config field ``key``) this objective is built on, loaded by the
        ``load_run`` the build step handed in (:func:`mdm.loading.build_objective`)."""
        if self.load_run is None:
            raise ConfigError(
                f"{key}={path}: objective {self.registry_name!r} is built on a trained run; build it with "
                f"mdm.loading.build_objective (which hands it the run loader), not mdm.diffusion.build_objective"
            )
        return self.load_run(path, device)

    def __init__(self, cfg: Config, vocab: Vocab):
        self.cfg, self.vocab = cfg, vocab
        self.ocfg = cfg.objective
        bad = invalid_choice(self.ocfg, self.registry_name)  # its own options (config.validate checks too)
        if bad:
            raise ConfigError(bad)
        self.schedule: Schedule | None = build_schedule(cfg.schedule) if self.uses_schedule else None
        self.time_conditioned = self.time_conditioning_of(cfg)

    #: options of :func:`mdm.flops.count` for the trained network (``per_sequence``, ``unused_head``)
    count_options: dict = {}

    def extra_flops_per_token(self, counts: Counts) -> float:
        """Training FLOPs per token beyond one forward and backward of the trained network (``counts``):
        frozen networks' forwards and repeated passes. 0 unless the objective makes such passes."""
        return 0.0

    def counts(self, model) -> Counts:
        """Parameters and training FLOPs per token of this objective with ``model`` (docs/MATH.md, "Counting")."""
        c = count(model, **self.count_options)
        return replace(c, extra_flops_per_token=self.extra_flops_per_token(c))

    @classmethod
    def time_conditioning_of(cls, cfg: Config) -> bool:
        """``model.time_conditioning`` of a run of this objective (None: its default); refused when it
        takes none (:func:`mdm.config_counts.time_conditioning`)."""
        return time_conditioning(
            cfg, cls.registry_name, cls.default_time_conditioning, cls.supports_time_conditioning
        )

    @classmethod
    def config_counts(cls, cfg: Config, vocab: Vocab, read_run_config) -> Counts:
        """What :meth:`counts` gives on the built network, from the config alone (no tensor, no checkpoint,
        no network: the sweep planner's count, mdm/sweep/counts.py). ``read_run_config(path, key) ->
        Config`` reads a frozen run's config (:func:`mdm.run_config.read_run_config`). By default the
        plain backbone, one forward and backward per token; an objective that overrides
        :meth:`build_model`, ``count_options`` or :meth:`extra_flops_per_token` overrides this too
        (tests/sweep/test_plan_counts.py checks every registered objective against its built network)."""
        return backbone_counts(cfg.model, vocab.size, cls.time_conditioning_of(cfg))

    def build_model(self, cfg: Config, vocab: Vocab):
        """The network this objective trains: by default the shared backbone. Objectives that wrap it
        (an extra head, a frozen base model) override this; frozen parts set ``requires_grad=False``."""
        from mdm.models.backbone import Transformer  # models know nothing of diffusion; we know them

        return Transformer(cfg.model, vocab.size, causal=self.causal, time_conditioning=self.time_conditioned)

    # -- pieces shared by the absorbing objectives ---------------------------------------------------
    def sample_times(
        self,
        n: int,
        device: torch.device | str,
        offset: int = 0,
        total: int | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        if self.ocfg.antithetic:
            return stratified_times(n, self.ocfg.t_min, device, offset, total, generator)
        u = torch.rand(n, device=device, generator=generator)
        return self.ocfg.t_min + (1 - self.ocfg.t_min) * u

    def sigma_input(self, t: torch.Tensor) -> torch.Tensor | None:
        """What the backbone receives as its noise level: sigma_bar(t) if time-conditioned, else None."""
        return self.schedule.total_noise(t) if self.time_conditioned else None

    def mask_tokens(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        valid: torch.Tensor | None = None,
        generator: noise.Noise = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Absorbing forward process q(z_t | x): mask each token with probability 1 - alpha_t.

        x: (B, L); t: (B,). Returns (z_t (B, L), masked (B, L) bool). Padding (valid=False) is never masked.
        """
        return absorb(x, (1 - self.schedule.alpha(t))[:, None], self.vocab.mask_id, valid, generator)

    def carry_over(self, logp: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """SUBS carry-over: at positions where z^l is not the mask, log p(x^l = v) is 0 at v = z^l and -inf
        elsewhere; masked positions keep ``logp`` (B, L, V)."""
        unmasked = z != self.vocab.mask_id
        if not unmasked.any():
            return logp
        carry = torch.full_like(logp, float("-inf")).scatter_(
            -1, z.clamp(max=logp.shape[-1] - 1).unsqueeze(-1), 0.0
        )
        return torch.where(unmasked.unsqueeze(-1), carry, logp)

    def masked_nll(self, logits: torch.Tensor, x: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
        """-log p(x^l) over real tokens at masked positions, 0 at the others (carried over): (B, L) float32."""
        nll = self.real_token_nll(logits, x)
        return torch.where(masked, nll, torch.zeros_like(nll))

    def clean_log_probs(self, logits: torch.Tensor) -> torch.Tensor:
        """log p(x^l = v | ...) over real tokens: mask and padding ids get -inf (SUBS zero-masking). float32.

        Without gradients the -inf is written in place into the (float32) logits: pass a tensor the
        caller no longer needs unmasked (a fresh network output; re-masking a cached one is harmless).
        With gradients it is out of place (log-softmax over the real columns, padded with -inf), since
        an in-place write would make backward clone the whole (B, L, V) gradient and zero-fill a slice
        of it. Both give exactly the values (and gradients) of writing -inf into the logits.
        """
        logits = logits.float()
        M, V = self.vocab.mask_id, logits.shape[-1]
        if V <= M:
            return torch.log_softmax(logits, dim=-1)
        if not logits.requires_grad:
            logits[..., M:] = float("-inf")
            return torch.log_softmax(logits, dim=-1)
        return F.pad(torch.log_softmax(logits[..., :M], dim=-1), (0, V - M), value=float("-inf"))

    def real_token_nll(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """-log p(target^l) under the softmax over real tokens, (...,) float32 for logits (..., V).

        Equal bit for bit (values and gradients) to ``-clean_log_probs(logits).gather(-1, target)``, as
        one fused cross-entropy: the non-real columns get -inf by adding a cached (V,) bias of 0 / -inf
        (x + 0 == x), so no (B, L, V) log-probabilities are kept and backward has no copy or zero-fill
        (the gradient there is exactly 0: probability 0, not a target). ``target``: real ids (< mask_id).
        """
        logits = logits.float()
        V = logits.shape[-1]
        if V > self.vocab.mask_id:
            logits = logits + self._mask_bias(V, logits.device)
        flat = F.cross_entropy(logits.reshape(-1, V), target.reshape(-1), reduction="none")
        return flat.view(target.shape)

    def _mask_bias(self, V: int, device: torch.device) -> torch.Tensor:
        """(V,) float32: 0 at real token ids, -inf at mask and padding ids; cached per (V, device)."""
        cache = self.__dict__.setdefault("_mask_bias_cache", {})
        if (V, device) not in cache:
            bias = torch.zeros(V, device=device)
            bias[self.vocab.mask_id :] = float("-inf")
            cache[(V, device)] = bias
        return cache[(V, device)]

    # -- the interface ------------------------------------------------------------------------------
    def scored_tokens(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Number of tokens the loss of this batch is normalised by (every real position)."""
        mask = batch.get("attention_mask")
        x = batch["input_ids"]
        return torch.tensor(float(x.numel()), device=x.device) if mask is None else mask.sum().float()

    def sequence_loss(
        self, model, batch: dict[str, torch.Tensor], t: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """One Monte Carlo estimate per sequence of its negative log-likelihood bound, in nats: (B,)."""
        raise NotImplementedError

    def loss(
        self,
        model,
        batch: dict[str, torch.Tensor],
        t: torch.Tensor | None = None,
        generator: noise.Noise = None,
    ) -> LossOut:
        """Training loss over a (micro-)batch: summed per-sequence bounds and the token count.

        ``t`` (B,) are the sequences' times; the training module draws them for the whole global batch
        at once (stratified) and slices them per micro-batch. Drawn here when not given. ``generator``:
        the sequences' noise (the training module passes their :class:`~mdm.diffusion.noise.KeyedNoise`).
        """
        x = batch["input_ids"]
        if t is None:
            t = self.sample_times(x.shape[0], x.device)
        per_seq = self.sequence_loss(model, batch, t, generator)
        return LossOut(sum=per_seq.sum(), count=self.scored_tokens(batch))
