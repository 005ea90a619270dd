"""EDLM: a sequence-level energy correcting a masked diffusion model's factorised denoiser (Xu et al. 2024).

The base model (an MDLM or RADD run of this project, frozen) gives a factorised denoiser

    mu_theta(x0 | x_t) = prod_l mu_theta(x0^l | x_t)        (carry-over: unmasked l are copied from x_t)

and EDLM replaces it by the residual energy-based denoiser (EDLM eq. 7; docs/MATH.md "EDLM")

    p(x0 | x_t) = mu_theta(x0 | x_t) exp(-E(x0, x_t)) / Z(x_t),   Z(x_t) = E_{x0 ~ mu_theta(.|x_t)} exp(-E).

Lower energy means more likely. Two energies:

* AR energy (objective ``edlm_ar``, nothing to train): E = -log p_AR(x0) + log mu_theta(x0 | x_t), so that
  p(x0 | x_t) ∝ p_AR(x0) on the sequences consistent with x_t, and Z(x_t) = P_AR(unmasked tokens of x_t)
  (not 1). This project's AR objective scores tokens 2..L given the first; the first token's probability
  is taken from the base denoiser at the all-mask input, pi_1(v) = mu_theta(x^1 = v | m^L), the data's
  first-token marginal when the base model is exact. So log p_AR(x0) = log pi_1(x0^1) + sum_{l>=2} log
  p_AR(x0^l | x0^{<l}). (With ``data.add_bos`` the first token is always BOS and pi_1 is ~1 on it.)
* NCE energy (objective ``edlm_nce``): a bidirectional transformer initialised from the base model's
  backbone with a scalar head (mdm/models/energy.py), input x0 plus a flag on the positions masked in
  x_t (x0 and the flags determine x_t). Trained by noise-contrastive estimation (Gutmann & Hyvärinen
  2010): positives are real x0 with x_t ~ q(x_t | x0); negatives are nu samples x0 ~ mu_theta(. | x_t) of
  the same x_t. With p = mu exp(-E), the log-odds "data rather than one of the nu noise samples" is
  h = -E - log nu, and the per-sequence loss is

      l = softplus(E(x0+) + log nu) + sum_{j=1..nu} softplus(-E(x0-_j) - log nu).

  Its minimiser is E* = -log( q(x0|x_t) / mu_theta(x0|x_t) ) with q the true posterior, which is
  self-normalised (Z = 1); nu = 1 gives the paper's loss.

Nothing here knows of Lightning or loads a run: ``edlm_nce`` is handed the base run's loader by the build
step (:func:`mdm.loading.build_objective`); the energies of trained runs are built by
:func:`mdm.loading.load_energy` / :func:`mdm.loading.energy_from`.
Generation lives in mdm/sampling/importance.py, the likelihood estimate in mdm/eval/edlm.py.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import replace

import torch
import torch.nn.functional as F

from mdm.config import Config, ConfigError
from mdm.config_counts import forward_flops
from mdm.derived import backbone_counts
from mdm.diffusion import noise
from mdm.diffusion.base import Objective
from mdm.diffusion.edlm_options import EdlmConfig
from mdm.diffusion.registry import OBJECTIVES, lookup, register_objective
from mdm.flops import Counts
from mdm.vocab import Vocab

BASE_OBJECTIVES = ("mdlm", "radd")  # absorbing masked diffusion with a denoiser mu_theta(x0 | x_t)


# ---------------------------------------------------------------------------------------------------
# Pure maths
# ---------------------------------------------------------------------------------------------------
def denoiser_log_probs(objective: Objective, model, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """log mu_theta(x0^l = v | z_t), (B, L, V) float32, -inf on ids >= mask_id, carry-over at unmasked l."""
    own = getattr(objective, "denoiser_log_probs", None)
    if own is not None:
        return own(model, z, t)
    return objective.carry_over(objective.clean_log_probs(model(z, objective.sigma_input(t))), z)  # (B, L, V)


def sequence_log_prob(logp: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """log mu(x | z) = sum_l logp[l, x^l] in float64.

    logp: (N, L, V); x: (N, L) -> (N,) or (N, K, L) -> (N, K) (K candidates sharing one z).
    Carry-over makes unmasked positions contribute 0 when x agrees with z (and -inf when it does not).
    """
    if x.dim() == 2:
        return logp.gather(-1, x.unsqueeze(-1)).squeeze(-1).double().sum(-1)  # (N,)
    lp = logp.gather(-1, x.transpose(1, 2))  # (N, L, K)
    return lp.double().sum(1)  # (N, K)


def sample_from_log_probs(
    logp: torch.Tensor, k: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """k independent draws x0 ~ prod_l softmax(logp[l]) per row, by inverse CDF in float64: (N, L, V) -> (N, k, L).

    One CDF per position, k uniforms per position (no (N, k, L, V) tensor). Zero-probability ids (mask,
    padding) are never drawn: ``searchsorted(right=True)`` skips flat stretches of the CDF.
    """
    p = logp.double().exp()  # (N, L, V)
    cdf = p.cumsum(-1)  # (N, L, V)
    u = noise.rand(p.shape[:-1] + (k,), generator, device=p.device, dtype=torch.float64)  # (N, L, k)
    idx = torch.searchsorted(cdf, u * cdf[..., -1:], right=True).clamp_(max=p.shape[-1] - 1)  # (N, L, k)
    return idx.transpose(1, 2).contiguous()  # (N, k, L)


def importance_log_weights(energy: torch.Tensor) -> torch.Tensor:
    """Self-normalised log weights log w_j = -E_j - logsumexp_j(-E_j) over the last dim, in float64.

    Candidates drawn from mu_theta(.|x_t) and reweighted by exp(-E) target p ∝ mu exp(-E): the LOWER the
    energy, the LARGER the weight. Infinite energies get weight 0; all-infinite rows raise.
    """
    log_w = -energy.double()
    norm = torch.logsumexp(log_w, dim=-1, keepdim=True)
    if not torch.isfinite(norm).all():
        raise FloatingPointError(
            "importance weights: every candidate of some row has infinite (or NaN) energy"
        )
    return log_w - norm


def effective_sample_size(log_w: torch.Tensor) -> torch.Tensor:
    """ESS = 1 / sum_j w_j^2 of normalised log weights (..., k) -> (...,): 1 (degenerate) .. k (uniform)."""
    return torch.exp(-torch.logsumexp(2 * log_w, dim=-1))


def nce_positive_term(e_pos: torch.Tensor, num_noise: int) -> torch.Tensor:
    """-log sigma(h) with h = -E - log nu: the loss of one real sequence, (B,) -> (B,)."""
    return F.softplus(e_pos + math.log(num_noise))


def nce_negative_term(e_neg: torch.Tensor, num_noise: int) -> torch.Tensor:
    """-log(1 - sigma(h)) with h = -E - log nu: the loss of each noise sample, elementwise."""
    return F.softplus(-e_neg - math.log(num_noise))


def nce_loss(e_pos: torch.Tensor, e_neg: torch.Tensor) -> torch.Tensor:
    """Per-sequence NCE loss (module docstring): e_pos (B,), e_neg (B, nu) -> (B,) nats."""
    nu = e_neg.shape[-1]
    return nce_positive_term(e_pos, nu) + nce_negative_term(e_neg, nu).sum(-1)


# ---------------------------------------------------------------------------------------------------
# Energies
# ---------------------------------------------------------------------------------------------------
class Energy:
    """E(x0, x_t) of the residual denoiser p(x0|x_t) ∝ mu_theta(x0|x_t) exp(-E(x0, x_t)), with its base model.

    ``energy(x0 (N, L), z (N, L), t (N,), log_mu (N,)) -> (N,) float64``, where ``log_mu`` is
    log mu_theta(x0 | z) (used by the AR energy). Every x0 must agree with z on z's unmasked positions.
    """

    kind = "?"

    def __init__(self, base_objective: Objective, base_model):
        self.base_objective, self.base_model = base_objective, base_model
        self.vocab: Vocab = base_objective.vocab
        self.schedule = base_objective.schedule

    @property
    def mask_id(self) -> int:
        return self.vocab.mask_id

    @property
    def device(self) -> torch.device:
        return next(self.base_model.parameters()).device

    def denoiser_log_probs(self, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return denoiser_log_probs(self.base_objective, self.base_model, z, t)

    def energy(
        self, x0: torch.Tensor, z: torch.Tensor, t: torch.Tensor, log_mu: torch.Tensor
    ) -> torch.Tensor:
        raise NotImplementedError


class ArEnergy(Energy):
    """E = -log p_AR(x0) + log mu_theta(x0 | x_t) (module docstring, including the first-token prior)."""

    kind = "ar"

    def __init__(self, base_objective: Objective, base_model, ar_objective: Objective, ar_model):
        super().__init__(base_objective, base_model)
        self.ar_objective, self.ar_model = ar_objective, ar_model
        self._first: dict[tuple, torch.Tensor] = {}

    def first_token_log_prior(self, seq_len: int, device: torch.device) -> torch.Tensor:
        """log pi_1(v) = log mu_theta(x^1 = v | all masked), (V,) float32, cached per (length, device)."""
        key = (seq_len, str(device))
        if key not in self._first:
            z = torch.full((1, seq_len), self.mask_id, dtype=torch.long, device=device)
            with torch.no_grad():
                self._first[key] = self.denoiser_log_probs(z, torch.ones(1, device=device))[0, 0]
        return self._first[key]

    def log_p_ar(self, x0: torch.Tensor) -> torch.Tensor:
        """log p_AR(x0) = log pi_1(x0^1) + sum_{l>=2} log p_AR(x0^l | x0^{<l}): (N, L) -> (N,) float64."""
        ctx = getattr(getattr(self.ar_model, "dims", None), "seq_len", None)
        if ctx is not None and x0.shape[1] - 1 > ctx:
            raise ValueError(
                f"the AR model's context ({ctx}) is shorter than the {x0.shape[1] - 1} tokens it must score"
            )
        logp = self.ar_objective.log_probs(self.ar_model, x0[:, :-1])  # (N, L-1, V)
        ll = logp.gather(-1, x0[:, 1:].unsqueeze(-1)).squeeze(-1).double().sum(-1)  # (N,)
        first = self.first_token_log_prior(x0.shape[1], x0.device)  # (V,)
        return ll + first[x0[:, 0]].double()

    def energy(self, x0, z, t, log_mu):
        return -self.log_p_ar(x0) + log_mu.double()


class NceEnergy(Energy):
    """E = EnergyNet(x0, flags = [z == mask], sigma(t)) (mdm/models/energy.py), trained by ``edlm_nce``."""

    kind = "nce"

    def __init__(self, base_objective: Objective, base_model, net):
        super().__init__(base_objective, base_model)
        self.net = net

    def energy(self, x0, z, t, log_mu=None):
        return self.net(x0, z == self.mask_id, self.base_objective.sigma_input(t)).double()


# ---------------------------------------------------------------------------------------------------
# Checking the runs EDLM is built on (loaded outside this package: mdm/loading.py)
# ---------------------------------------------------------------------------------------------------
def freeze(model) -> None:
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)


def edlm_source(objective) -> str | None:
    """What an EDLM energy can be built from this (loaded) objective: ``"nce"`` (an edlm_nce run: its
    trained energy), ``"base"`` (a masked diffusion base run, with an AR run for the AR energy) or None."""
    if isinstance(objective, EdlmNCE):
        return "nce"
    if getattr(objective, "registry_name", "?") in BASE_OBJECTIVES and not getattr(
        objective, "causal", False
    ):
        return "base"
    return None


def check_base_run(run, path, key: str = "objective.edlm.base_run"):
    """A loaded base run (EMA weights) must be a masked diffusion model (mdlm | radd); returned frozen."""
    name = getattr(run.objective, "registry_name", "?")
    if edlm_source(run.objective) != "base":
        raise ConfigError(
            f"{key}={path} was trained with objective {name!r}; EDLM needs a masked diffusion base run "
            f"(objective {' or '.join(BASE_OBJECTIVES)})"
        )
    freeze(run.model)
    return run


def tokenizer_identity(cfg: Config, vocab: Vocab) -> dict[str, object]:
    """What makes two runs' token ids mean the same thing: the vocabulary layout and the tokenizer recipe."""
    d = cfg.data
    ident: dict[str, object] = {f"vocab.{k}": v for k, v in dataclasses.asdict(vocab).items()}
    if d.name == "synthetic":
        ident["data.tokenizer"] = "identity (synthetic)"
        ident["data.synthetic.vocab"] = d.synthetic.vocab
    else:
        ident["data.tokenizer"] = d.tokenizer
        if d.tokenizer == "bpe":  # a BPE is trained on its corpus: same recipe, same merges
            ident.update({"data.name": d.name, "data.vocab_size": d.vocab_size, "data.path": d.path})
    return ident


