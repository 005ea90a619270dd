"""The likelihood bound of EDLM: the NELBO of the n-step EDLM sampling process, estimated by Monte Carlo.

What the generative model is. The process sampled by ``mdm sample --sampler edlm`` (mdm/sampling/
importance.py) on the grid t_i = 1 - i/n: at a step t -> s it draws x0 from a denoiser p_i(x0 | x_t) and
reveals each masked position to x0 with probability r = (alpha_s - alpha_t)/(1 - alpha_t) (r = 1 at the last
step). p_i is the energy-corrected p(x0|x_t) = mu_theta(x0|x_t) exp(-E(x0,x_t)) / Z(x_t) at steps in the
window t in [1 - w, 1] -- the k -> infinity limit of the sampler's importance resampling -- and the factorised
base denoiser mu_theta elsewhere.

The bound. For that process (a discrete-time absorbing diffusion with a joint denoiser),

    -log p(x0) <= sum_{i=0}^{n-1} E_{x_t ~ q(x_{t_i} | x0)} E_S [ -log p_i(x0^S | x_t) ]                (*)

where S is the set of masked positions the step reveals (each masked position independently w.p. r) and
p_i(x0^S | x_t) is the denoiser's MARGINAL over S: the KL(q(x_s | x_t, x0) || p(x_s | x_t)) of one step
reduces to it because both sides choose S with the same probability. The prior term at t = 1 is dropped
(it is 0 when alpha_1 = 0; MDLM's log-linear eps = 1e-3 leaves a token unmasked at t = 1 w.p. 1e-3). (*)
is tight when every p_i is the true posterior q(x0 | x_t) and alpha_1 = 0 (tested by enumeration). With
p_i = mu_theta everywhere it is the base model's n-step bound, sum_{l in S} -log mu_theta(x0^l | x_t),
which tends to MDLM's continuous-time NELBO as n grows.

Estimated, per sequence: one step i (the eval's stratified time t mapped to i = floor(n (1 - t)/(1 - t_min))),
one x_t ~ q, one S, times n; averaged over the eval's time samples. Outside the window the term is exact
given (i, x_t, S). Inside it,

    log p(x0^S | x_t) = log mu_theta(x0^S | x_t) + log A_S - log Z,
    A_S = E_{y ~ mu_theta(.|x_t)} exp(-E(x0^S ∪ y^{rest}, x_t)),   Z = E_{y ~ mu_theta(.|x_t)} exp(-E(y, x_t)),

(y^{rest}: y on the masked positions outside S), estimated from K draws y_1..y_K ~ mu_theta(.|x_t)
(``objective.edlm.bound_samples``):

    log Â_S       = logmeanexp_k -E(x0^S ∪ y_k^rest, x_t)
    log Ẑ         = log [ (exp(-E(x0, x_t)) + sum_{k<K} exp(-E(y_k, x_t))) / K ]   (x0 takes y_K's place)
    log Ẑ_plain   = logmeanexp_k -E(y_k, x_t)

log Z. *AR energy*: exp(-E(y)) = p_AR(y) / mu_theta(y | x_t), so Z(x_t) = P_AR(the unmasked tokens of x_t),
far from 1; it is estimated, not dropped (dropping it, log Z <= 0, would give a valid but useless bound
that re-counts every unmasked token at every step). *NCE energy*: NCE's optimum is self-normalised
(Z = 1), but a finite-capacity, finitely trained energy is not, so log Z is estimated the same way; the
mean log Ẑ is returned as a diagnostic. When S is all of x_t's masked positions, A_S = exp(-E(x0)) exactly.

Bias, and the two reported figures. Both are consistent (K -> infinity). -log Â errs high by Jensen
(E log Â <= log A). The plain log Ẑ errs low (E log Ẑ_plain <= log Z): ``nll_plain`` is optimistic, with no
guaranteed sign overall. Putting the data sequence x0 among the K samples reverses the direction for Z
when x0 follows the model's own posterior p(x0 | x_t) = mu exp(-E)/Z: the K-sample average with one draw
from p and K-1 from mu has E log Ẑ >= log Z (E log(Ẑ/Z) is the KL divergence from the "one resampled
draw" joint to mu^K; the sandwich argument of Grosse et al. 2015; cf. the EDLM paper's leave-one-out
partition estimate). So ``nll`` -- what ``edlm_bound`` returns and `mdm eval` reports -- is an upper bound
on (*) in expectation when the data follow the model (tested by enumeration); otherwise there is no
guarantee, and in practice it errs high when the base proposes the data poorly. The gap between ``nll`` and ``nll_plain`` measures how far K is from enough: the
factorised base is a poor proposal for sequence-level weights (for the AR energy, p_AR / mu varies over
many orders of magnitude on long sequences), so report K beside the figure and check it against a
larger K.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from mdm.diffusion.edlm import Energy, sample_from_log_probs, sequence_log_prob
from mdm.diffusion.edlm_options import EdlmConfig
from mdm.loading import energy_from
from mdm.sampling.importance import in_window


@dataclass
class EdlmBound:
    nll: torch.Tensor  # (B,) float64: estimate of (*) with the data-augmented Ẑ (conservative), nats/sequence
    nll_plain: torch.Tensor  # (B,) float64: the same with plain importance-sampling Ẑ (optimistic)
    base_nll: torch.Tensor  # (B,) float64: the base model's n-step NELBO on the same draws (exact given them)
    tokens: torch.Tensor  # (B,) positions per sequence (the per-token denominator, as MDLM)
    log_z: torch.Tensor  # (B,) float64: data-augmented log Ẑ(x_t) of the draw (NaN outside the window)
    log_z_plain: torch.Tensor  # (B,) float64: plain log Ẑ(x_t) (NaN outside the window)
    info: dict = field(default_factory=dict)


@dataclass
class SubsetLogProb:
    log_p: torch.Tensor  # (N,) log p(x0^S | z) with the data-augmented Ẑ (exact under quadrature)
    log_p_plain: torch.Tensor  # (N,) with the plain Ẑ
    log_z: torch.Tensor  # (N,)
    log_z_plain: torch.Tensor  # (N,)


@torch.no_grad()
def subset_log_prob(
    energy: Energy,
    x0: torch.Tensor,
    z: torch.Tensor,
    reveal: torch.Tensor,
    t: torch.Tensor,
    logp: torch.Tensor,
    cands: torch.Tensor,
    cand_log_weights: torch.Tensor | None = None,
) -> SubsetLogProb:
    """log p(x0^S | z) of the energy-corrected denoiser and log Z(z) (module docstring), float64.

    x0, z: (N, L); reveal: (N, L) bool, the set S (a subset of z's masked positions); t: (N,);
    logp: (N, L, V) base log-probs at z; cands: (N, K, L) completions y drawn from mu_theta(.|z).

    Monte Carlo (``cand_log_weights`` None): A_S by the mean over the K candidates; Z by the mean over
    {x0, y_1..y_{K-1}} (data-augmented: x0 takes y_K's place) and, for the plain estimate, over y_1..y_K.
    Exact quadrature over an enumerated set: ``cand_log_weights`` (N, K) normalised log weights, then
    sum_k exp(lw_k) f(y_k) for A_S and Z (both estimates exact and equal). The N*(2K+1) energies (x0, the
    K candidates, the K candidates with x0 on S) are computed in one call.
    """
    N, K, L = cands.shape
    y_a = torch.where(reveal[:, None, :], x0[:, None, :], cands)  # (N, K, L): x0 on S, y elsewhere
    seqs = torch.cat([x0[:, None, :], cands, y_a], dim=1)  # (N, 2K+1, L)
    log_mu = sequence_log_prob(logp, seqs)  # (N, 2K+1)
    M = 2 * K + 1
    e = energy.energy(
        seqs.reshape(N * M, L), z.repeat_interleave(M, 0), t.repeat_interleave(M, 0), log_mu.reshape(-1)
    ).view(N, M)
    w_x0, w_y, w_a = -e[:, 0], -e[:, 1 : K + 1], -e[:, K + 1 :]  # log weights exp(-E)
    if cand_log_weights is None:
        log_k = math.log(K)
        log_a = torch.logsumexp(w_a, -1) - log_k
        log_z_plain = torch.logsumexp(w_y, -1) - log_k
        log_z = torch.logsumexp(torch.cat([w_x0[:, None], w_y[:, : K - 1]], -1), -1) - log_k
    else:
        lw = cand_log_weights.double()
        log_a = torch.logsumexp(lw + w_a, -1)
        log_z = log_z_plain = torch.logsumexp(lw + w_y, -1)
    lp_x0 = logp.gather(-1, x0.unsqueeze(-1)).squeeze(-1).double()  # (N, L)
    log_mu_s = torch.where(reveal, lp_x0, torch.zeros_like(lp_x0)).sum(-1)  # (N,)
    return SubsetLogProb(log_mu_s + log_a - log_z, log_mu_s + log_a - log_z_plain, log_z, log_z_plain)


def step_of_time(t: torch.Tensor, steps: int, t_min: float = 0.0) -> torch.Tensor:
    """Map times t in [t_min, 1] to step indices i in {0..n-1} uniformly: i = floor(n (1 - t) / (1 - t_min))."""
    u = ((1.0 - t.double()) / (1.0 - t_min)).clamp(0.0, 1.0)
    return torch.floor(u * steps).long().clamp_(0, steps - 1)


@torch.no_grad()
def edlm_bound_terms(
    energy: Energy,
    batch: dict[str, torch.Tensor],
    steps: int,
    window: float,
    num_samples: int,
    step_index: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    max_sequences: int = 8192,
) -> EdlmBound:
    """One Monte Carlo draw of (*) per sequence (times n) for the EDLM and for its base model.

    Energies are evaluated in chunks of at most ``max_sequences`` sequences (2K + 1 per sequence in the
    window), which bounds memory for large K.
    ``step_index`` (B,) picks each sequence's step (uniform and stratified across the batch when None).
    """
    x = batch["input_ids"]
    mask = batch.get("attention_mask")
    if mask is not None and not bool(mask.all()):
        raise NotImplementedError(
            "the EDLM bound needs unpadded blocks (data.wrap=true); got an attention_mask"
        )
    B, L = x.shape
    dev = x.device
    n = int(steps)
    if step_index is None:
        u = torch.rand(
            (), dtype=torch.float64, generator=generator, device=generator.device if generator else dev
        )
        step_index = (
            torch.floor(n * torch.remainder(u.cpu() + torch.arange(B) / B, 1.0)).long().clamp_(0, n - 1)
        )
    i = step_index.to("cpu")
    grid = torch.linspace(1.0, 0.0, n + 1, dtype=torch.float64)
    alpha = energy.schedule.alpha(grid)
    t, a_t, a_s = grid[i], alpha[i], alpha[i + 1]
    r = torch.where(i == n - 1, torch.ones_like(a_t), ((a_s - a_t) / (1 - a_t)).clamp(0.0, 1.0))
    g_dev = generator.device if generator is not None else dev
    masked = (
        torch.rand((B, L), dtype=torch.float64, generator=generator, device=g_dev).to(dev)
        < (1 - a_t).to(dev)[:, None]
    )
    reveal = masked & (
        torch.rand((B, L), dtype=torch.float64, generator=generator, device=g_dev).to(dev)
        < r.to(dev)[:, None]
    )
    z = torch.where(masked, torch.full_like(x, energy.mask_id), x)
    tt = t.float().to(dev)
    logp = energy.denoiser_log_probs(z, tt)  # (B, L, V)
    lp_x0 = logp.gather(-1, x.unsqueeze(-1)).squeeze(-1).double()  # (B, L)
    base_term = -torch.where(reveal, lp_x0, torch.zeros_like(lp_x0)).sum(-1)  # (B,)
    term, term_plain = base_term.clone(), base_term.clone()
    log_z = torch.full((B,), float("nan"), dtype=torch.float64, device=dev)
    log_z_plain = log_z.clone()
    rows = torch.tensor([in_window(float(tb), window) for tb in t], device=dev) & reveal.any(-1)
    chunk = max(1, max_sequences // (2 * num_samples + 1))
    for idx in rows.nonzero().squeeze(-1).split(chunk):
        cands = sample_from_log_probs(logp[idx], num_samples, generator)  # (b, K, L)
        sub = subset_log_prob(energy, x[idx], z[idx], reveal[idx], tt[idx], logp[idx], cands)
        term[idx], term_plain[idx] = -sub.log_p, -sub.log_p_plain
        log_z[idx], log_z_plain[idx] = sub.log_z, sub.log_z_plain
    return EdlmBound(
        nll=n * term,
        nll_plain=n * term_plain,
        base_nll=n * base_term,
        tokens=torch.full((B,), float(L), dtype=torch.float64, device=dev),
        log_z=log_z,
        log_z_plain=log_z_plain,
        info={"steps": n, "window": window, "bound_samples": num_samples, "energy": energy.kind},
    )


def edlm_bound(
    source,
    model=None,
    batch: dict[str, torch.Tensor] | None = None,
    t: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    *,
    steps: int | None = None,
    window: float | None = None,
    num_samples: int | None = None,
    ar_run: str | None = None,
    estimator: str = "augmented",
) -> torch.Tensor:
    """Per-sequence estimate (B,) float64, in nats, of the EDLM likelihood bound (*) (module docstring).

    ``source`` is an :class:`~mdm.diffusion.edlm.Energy` (e.g. from :func:`mdm.loading.load_energy`; ``model`` ignored) or
    the objective of a loaded ``edlm_nce`` run with its ``model`` (the energy network), or a base run's
    objective/model with ``ar_run``. ``batch`` = {"input_ids": (B, L)} of real tokens (no padding).
    ``t`` (B,) in [t_min, 1] are the eval's (stratified) times, mapped to the step index
    i = floor(n (1 - t)/(1 - t_min)); None draws the steps here. ``generator`` drives x_t, S and the K
    importance samples. steps / window / num_samples default to the run's objective.edlm
    (bound_steps, window, bound_samples). Divide the sum over sequences by B*L for nats per token (the
    objective's ``scored_tokens``). ``estimator``: "augmented" (default; x0 among the samples for Z, an
    upper bound in expectation when the data follow the model) or "plain" (plain importance sampling,
    optimistic); the two bracket (*) and meet as K grows (module docstring).
    """
    if estimator not in ("augmented", "plain"):
        raise ValueError(f"estimator={estimator!r} is not valid; choose one of: augmented, plain")
    if batch is None:
        raise TypeError("edlm_bound needs a batch")
    if isinstance(source, Energy):
        energy, ocfg = source, None
    else:
        energy, ocfg = energy_from(source, model, ar_run), getattr(source, "ocfg", None)
    e = getattr(ocfg, "edlm", None) or EdlmConfig()
    n = int(steps if steps is not None else e.bound_steps)
    w = float(window if window is not None else e.window)
    k = int(num_samples if num_samples is not None else e.bound_samples)
    idx = None
    if t is not None:
        idx = step_of_time(t.cpu(), n, float(getattr(ocfg, "t_min", 0.0) or 0.0))
    out = edlm_bound_terms(energy, batch, n, w, k, idx, generator)
    return out.nll if estimator == "augmented" else out.nll_plain


__all__ = ["EdlmBound", "SubsetLogProb", "edlm_bound", "edlm_bound_terms", "step_of_time", "subset_log_prob"]
