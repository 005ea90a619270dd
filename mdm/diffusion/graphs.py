"""Per-token forward processes ("graphs") of score-entropy discrete diffusion (SEDD, Lou et al. 2024).

A graph is the generator Q of a continuous-time Markov chain over the states of one position; with a noise
schedule the forward kernel is p_{t|0} = exp(sigma_bar(t) Q) (SEDD §3.1). Each graph knows its forward
kernel, its prior, the denoising score entropy of a score vector (SEDD eq. 8 / docs/MATH.md "SEDD score
entropy") and the reverse-step probabilities of the Euler and Tweedie tau-leaping samplers (SEDD §4.2).

N real tokens have ids ``0..N-1``; the absorbing graph adds the mask state ``N`` (== ``vocab.mask_id``).
Score vectors are over real tokens, ``log_s`` (B, L, N): ``s_b`` estimates p_t(y)/p_t(x_t) where y is x_t
with this position set to b. Every formula is written through

    s - rho log s + K(rho) = rho * phi(log s - log rho),   phi(d) = e^d - 1 - d >= 0,   K(a) = a (log a - 1)

which is the DSE summand rearranged so that no large terms cancel (rho = 0 gives just s).
"""

from __future__ import annotations

import math

import torch

from mdm.diffusion import noise
from mdm.diffusion.registry import lookup

GRAPHS: dict[str, type] = {}


def register_graph(name: str):
    def deco(cls):
        GRAPHS[name] = cls
        cls.name = name
        return cls

    return deco