def check_same_tokenizer(
    cfg_a: Config, vocab_a: Vocab, what_a: str, cfg_b: Config, vocab_b: Vocab, what_b: str
) -> None:
    """Raise ConfigError listing every difference between the two tokenizer identities."""
    a, b = tokenizer_identity(cfg_a, vocab_a), tokenizer_identity(cfg_b, vocab_b)
    diffs = [f"{k}: {a.get(k)!r} vs {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    if diffs:
        raise ConfigError(f"{what_a} and {what_b} use different tokenizers/vocabularies ({'; '.join(diffs)})")


def check_ar_run(
    run, path, base_cfg: Config, base_vocab: Vocab, base_desc: str, key: str = "objective.edlm.ar_run"
):
    """A loaded AR run for the AR energy: an ``ar`` run with the base run's tokenizer and enough context;
    returned frozen."""
    name = getattr(run.objective, "registry_name", "?")
    if name != "ar":
        raise ConfigError(
            f"{key}={path} was trained with objective {name!r}; the AR energy needs an 'ar' run"
        )
    check_same_tokenizer(run.cfg, run.vocab, f"the AR run {path}", base_cfg, base_vocab, base_desc)
    L, ctx = base_cfg.model.seq_len, run.model.dims.seq_len
    if ctx < L - 1:
        raise ConfigError(
            f"{key}={path} has context model.seq_len={ctx} < {L - 1} (the base run's length - 1)"
        )
    freeze(run.model)
    return run


def check_edlm_config(e: EdlmConfig) -> None:
    """EDLM's option ranges (:meth:`EdlmConfig.invalid`), for the users of ``objective.edlm`` that are not
    an edlm_nce objective (whose construction checks them): edlm_ar's energy, the sampler."""
    bad = e.invalid()
    if bad:
        raise ConfigError(bad)


def _require_base_run(e: EdlmConfig) -> None:
    if not e.base_run:
        raise ConfigError(
            "objective.edlm.base_run is required for objective edlm_nce (a trained mdlm/radd run)"
        )


_ARCH_KEYS = ("mlp_ratio", "seq_len", "cond_dim", "tie_embeddings", "norm_eps", "rope_base")


def _check_model_matches(cfg: Config, base_cfg: Config, tc: bool, base_tc: bool, path: str) -> None:
    from mdm.models.backbone import resolve_dims

    mine, theirs = resolve_dims(cfg.model), resolve_dims(base_cfg.model)
    diffs = [
        f"model.{k}: {getattr(mine, k)} vs {getattr(theirs, k)}"
        for k in ("depth", "d_model", "n_heads")
        if getattr(mine, k) != getattr(theirs, k)
    ]
    diffs += [
        f"model.{k}: {getattr(cfg.model, k)} vs {getattr(base_cfg.model, k)}"
        for k in _ARCH_KEYS
        if getattr(cfg.model, k) != getattr(base_cfg.model, k)
    ]
    if tc != base_tc:
        diffs.append(f"model.time_conditioning (resolved): {tc} vs {base_tc}")
    if diffs:
        raise ConfigError(
            f"the energy network is initialised from the base run {path}, so model.* must match it; "
            f"this config vs the base run: {'; '.join(diffs)}"
        )


# ---------------------------------------------------------------------------------------------------
# Objectives
# ---------------------------------------------------------------------------------------------------
@register_objective("edlm_nce")
class EdlmNCE(Objective):
    options = EdlmConfig  # objective.edlm (edlm_ar reads it too; its runs train nothing)
    """Train the NCE energy of EDLM on top of a frozen base run (``objective.edlm.base_run``).

    The objective holds the frozen base model (``base_objective``, ``base_model``; not part of the trained
    network, not checkpointed: the run's config names the base run). The trained network is an
    :class:`~mdm.models.energy.EnergyNet` whose backbone starts from the base model's (EMA) weights.

    Loss and count: ``loss`` returns (sum over the batch's sequences of the per-sequence NCE loss
    l = softplus(E+ + log nu) + sum_j softplus(-E-_j - log nu), number of real tokens in the batch) -- the
    project's convention ``count = scored_tokens(batch)``, which `mdm eval` also uses as the per-token
    denominator of the likelihood bound. The logged ``loss``/``val_loss`` is therefore the per-sequence
    NCE loss divided by the sequence length L (multiply by L for nats per sequence; at E = 0 it is
    [log(1 + nu) + nu log(1 + 1/nu)] / L, i.e. 2 log 2 / L for nu = 1). Adam is invariant to that constant
    factor, and the global-count normalisation keeps accumulation/data-parallel gradients exact. It is
    not a likelihood: the run summary's ``val_ppl_bound`` = exp(val_loss) means nothing here; the EDLM
    likelihood is estimated by mdm/eval/edlm.py.
    """

    causal = False
    default_time_conditioning = False
    frozen_parts = ("load_run",)  # the base run (objective.edlm.base_run), loaded by the build step's loader
    default_sampler = "edlm"
    bound_estimator = "edlm"  # mdm.eval.edlm.edlm_bound

    def __init__(self, cfg: Config, vocab: Vocab, load_run=None):
        super().__init__(cfg, vocab)
        self.load_run = load_run
        ecfg = cfg.objective.edlm  # its ranges are checked with its choices (Objective.__init__)
        _require_base_run(ecfg)
        base = check_base_run(self.frozen_run(ecfg.base_run, "objective.edlm.base_run"), ecfg.base_run)
        check_same_tokenizer(
            cfg, vocab, "this config's data", base.cfg, base.vocab, f"the base run {ecfg.base_run}"
        )
        _check_model_matches(
            cfg, base.cfg, self.time_conditioned, base.objective.time_conditioned, ecfg.base_run
        )
        if cfg.schedule != base.cfg.schedule:
            raise ConfigError(
                f"schedule.* must match the base run {ecfg.base_run} (x_t is drawn from its forward process): "
                f"{cfg.schedule} vs {base.cfg.schedule}"
            )
        self.base_run = base
        self.base_objective, self.base_model = base.objective, base.model
        self.schedule = base.objective.schedule
        self.num_noise = ecfg.nce_negatives_per_positive

    def build_model(self, cfg: Config, vocab: Vocab):
        from mdm.models.backbone import Transformer
        from mdm.models.energy import EnergyNet

        backbone = Transformer(cfg.model, vocab.size, causal=False, time_conditioning=self.time_conditioned)
        if not any(p.is_meta for p in backbone.parameters()):  # counting builds on the meta device
            src = getattr(self.base_model, "backbone", self.base_model)
            backbone.load_state_dict(src.state_dict())
        return EnergyNet(backbone)

    def energy(self, net) -> NceEnergy:
        return NceEnergy(self.base_objective, self.base_model, net)

    # the pooled energy head runs once per sequence; the backbone's logits are computed, never trained through
    count_options = {"per_sequence": ("head",), "unused_head": True}

    def extra_flops_per_token(self, counts) -> float:
        """Per training token: nu more forward+backward passes of the energy network (the negatives;
        ``counts`` holds the positive's) and one forward of the frozen base (docs/MATH.md, "Counting")."""
        from mdm.flops import forward_flops_per_token

        base = forward_flops_per_token(self.base_model, counts.seq_len)
        return self.num_noise * counts.flops_per_token + base

    @classmethod
    def config_counts(cls, cfg: Config, vocab: Vocab, read_run_config) -> Counts:
        """:meth:`counts` of the built network from the configs: this run's and the base run's
        (``config.yaml``, read by ``read_run_config``; its weights are not loaded). The energy network is
        the backbone (logits computed, not trained through) with a flag vector and a pooled head
        Linear(D, D) -> GELU -> Linear(D, 1) run once per sequence (mdm/models/energy.py)."""
        e = cfg.objective.edlm
        check_edlm_config(e)
        _require_base_run(e)
        tc = cls.time_conditioning_of(cfg)
        base_cfg = read_run_config(e.base_run, "objective.edlm.base_run")
        base_cls = lookup(OBJECTIVES, "objective", base_cfg.objective.name)
        if base_cls.registry_name not in BASE_OBJECTIVES or base_cls.causal:
            raise ConfigError(
                f"objective.edlm.base_run={e.base_run} was trained with objective {base_cls.registry_name!r}; "
                f"EDLM needs a masked diffusion base run (objective {' or '.join(BASE_OBJECTIVES)})"
            )
        base_tc = base_cls.time_conditioning_of(base_cfg)
        _check_model_matches(cfg, base_cfg, tc, base_tc, e.base_run)
        b = backbone_counts(cfg.model, vocab.size, tc)
        D, head = b.d_model, vocab.size * b.d_model
        pooled = D * D + D  # the head's two weight matrices (D x D, 1 x D), once per sequence
        c = replace(
            b,
            params_total=b.params_total + pooled + 2 * D + 1,  # + flag vector and the head's biases
            params_non_embedding=b.params_non_embedding + pooled + 2 * D + 1,
            n_matmul=b.n_matmul - head,
            n_cond=b.n_cond + pooled,
            n_forward_only=head,
        )
        base = forward_flops(base_cfg.model, vocab.size, base_tc, c.seq_len)
        return replace(c, extra_flops_per_token=e.nce_negatives_per_positive * c.flops_per_token + base)

    def sequence_loss(self, model, batch, t, generator=None):
        x = batch["input_ids"]  # (B, L)
        valid = batch.get("attention_mask")
        B, L = x.shape
        nu = self.num_noise
        if next(self.base_model.parameters()).device != x.device:
            self.base_model.to(x.device)
        z, masked = self.mask_tokens(x, t, valid, generator)  # (B, L)
        with torch.no_grad():
            logp = denoiser_log_probs(self.base_objective, self.base_model, z, t)  # (B, L, V)
            neg = sample_from_log_probs(logp, nu, generator)  # (B, nu, L); carry-over keeps unmasked tokens
        sigma = self.sigma_input(t)
        e_pos = model(x, masked, sigma, key_mask=valid)  # (B,)
        rep = lambda a: None if a is None else a.repeat_interleave(nu, 0)  # noqa: E731
        e_neg = model(neg.view(B * nu, L), rep(masked), rep(sigma), key_mask=rep(valid)).view(B, nu)
        per_seq = nce_loss(e_pos, e_neg)  # (B,)
        if valid is not None:
            per_seq = torch.where(valid.any(-1), per_seq, torch.zeros_like(per_seq))
        return per_seq


@register_objective("edlm_ar")
class EdlmAR(Objective):
    """EDLM with the AR energy: a composition of a base run and an AR run, with nothing to train.

    Exists so that ``configs/edlm_ar.yaml`` names it; build it with :func:`mdm.loading.load_energy` (config) and use
    the ``edlm`` sampler / :func:`mdm.eval.edlm.edlm_bound`. ``mdm train`` on it stops with a ConfigError.
    """

    default_sampler = "edlm"
    bound_estimator = "edlm"
    _REFUSAL = (
        "objective edlm_ar has nothing to train (E = -log p_AR + log mu_theta needs no parameters); "
        "sample with `--sampler edlm` and objective.edlm.base_run / objective.edlm.ar_run, or build it "
        "with mdm.loading.load_energy(config)"
    )

    def __init__(self, cfg: Config, vocab: Vocab):
        raise ConfigError(self._REFUSAL)

    @classmethod
    def config_counts(cls, cfg: Config, vocab: Vocab, read_run_config) -> Counts:
        raise ConfigError(cls._REFUSAL)  # no run to count: planning it fails as building it does


__all__ = [
    "BASE_OBJECTIVES",
    "ArEnergy",
    "EdlmAR",
    "EdlmNCE",
    "Energy",
    "NceEnergy",
    "check_ar_run",
    "check_base_run",
    "check_same_tokenizer",
    "denoiser_log_probs",
    "edlm_source",
    "effective_sample_size",
    "freeze",
    "importance_log_weights",
    "nce_loss",
    "sample_from_log_probs",
    "sequence_log_prob",
    "tokenizer_identity",
]
