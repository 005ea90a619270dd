"""Exact answers on a setting small enough to enumerate (shared by the diffusion and sampling tests).

N real tokens (ids 0..N-1), the mask N, length L, a fixed data distribution p over all N^L sequences.
Everything here is computed by brute-force enumeration in float64: conditionals p(x^l = v | unmasked
tokens of z), the marginals p_t of the absorbing and uniform forward processes, exact concrete scores,
and the distributions that samplers should produce. "Models" are small nn.Modules with the backbone's
call signature ``model(x, sigma=None, extra=None, key_mask=None) -> logits (B, L, N+1)``.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch
from torch import nn

from mdm.config import Config, ObjectiveConfig, ScheduleConfig
from mdm.diffusion import build_objective
from mdm.diffusion.graphs import log_expm1
from mdm.vocab import Vocab


class Enum:
    """All sequences of V^L with a fixed random data distribution (full support)."""

    def __init__(self, N: int = 3, L: int = 3, seed: int = 0, concentration: float = 0.7):
        self.N, self.L = N, L
        self.X = torch.tensor(list(itertools.product(range(N), repeat=L)), dtype=torch.long)  # (K, L)
        rng = np.random.default_rng(seed)
        p = rng.dirichlet(np.full(len(self.X), concentration)) + 1e-3
        self.p = torch.tensor(p / p.sum(), dtype=torch.float64)  # (K,)
        self.nll = -self.p.log()  # (K,) -log p(x)
        self.entropy = float((self.p * self.nll).sum())
        # absorbing states: every z in {0..N}^L
        self.Z = torch.tensor(list(itertools.product(range(N + 1), repeat=L)), dtype=torch.long)  # (S, L)
        self.vocab = Vocab(size=N + 1, mask_id=N)
        # neighbours: index of the state with position l set to v, (S, L, N) and (K, L, N)
        self.z_neighbours = self._neighbours(self.Z, self.z_index)
        self.x_neighbours = self._neighbours(self.X, self.x_index)

    def _neighbours(self, states: torch.Tensor, index) -> torch.Tensor:
        out = torch.empty(len(states), self.L, self.N, dtype=torch.long)
        for l in range(self.L):
            for v in range(self.N):
                y = states.clone()
                y[:, l] = v
                out[:, l, v] = index(y)
        return out

    # -- indexing -------------------------------------------------------------------------------------
    def z_index(self, z: torch.Tensor) -> torch.Tensor:
        base = (self.N + 1) ** torch.arange(self.L - 1, -1, -1)
        return (z * base).sum(-1)

    def x_index(self, x: torch.Tensor) -> torch.Tensor:
        base = self.N ** torch.arange(self.L - 1, -1, -1)
        return (x * base).sum(-1)

    # -- absorbing: conditionals and marginals -------------------------------------------------------
    def consistent(self) -> torch.Tensor:
        """(S, K) bool: x agrees with z on z's unmasked positions."""
        zm = self.Z[:, None, :]
        return ((zm == self.N) | (zm == self.X[None, :, :])).all(-1)

    def conditionals(self, p: torch.Tensor | None = None) -> torch.Tensor:
        """(S, L, N) float64: p(x^l = v | unmasked tokens of z) for every absorbing state z."""
        p = self.p if p is None else p
        w = self.consistent().double() * p[None, :]  # (S, K)
        onehot = torch.nn.functional.one_hot(self.X, self.N).double()  # (K, L, N)
        num = torch.einsum("sk,klv->slv", w, onehot)
        return num / w.sum(-1)[:, None, None]

    def absorb_marginal(self, alpha: float) -> torch.Tensor:
        """p_t(z) for every absorbing state: (S,) with each token kept w.p. alpha."""
        n_masked = (self.Z == self.N).sum(-1)  # (S,)
        w = alpha ** (self.L - n_masked).double() * (1 - alpha) ** n_masked.double()
        return (self.consistent().double() * self.p[None, :]).sum(-1) * w

    def uniform_marginal(self, sigma_bar: float) -> torch.Tensor:
        """p_t(x) for the uniform graph: (K,) float64."""
        beta = math.exp(-sigma_bar)
        u = -math.expm1(-sigma_bar) / self.N
        same = (self.X[:, None, :] == self.X[None, :, :]).double()  # (K0, K, L)
        kern = (beta * same + u).prod(-1)  # (K0, K)
        return self.p @ kern

    # -- masks ----------------------------------------------------------------------------------------
    def all_masks(self) -> torch.Tensor:
        """(2^L, L) bool: every subset of positions."""
        return torch.tensor(list(itertools.product([False, True], repeat=self.L)), dtype=torch.bool)

    def sequences_times_masks(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Every (x, M) pair: x (K*M, L), masked (K*M, L), and the index of x (K*M,)."""
        masks = self.all_masks()
        K, Mn = len(self.X), len(masks)
        x = self.X[:, None, :].expand(K, Mn, self.L).reshape(-1, self.L)
        m = masks[None].expand(K, Mn, self.L).reshape(-1, self.L)
        return x, m, torch.arange(K).repeat_interleave(Mn)


class TableModel(nn.Module):
    """Time-agnostic absorbing model from a (S, L, N) table of log-conditionals: logits = table[z] + offset.

    With the exact conditionals it is the "oracle"; with perturbed ones, "any other model".
    ``time_conditioned`` only checks that a noise level is (or is not) passed.
    """

    def __init__(
        self, enum: Enum, log_table: torch.Tensor, offset: float = 0.0, time_conditioned: bool = False
    ):
        super().__init__()
        self.enum, self.offset, self.time_conditioned = enum, offset, time_conditioned
        self.register_buffer("log_table", log_table.double())
        self.calls = 0

    def forward(self, x, sigma=None, extra=None, key_mask=None, return_hidden=False):
        assert (sigma is not None) == self.time_conditioned
        self.calls += 1
        lt = self.log_table[self.enum.z_index(x)] + self.offset  # (B, L, N)
        return torch.cat([lt, torch.zeros_like(lt[..., :1])], dim=-1)  # mask column: anything


class ExactAbsorbScores(nn.Module):
    """Time-conditioned SEDD-absorb oracle: exact scores p_t(z^{l->v})/p_t(z) from enumerated marginals,
    returned as the network output h with SEDD's scaling undone: h = log s + log N + log(e^sigma_bar - 1)."""

    time_conditioned = True

    def __init__(self, enum: Enum):
        super().__init__()
        self.enum = enum

    def forward(self, x, sigma=None, extra=None, key_mask=None, return_hidden=False):
        e = self.enum
        out = torch.zeros(*x.shape, e.N + 1, dtype=torch.float64)
        for sb in sigma.unique():
            rows = sigma == sb
            lp = e.absorb_marginal(math.exp(-float(sb))).log()  # (S,)
            zi = e.z_index(x[rows])  # (b,)
            h = lp[e.z_neighbours[zi]] - lp[zi][:, None, None]  # (b, L, N) log score
            out[rows, :, : e.N] = h + math.log(e.N) + float(log_expm1(sb.double()))
        return out


class ExactUniformScores(nn.Module):
    """Time-conditioned SEDD-uniform oracle: h_b = log p_t(x^{l->b}) - log p_t(x) from enumerated marginals.
    ``perturb`` adds a fixed time-independent error to every score (another model)."""

    time_conditioned = True

    def __init__(self, enum: Enum, perturb: torch.Tensor | None = None):
        super().__init__()
        self.enum, self.perturb = enum, perturb

    def forward(self, x, sigma=None, extra=None, key_mask=None, return_hidden=False):
        e = self.enum
        out = torch.zeros(*x.shape, e.N, dtype=torch.float64)
        for sb in sigma.unique():
            rows = sigma == sb
            lp = e.uniform_marginal(float(sb)).log()  # (K,)
            xi = e.x_index(x[rows])
            out[rows] = lp[e.x_neighbours[xi]] - lp[xi][:, None, None]  # (b, L, N)
        if self.perturb is not None:
            out = out + self.perturb[e.x_index(x)]
        return out


def make_objective(name: str, enum: Enum, **fields):
    """An objective over the enumerable vocabulary. ``schedule`` (ScheduleConfig kwargs) and ObjectiveConfig
    fields via keyword; ``time_conditioning`` sets model.time_conditioning."""
    sched = fields.pop("schedule", {})
    tc = fields.pop("time_conditioning", None)
    cfg = Config()
    cfg.objective = ObjectiveConfig(name=name, **fields)
    cfg.schedule = ScheduleConfig(**sched)
    cfg.model.time_conditioning = tc
    return build_objective(cfg, enum.vocab)


def gauss_legendre(n: int, a: float = 0.0, b: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights on [a, b]: exact for polynomials of degree <= 2n - 1."""
    x, w = np.polynomial.legendre.leggauss(n)
    return a + (b - a) * (x + 1) / 2, w * (b - a) / 2


def ao_distribution(enum: Enum, log_table: torch.Tensor) -> torch.Tensor:
    """Distribution of any-order autoregressive sampling with a time-agnostic model: (K,) float64.

    q(x) = (1/L!) sum over orders pi of prod_i c(x^{pi(i)} | x^{pi(<i)} visible, the rest masked).
    """
    L, N = enum.L, enum.N
    q = torch.zeros(len(enum.X), dtype=torch.float64)
    perms = list(itertools.permutations(range(L)))
    for pi in perms:
        z = torch.full_like(enum.X, N)
        logq = torch.zeros(len(enum.X), dtype=torch.float64)
        for pos in pi:
            lt = log_table[enum.z_index(z), pos]  # (K, N)
            logq += lt.gather(-1, enum.X[:, pos : pos + 1]).squeeze(-1)
            z[:, pos] = enum.X[:, pos]
        q += logq.exp()
    return q / len(perms)


def factorised_chain(states: torch.Tensor, start: torch.Tensor, step_probs) -> torch.Tensor:
    """Exact distribution after a chain whose steps move every position independently given the state.

    states (S, L) lists the state space; start (S,) the initial distribution; ``step_probs`` yields, per step,
    (S, L, n_values) probabilities of each position's next value given the whole current state. Transition
    T[z, y] = prod_l P_l(y^l | z), built by enumeration. Returns (S,) float64.
    """
    dist = start.double()
    L = states.shape[1]
    for probs in step_probs:
        T = torch.ones(len(states), len(states), dtype=torch.float64)
        for l in range(L):
            T *= probs[:, l, :][:, states[:, l]]  # (S, S): P_l(y^l | z)
        dist = dist @ T
    return dist


def absorbing_step_probs(enum: Enum, cond: torch.Tensor, move: float) -> torch.Tensor:
    """One ancestral step for every absorbing state: (S, L, N+1). cond (S, L, N) = p_theta(v | z)."""
    N = enum.N
    probs = torch.cat([move * cond, torch.full_like(cond[..., :1], 1 - move)], dim=-1)
    stay = torch.nn.functional.one_hot(enum.Z, N + 1).double()
    return torch.where((enum.Z == N).unsqueeze(-1), probs, stay)


def clean_part(enum: Enum, dist: torch.Tensor) -> torch.Tensor:
    """(S,) over absorbing states -> (K,) over clean sequences (mass on states with masks is dropped)."""
    clean = (enum.Z < enum.N).all(-1)
    out = torch.zeros(len(enum.X), dtype=torch.float64)
    out[enum.x_index(enum.Z[clean])] = dist[clean]
    return out


def all_masked(enum: Enum) -> torch.Tensor:
    start = torch.zeros(len(enum.Z), dtype=torch.float64)
    start[enum.z_index(torch.full((1, enum.L), enum.N))] = 1.0
    return start


def ancestral_distribution(enum: Enum, log_table: torch.Tensor, alphas: list[float]) -> torch.Tensor:
    """Exact output distribution of the ancestral sampler with a time-agnostic model on the time grid whose
    clean probabilities are ``alphas`` (from t = 1 down to t = 0; the last step fills every mask): (K,).

    At each step every masked position independently unmasks w.p. (a_s - a_t)/(1 - a_t), to v w.p. c(v | z).
    """
    cond = log_table.exp()
    n = len(alphas) - 1
    moves = [1.0 if j == n - 1 else (alphas[j + 1] - alphas[j]) / (1 - alphas[j]) for j in range(n)]
    return clean_part(
        enum, factorised_chain(enum.Z, all_masked(enum), (absorbing_step_probs(enum, cond, m) for m in moves))
    )


def tv_tolerance(p: torch.Tensor, n: int, delta: float = 1e-6) -> float:
    """A bound that the TV distance between an n-sample empirical distribution and p exceeds with prob < delta:
    E[TV] <= (1/2) sum_x sqrt(p(1-p)/n), plus McDiarmid (TV moves by <= 1/n per sample): sqrt(log(1/delta)/(2n))."""
    mean = 0.5 * float(torch.sqrt(p * (1 - p) / n).sum())
    return mean + math.sqrt(math.log(1 / delta) / (2 * n))


def empirical(enum: Enum, tokens: torch.Tensor) -> torch.Tensor:
    counts = torch.bincount(enum.x_index(tokens), minlength=len(enum.X)).double()
    return counts / counts.sum()
