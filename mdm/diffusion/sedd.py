"""SEDD: score entropy discrete diffusion (Lou et al. 2024), absorbing and uniform graphs.

The network, conditioned on the noise level sigma_bar(t), outputs one score vector per position over the
real tokens. How its output h (B, L, V) maps to log-scores (``log_scores``):

* absorb:  log s_v = h_v - log N - log(e^{sigma_bar} - 1)   (SEDD's scaling of the output by the noise level).
  The exact score of a masked position is r(t) p_0(x^l = v | unmasked tokens), r = 1/(e^{sigma_bar} - 1)
  (RADD Thm 1), so exp(h - log N) is an unnormalised estimate of that clean-data conditional; the -log N
  makes a zero output the uniform conditional. Scores at unmasked positions are never used.
* uniform: log s_b = h_b for b != x_t^l (the score of the current token is 1 by definition). A zero
  output is the exact score of the uniform prior.

Loss (SEDD eq. 8; docs/MATH.md "SEDD score entropy"): the denoising score entropy of one x_t ~ p_{t|0}(.|x0)

    L_DSE(x0, t) = sum_l sum_{y ~ x_t at l} sigma(t) Q(y -> x_t) [s_y - rho_y log s_y + K(rho_y)],  K(a) = a(log a - 1)

estimates the integral over t ~ U[t_min, 1]. ``sequence_loss`` adds the prior term KL(p_{1|0}(.|x0) || prior)
(graphs.py), so that it is an estimate of SEDD's likelihood bound -log p(x0) <= E_t[L_DSE] + KL (Thm 3.6),
which is what perplexity reports. Schedules: log-linear or geometric (schedule.sigma_min, sigma_max); the
geometric one starts at sigma_bar(0) = sigma_min > 0, which leaves out the bound's integral over
[0, sigma_min] (a term of order sigma_min * L log N).
"""

from __future__ import annotations

import math

import torch

from mdm.diffusion.base import Objective
from mdm.diffusion.graphs import build_graph, log_expm1
from mdm.diffusion.registry import register_objective
from mdm.diffusion.sedd_options import SEDD_LOSSES, SeddConfig  # noqa: F401


@register_objective("sedd")
class SEDD(Objective):
    options = SeddConfig
    causal = False
    default_time_conditioning = True
    has_denoiser = True  # absorbing graph only: graph_name says which (samplers check it)
    has_scores = True
    default_sampler = "analytic"

    def __init__(self, cfg, vocab):
        super().__init__(cfg, vocab)
        # objective.loss / objective.graph: choices in sedd_options.py, checked by Objective.__init__
        self.graph = build_graph(self.ocfg.graph, vocab.n_real)
        self.graph_name = self.graph.name  # samplers read this: "absorb" | "uniform"
        self.log_n = math.log(vocab.n_real)

    # -- network output -> scores ---------------------------------------------------------------------
    def log_scores(
        self, model, xt: torch.Tensor, t: torch.Tensor, key_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """log s_theta(x_t, t) over real tokens: (B, L, N), float32 (float64 if the model returns float64)."""
        h = model(xt, self.sigma_input(t), key_mask=key_mask)  # (B, L, V)
        h = h[..., : self.vocab.n_real]
        h = h.double() if h.dtype == torch.float64 else h.float()
        if self.graph.absorbing:
            sb = self.schedule.total_noise(t).to(h.dtype)  # (B,)
            return h - self.log_n - log_expm1(sb)[:, None, None]
        return h.scatter(-1, xt.clamp(max=self.vocab.n_real - 1).unsqueeze(-1), 0.0)

    def denoiser_log_probs(self, model, z: torch.Tensor, t: torch.Tensor, **kw) -> torch.Tensor:
        """Absorbing graph: the normalised clean-data conditional implied by the scores, (B, L, V) with -inf on
        ids >= mask_id and SUBS-style carry-over at unmasked positions (what the ancestral samplers use)."""
        if not self.graph.absorbing:
            raise ValueError(
                "sedd with objective.graph=uniform has no absorbing denoiser; use the euler or analytic sampler"
            )
        logits = model(z, self.sigma_input(t), **kw)
        logp = self.clean_log_probs(logits)  # normalising exp(h - log N - log r) over v = normalising exp(h)
        return self.carry_over(logp, z)

    # -- the bound ------------------------------------------------------------------------------------
    def dse(
        self, model, x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor, valid: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Denoising score entropy of given noisy sequences, per sequence: (B,) (the integrand at t)."""
        log_s = self.log_scores(model, xt, t, key_mask=valid)  # (B, L, N)
        sb, rate = self.schedule.total_noise(t), self.schedule.rate(t)  # (B,)
        per_pos = self.graph.score_entropy(log_s, x0, xt, sb, rate)  # (B, L)
        if valid is not None:
            per_pos = torch.where(valid, per_pos, torch.zeros_like(per_pos))
        return per_pos.sum(-1)

    def prior_term(self, x0: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """KL(p_{1|0}(.|x0) || prior) summed over (valid) positions: (B,) float64."""
        sb1 = self.schedule.total_noise(torch.ones(x0.shape[0], dtype=torch.float64, device=x0.device))
        kl = self.graph.prior_kl(x0, sb1)  # (B, L)
        if valid is not None:
            kl = torch.where(valid, kl, torch.zeros_like(kl))
        return kl.sum(-1)

    def sequence_loss(self, model, batch, t, generator=None):
        x = batch["input_ids"]  # (B, L)
        valid = batch.get("attention_mask")
        xt = self.graph.sample_forward(x, self.schedule.total_noise(t), valid, generator)  # (B, L)
        loss = self.dse(model, x, xt, t, valid)
        return loss + self.prior_term(x, valid).to(loss.dtype)
