"""RADD: reparameterised absorbing discrete diffusion (Ou et al. 2024).

At a masked position the concrete score of absorbing diffusion factorises (RADD Thm 1; docs/MATH.md "RADD"):

    p_t(x with x^l = v) / p_t(x_t) = e^{-sigma_bar}/(1 - e^{-sigma_bar}) * p_0(x^l = v | unmasked tokens of x_t),

so the network c_theta(x_t) -- a softmax over real tokens at every position -- models clean-data
conditionals and takes **no time input**. Three estimators of the same negative log-likelihood bound,
selected by ``objective.loss``, each one Monte Carlo draw per sequence (``t`` (B,) in [t_min, 1] drives it):

* ``t_dce`` (default): mask with prob 1 - alpha_t, weight sigma(t) r(t) = -alpha'_t/(1 - alpha_t) (= 1/t for
  log-linear); RADD eq. 3.6.
* ``lambda_dce``: the time *is* the masking probability lambda = t, weight 1/lambda; RADD eq. 3.10. This is
  t-DCE after the change of variables lambda = 1 - e^{-sigma_bar(t)}, so it does not depend on the schedule.
* ``any_order``: k = ceil(u L) with u = (t - t_min)/(1 - t_min) ~ U(0, 1], a uniformly random set of k masked
  positions, weight L/k: an unbiased estimate of the any-order autoregressive loss
  E_pi sum_i -log c(x^{pi(i)} | x^{pi(<i)}) = L E_k[(1/k) E_{|M|=k} sum_{j in M} -log c(x^j | x_{not M})]
  (RADD eq. 3.11), whose expectation equals lambda-DCE's (RADD Thm 2).

``left_to_right_nll`` gives the exact likelihood of one fixed order (left to right) with L network passes:
-log p(x) = sum_l -log c(x^l | x^{<l}, everything else masked).

With padding (``attention_mask``) only valid positions are masked and scored; L is the valid length.
"""

from __future__ import annotations

import torch

from mdm.diffusion import noise
from mdm.diffusion.base import Objective
from mdm.diffusion.radd_options import RADD_LOSSES, RaddConfig  # noqa: F401
from mdm.diffusion.registry import register_objective