def absorb(
    x: torch.Tensor,
    move: torch.Tensor,
    mask_id: int,
    valid: torch.Tensor | None = None,
    generator: noise.Noise = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The absorbing forward process, one random stream for every absorbing objective (MDLM, RADD,
    SEDD-absorb, EDLM, CCDD): position l is masked when u_l < move, u (B, L) float32 uniforms drawn from
    ``generator``; padding (valid=False) never. ``move`` (B, 1): 1 - alpha_t. Returns (z, masked (B, L) bool)."""
    masked = noise.rand(x.shape, generator, device=x.device) < move
    if valid is not None:
        masked &= valid
    return torch.where(masked, torch.full_like(x, mask_id), x), masked


def build_graph(name: str, n_real: int) -> Graph:
    """The graph named ``name`` (objective.graph) over ``n_real`` real tokens."""
    return lookup(GRAPHS, "objective.graph", name)(n_real)


def log_expm1(x: torch.Tensor) -> torch.Tensor:
    """log(e^x - 1) for x > 0, stable at both ends: x + log(1 - e^{-x})."""
    return x + torch.log(-torch.expm1(-x))


def phi(d: torch.Tensor) -> torch.Tensor:
    """phi(d) = e^d - 1 - d >= 0 (a Bregman divergence of exp; 0 iff d = 0)."""
    return torch.expm1(d) - d


def _work_dtype(t: torch.Tensor) -> torch.dtype:
    return torch.float64 if t.dtype == torch.float64 else torch.float32


class Graph:
    name = "?"
    absorbing = False

    def __init__(self, n_real: int):
        if n_real < 2:
            raise ValueError(f"a graph needs at least 2 real tokens, got {n_real}")
        self.N = n_real

    @property
    def n_states(self) -> int:
        return self.N + int(self.absorbing)

    # -- forward process ----------------------------------------------------------------------------
    def transition_probs(self, x0: torch.Tensor, sigma_bar: torch.Tensor) -> torch.Tensor:
        """p_{t|0}(. | x0^l) for every position: x0 (B, L), sigma_bar (B,) -> (B, L, n_states) float64."""
        raise NotImplementedError

    def sample_forward(
        self,
        x0: torch.Tensor,
        sigma_bar: torch.Tensor,
        valid: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """x_t ~ p_{t|0}(. | x0) independently per position; padding (valid=False) is never changed."""
        raise NotImplementedError

    def sample_prior(
        self, shape: tuple[int, int], device, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        raise NotImplementedError

    def prior_kl(self, x0: torch.Tensor, sigma_bar_1: torch.Tensor) -> torch.Tensor:
        """KL(p_{1|0}(. | x0^l) || prior) per position: (B, L) float64 (SEDD's likelihood bound, Thm 3.6)."""
        raise NotImplementedError

    # -- loss -----------------------------------------------------------------------------------------
    def score_entropy(
        self,
        log_s: torch.Tensor,
        x0: torch.Tensor,
        xt: torch.Tensor,
        sigma_bar: torch.Tensor,
        rate: torch.Tensor,
    ) -> torch.Tensor:
        """DSE integrand per position, already multiplied by the forward rate: (B, L).

        sum_{y ~ x_t differing here} w(y -> x_t) [s_y - rho_y log s_y + K(rho_y)],  w = rate(t) Q(y -> x_t).
        """
        raise NotImplementedError

    # -- reverse steps (samplers) -------------------------------------------------------------------
    def euler_probs(
        self, log_s: torch.Tensor, xt: torch.Tensor, rate: torch.Tensor, dt: float
    ) -> torch.Tensor:
        """First-order step x_t -> x_{t-dt} with the reverse rates rate * Q(y->x) * s_y: (B, L, n_states) float64."""
        raise NotImplementedError

    def analytic_probs(
        self, log_s: torch.Tensor, xt: torch.Tensor, sigma_bar_t: torch.Tensor, sigma_bar_s: torch.Tensor
    ) -> torch.Tensor:
        """Tweedie tau-leaping x_t -> x_s (SEDD Thm 4.2): p(x_s^l = y) = [exp(-dQ) s]_y exp(dQ)(y, x_t^l),
        d = sigma_bar_t - sigma_bar_s; clipped at 0 and renormalised. (B, L, n_states) float64."""
        raise NotImplementedError


def _normalise(q: torch.Tensor) -> torch.Tensor:
    q = q.clamp_min(0.0)
    return q / q.sum(-1, keepdim=True).clamp_min(1e-300)


@register_graph("absorb")
class Absorbing(Graph):
    """Every real token jumps to the mask state at rate sigma(t): Q = 1_mask e^T - I on real tokens.

    p_{t|0}(x0 | x0) = e^{-sigma_bar} = alpha_t, p_{t|0}(mask | x0) = 1 - alpha_t. Only masked positions have
    reverse transitions; with r = 1/(e^{sigma_bar} - 1) the ratio rho of the true token is r, of every other
    token 0, so per masked position (docs/MATH.md):  sigma [sum_v s_v - r log s_{x0} + K(r)].
    Prior: the time-1 marginal of the process started from uniform real tokens, mask w.p. 1 - alpha_1 and each
    real token w.p. alpha_1/N, so KL(p_{1|0} || prior) = alpha_1 log N per position (0 when alpha_1 = 0).
    """

    absorbing = True

    @property
    def mask(self) -> int:
        return self.N

    def transition_probs(self, x0, sigma_bar):
        a = torch.exp(-sigma_bar.double())[:, None]  # (B, 1)
        p = torch.zeros(*x0.shape, self.N + 1, dtype=torch.float64, device=x0.device)
        p.scatter_(-1, x0.unsqueeze(-1), a.unsqueeze(-1).expand(*x0.shape, 1).contiguous())
        p[..., self.N] = 1 - a
        return p

    def sample_forward(self, x0, sigma_bar, valid=None, generator=None):
        move = -torch.expm1(-sigma_bar.double())[:, None]  # (B, 1) = 1 - alpha_t
        return absorb(x0, move, self.mask, valid, generator)[0]  # the draws of Objective.mask_tokens

    def sample_prior(self, shape, device, generator=None):
        return torch.full(shape, self.mask, dtype=torch.long, device=device)

    def prior_kl(self, x0, sigma_bar_1):
        a1 = torch.exp(-sigma_bar_1.double())[:, None]  # (B, 1)
        return (a1 * math.log(self.N)).expand(x0.shape)

    def score_entropy(self, log_s, x0, xt, sigma_bar, rate):
        dt = _work_dtype(log_s)
        # s = r * s_hat; rho = r at x0, 0 elsewhere:
        # sum_v s_v - r log s_x0 + K(r) = r [sum_v s_hat_v - 1 - log s_hat_x0] = r [sum_{v != x0} s_hat_v + phi(log s_hat_x0)]
        log_r = -log_expm1(sigma_bar.to(dt))[:, None, None]  # (B, 1, 1)
        log_shat = log_s.to(dt)[..., : self.N] - log_r  # (B, L, N)
        lx0 = log_shat.gather(-1, x0.unsqueeze(-1)).squeeze(-1)  # (B, L)
        others = torch.logsumexp(
            log_shat.scatter(-1, x0.unsqueeze(-1), float("-inf")), dim=-1
        ).exp()  # (B, L)
        per_pos = others + phi(lx0)  # (B, L)
        weight = rate.to(dt) / torch.expm1(sigma_bar.to(dt))  # (B,) sigma * r = -alpha'/(1 - alpha)
        return torch.where(xt == self.mask, weight[:, None] * per_pos, torch.zeros_like(per_pos))

    def euler_probs(self, log_s, xt, rate, dt):
        s = log_s.double()[..., : self.N].exp()  # (B, L, N)
        q_move = float(dt) * rate.double()[:, None, None] * s  # (B, L, N)
        return _normalise(torch.cat([q_move, 1 - q_move.sum(-1, keepdim=True)], dim=-1))

    def analytic_probs(self, log_s, xt, sigma_bar_t, sigma_bar_s):
        s = log_s.double()[..., : self.N].exp()  # (B, L, N)
        d = (sigma_bar_t.double() - sigma_bar_s.double())[:, None, None]  # (B, 1, 1)
        q_move = torch.expm1(d) * s  # (e^d - 1) s_v = (alpha_s - alpha_t)/(1 - alpha_t) c_v for exact s = r c
        return _normalise(torch.cat([q_move, 1 - q_move.sum(-1, keepdim=True)], dim=-1))


@register_graph("uniform")
class Uniform(Graph):
    """Every real token jumps to each other real token at rate sigma(t)/N: Q = 11^T/N - I.

    p_{t|0}(b | a) = beta 1[a=b] + u with beta = e^{-sigma_bar}, u = (1 - beta)/N (docs/MATH.md). At a position
    with current token a, rho_b = u/(beta + u) for every b != a if a = x0; if a != x0, rho_{x0} = (beta+u)/u and
    rho_b = 1 for the others. Prior: uniform over real tokens.
    """

    def transition_probs(self, x0, sigma_bar):
        beta = torch.exp(-sigma_bar.double())[:, None, None]  # (B, 1, 1)
        u = -torch.expm1(-sigma_bar.double())[:, None, None] / self.N
        p = u.expand(*x0.shape, self.N).clone()
        return p + beta * torch.nn.functional.one_hot(x0, self.N).double()

    def sample_forward(self, x0, sigma_bar, valid=None, generator=None):
        # with prob 1 - beta the token is redrawn uniformly (possibly to itself): exactly p_{t|0}
        move = -torch.expm1(-sigma_bar.double())[:, None]
        redraw = noise.rand(x0.shape, generator, device=x0.device, dtype=torch.float64) < move
        if valid is not None:
            redraw &= valid
        fresh = noise.randint(0, self.N, x0.shape, generator, device=x0.device)
        return torch.where(redraw, fresh, x0)

    def sample_prior(self, shape, device, generator=None):
        return torch.randint(0, self.N, shape, device=device, generator=generator)

    def prior_kl(self, x0, sigma_bar_1):
        beta = torch.exp(-sigma_bar_1.double())
        u = -torch.expm1(-sigma_bar_1.double()) / self.N
        N = self.N
        kl = torch.xlogy(beta + u, (beta + u) * N) + (N - 1) * torch.xlogy(u, u * N)  # (B,)
        return kl[:, None].expand(x0.shape)

    def log_rho0(self, sigma_bar: torch.Tensor) -> torch.Tensor:
        """log(u/(beta + u)) = log(1 - beta) - log(1 + (N - 1) beta)  (<= 0), stable for all sigma_bar > 0."""
        sb = sigma_bar
        return torch.log(-torch.expm1(-sb)) - torch.log1p((self.N - 1) * torch.exp(-sb))

    def score_entropy(self, log_s, x0, xt, sigma_bar, rate):
        dt = _work_dtype(log_s)
        N = self.N
        lr0 = self.log_rho0(sigma_bar.to(dt))[:, None]  # (B, 1)
        same = xt == x0  # (B, L)
        log_rho = torch.where(same, lr0, torch.zeros_like(lr0))  # (B, L)
        log_rho = log_rho.unsqueeze(-1).expand(*xt.shape, N).clone()  # (B, L, N)
        # a != x0: rho_{x0} = (beta + u)/u = 1/rho0
        log_rho.scatter_(-1, x0.unsqueeze(-1), torch.where(same, lr0, -lr0).unsqueeze(-1))
        ls = log_s.to(dt)[..., :N]
        terms = log_rho.exp() * phi(ls - log_rho)  # (B, L, N)
        terms = terms.scatter(-1, xt.unsqueeze(-1), 0.0)  # b = a is not a neighbour
        return (rate.to(dt) / N)[:, None] * terms.sum(-1)

    def euler_probs(self, log_s, xt, rate, dt):
        s = log_s.double()[..., : self.N].exp()
        q = float(dt) * rate.double()[:, None, None] / self.N * s  # (B, L, N)
        q = q.scatter(-1, xt.unsqueeze(-1), 0.0)
        q = q.scatter(-1, xt.unsqueeze(-1), 1 - q.sum(-1, keepdim=True))
        return _normalise(q)

    def analytic_probs(self, log_s, xt, sigma_bar_t, sigma_bar_s):
        N = self.N
        s = log_s.double()[..., :N].exp().scatter(-1, xt.unsqueeze(-1), 1.0)  # (B, L, N), s_a = 1
        d = (sigma_bar_t.double() - sigma_bar_s.double())[:, None, None]  # (B, 1, 1)
        # exp(-dQ) = e^{d} I + (1 - e^{d}) 11^T/N ;  exp(dQ)(y, a) = e^{-d} 1[y=a] + (1 - e^{-d})/N
        stag = torch.exp(d) * s - torch.expm1(d) / N * s.sum(-1, keepdim=True)
        k = (-torch.expm1(-d) / N).expand_as(s).clone()
        k = k.scatter_add(-1, xt.unsqueeze(-1), torch.exp(-d).expand(*xt.shape, 1).contiguous())
        return _normalise(stag * k)


__all__ = ["GRAPHS", "Absorbing", "Graph", "Uniform", "build_graph", "log_expm1", "phi", "register_graph"]