@register_objective("radd")
class RADD(Objective):
    options = RaddConfig
    causal = False
    default_time_conditioning = False
    supports_time_conditioning = False  # the point of RADD: c_theta is time-independent
    has_denoiser = True

    def __init__(self, cfg, vocab):
        super().__init__(cfg, vocab)
        # objective.loss / objective.graph: choices in radd_options.py, checked by Objective.__init__
        self.loss_name = "t_dce" if self.ocfg.loss == "default" else self.ocfg.loss

    # -- the network ------------------------------------------------------------------------------------
    def log_probs(self, model, z: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        """log c_theta(x^l = v | z) over real tokens: (B, L, V), -inf on ids >= mask_id. No time input."""
        return self.clean_log_probs(model(z, None, key_mask=key_mask))

    def denoiser_log_probs(self, model, z: torch.Tensor, t: torch.Tensor | None = None, **kw) -> torch.Tensor:
        """The sampler interface shared with MDLM: c_theta with carry-over at unmasked positions (t unused)."""
        return self.carry_over(self.clean_log_probs(model(z, None, **kw)), z)

    # -- corruption and the loss given a mask ------------------------------------------------------------
    def corrupt(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        valid: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw the masked sequence for each estimator: (z (B, L), masked (B, L) bool). All the randomness."""
        if self.loss_name == "t_dce":
            return self.mask_tokens(x, t, valid, generator)
        if self.loss_name == "lambda_dce":
            masked = noise.rand(x.shape, generator, device=x.device) < t[:, None]
        else:  # any_order: exactly k uniformly chosen valid positions
            n_valid = x.new_full((x.shape[0],), x.shape[1]) if valid is None else valid.sum(-1)  # (B,)
            t_min = self.ocfg.t_min
            u = ((t.double() - t_min) / (1 - t_min)).clamp(0.0, 1.0)
            k = torch.ceil(u * n_valid).long().clamp(min=1)  # (B,) uniform on {1..L} when u ~ U(0, 1]
            keys = noise.rand(x.shape, generator, device=x.device)
            if valid is not None:
                keys = keys.masked_fill(~valid, 2.0)  # padding sorts last: never chosen
            rank = keys.argsort(-1).argsort(-1)  # (B, L) rank of each position in a random order
            masked = rank < k[:, None]
        if valid is not None:
            masked &= valid
        return torch.where(masked, torch.full_like(x, self.vocab.mask_id), x), masked

    def weight(
        self, t: torch.Tensor, masked: torch.Tensor, valid: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Per-sequence weight of the summed masked-token NLL: (B,)."""
        if self.loss_name == "t_dce":
            return self.schedule.mask_weight(t)
        if self.loss_name == "lambda_dce":
            return 1.0 / t
        n_valid = torch.full((masked.shape[0],), float(masked.shape[1]), device=masked.device)
        if valid is not None:
            n_valid = valid.sum(-1).float()
        return n_valid / masked.sum(-1).clamp(min=1).float()

    def masked_loss(
        self,
        model,
        x: torch.Tensor,
        z: torch.Tensor,
        masked: torch.Tensor,
        t: torch.Tensor,
        valid: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """weight * sum_{l masked} -log c_theta(x^l | z): (B,). Deterministic given the mask."""
        nll = self.masked_nll(model(z, None, key_mask=valid), x, masked)  # (B, L): log c_theta at masked l
        return self.weight(t, masked, valid).to(nll.dtype) * nll.sum(-1)

    def sequence_loss(self, model, batch, t, generator=None):
        x = batch["input_ids"]
        valid = batch.get("attention_mask")
        z, masked = self.corrupt(x, t, valid, generator)
        return self.masked_loss(model, x, z, masked, t, valid)

    # -- exact likelihood of the left-to-right order -----------------------------------------------------
    @torch.no_grad()
    def left_to_right_nll(
        self, model, x: torch.Tensor, valid: torch.Tensor | None = None, max_rows: int = 4096
    ) -> torch.Tensor:
        """-log p_theta(x) under the fixed left-to-right order, exactly: (B,) nats, L network passes per sequence.

        Pass l sees x^{<l} and masks positions >= l; the factor is c_theta(x^l | that input). Padding
        positions are never scored (and stay visible but not attended via ``key_mask``).
        """
        B, L = x.shape
        pos = torch.arange(L, device=x.device)
        out = torch.zeros(B, dtype=torch.float64, device=x.device)
        step = max(1, max_rows // max(B, 1))  # positions per batched call
        for start in range(0, L, step):
            ls = torch.arange(start, min(L, start + step), device=x.device)  # (P,)
            hide = pos[None, :] >= ls[:, None]  # (P, L)
            if valid is not None:
                hide = hide[:, None, :] & valid[None, :, :]  # (P, B, L)
            else:
                hide = hide[:, None, :].expand(-1, B, -1)
            z = torch.where(hide, torch.full_like(x, self.vocab.mask_id)[None], x[None])  # (P, B, L)
            km = None if valid is None else valid[None].expand(len(ls), -1, -1).reshape(-1, L)
            logp = self.log_probs(model, z.reshape(-1, L), key_mask=km)  # (P*B, L, V)
            logp = logp.view(len(ls), B, L, -1)  # (P, B, L, V)
            idx = ls[:, None, None, None].expand(-1, B, 1, logp.shape[-1])
            at = logp.gather(2, idx).squeeze(2)  # (P, B, V): distribution at position l
            tok = x[:, ls].T  # (P, B)
            nll = -at.gather(-1, tok.unsqueeze(-1)).squeeze(-1).double()  # (P, B)
            if valid is not None:
                nll = torch.where(valid[:, ls].T, nll, torch.zeros_like(nll))
            out += nll.sum(0)
        return out
