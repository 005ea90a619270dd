"""An enumerable EDLM setting: N real tokens, length L, a fixed correlated data distribution over all N^L
sequences, and exact "models" computed by brute force in float64.

* ``FactorisedOracle``: the best factorised denoiser, mu(x^l = v | z) = p_data(x^l = v | unmasked tokens of z)
  (the per-position marginals of the true posterior; its joint is wrong because it ignores correlations);
  ``noise`` > 0 perturbs it (a worse base model) while keeping its all-mask first-position marginal exact.
* ``ExactAR``: causal logits log p_data(x^{l+1} = v | x^{<=l}).

Both have the backbone's call signature ``model(x, sigma=None, extra=None, key_mask=None) -> (B, L', N+1)``
(the mask column is ignored by the objectives).
"""

from __future__ import annotations

import itertools

import numpy as np
import torch
from torch import nn

from mdm.config import Config, ObjectiveConfig, ScheduleConfig
from mdm.diffusion import build_objective
from mdm.vocab import Vocab


class Toy:
    def __init__(self, N: int = 3, L: int = 3, seed: int = 0, concentration: float = 0.3):
        self.N, self.L = N, L
        self.X = torch.tensor(list(itertools.product(range(N), repeat=L)), dtype=torch.long)  # (K, L)
        p = np.random.default_rng(seed).dirichlet(np.full(len(self.X), concentration)) + 1e-3
        self.p = torch.tensor(p / p.sum(), dtype=torch.float64)  # (K,) full support
        self.Z = torch.tensor(list(itertools.product(range(N + 1), repeat=L)), dtype=torch.long)  # (S, L)
        self.vocab = Vocab(size=N + 1, mask_id=N)

    def x_index(self, x: torch.Tensor) -> torch.Tensor:
        return (x * self.N ** torch.arange(self.L - 1, -1, -1)).sum(-1)

    def z_index(self, z: torch.Tensor) -> torch.Tensor:
        return (z * (self.N + 1) ** torch.arange(self.L - 1, -1, -1)).sum(-1)

    def consistent(self, z: torch.Tensor) -> torch.Tensor:
        """(B, K) bool: sequence k agrees with z on z's unmasked positions."""
        zz = z[:, None, :]
        return ((zz == self.N) | (zz == self.X[None])).all(-1)

    def posterior(self, z: torch.Tensor) -> torch.Tensor:
        """True q(x0 | z) over the K sequences: (B, K) float64."""
        w = self.consistent(z).double() * self.p[None]
        return w / w.sum(-1, keepdim=True)

    def marginal_conditionals(self) -> torch.Tensor:
        """(S, L, N) float64: p(x^l = v | unmasked tokens of z) for every z."""
        post = self.posterior(self.Z)  # (S, K)
        onehot = torch.nn.functional.one_hot(self.X, self.N).double()  # (K, L, N)
        return torch.einsum("sk,klv->slv", post, onehot)

    def factorised_prob(self, log_table: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """mu(x0 | z) = prod over masked l of table[z, l, x0^l] (carry-over elsewhere): (B, K) float64."""
        lt = log_table[self.z_index(z)]  # (B, L, N)
        per = (
            lt[:, None, :, :]
            .expand(-1, len(self.X), -1, -1)
            .gather(-1, self.X[None, :, :, None].expand(len(z), -1, -1, 1))
            .squeeze(-1)
        )  # (B, K, L)
        masked = (z == self.N)[:, None, :]
        logmu = torch.where(masked, per, torch.zeros_like(per)).sum(-1)
        return torch.where(self.consistent(z), logmu.exp(), torch.zeros_like(logmu))

    def tv(self, samples: torch.Tensor, q: torch.Tensor | None = None) -> float:
        """Total variation between the empirical distribution of ``samples`` (n, L) and p_data (or q)."""
        q = self.p if q is None else q
        counts = torch.bincount(self.x_index(samples), minlength=len(self.X)).double()
        return 0.5 * float((counts / counts.sum() - q).abs().sum())


class FactorisedOracle(nn.Module):
    def __init__(self, toy: Toy, noise: float = 0.0, seed: int = 1):
        super().__init__()
        self.toy = toy
        table = toy.marginal_conditionals().clamp_min(1e-12).log()  # (S, L, N)
        if noise > 0:
            g = torch.Generator().manual_seed(seed)
            table = torch.log_softmax(
                table + noise * torch.randn(table.shape, generator=g, dtype=torch.float64), -1
            )
            allmask = int(toy.z_index(torch.full((1, toy.L), toy.N))[0])
            table[allmask, 0] = toy.marginal_conditionals()[allmask, 0].log()  # exact first-token marginal
        self.register_buffer("log_table", table)
        self.dummy = nn.Parameter(torch.zeros(()))  # so that next(parameters()) finds a device
        self.calls = 0

    def forward(self, x, sigma=None, extra=None, key_mask=None, return_hidden=False):
        self.calls += 1
        lt = self.log_table[self.toy.z_index(x)].float()  # (B, L, N)
        return torch.cat([lt, torch.zeros_like(lt[..., :1])], dim=-1)


class ExactAR(nn.Module):
    def __init__(self, toy: Toy):
        super().__init__()
        self.toy = toy
        self.dummy = nn.Parameter(torch.zeros(()))
        self.calls = 0
        N, L = toy.N, toy.L
        self.tables = []  # tables[l]: (N^(l+1), N) log p(x^{l+1} = v | x^{<=l}) indexed by the prefix
        for l in range(L - 1):
            prefixes = torch.tensor(list(itertools.product(range(N), repeat=l + 1)), dtype=torch.long)
            match = (toy.X[None, :, : l + 1] == prefixes[:, None, :]).all(-1).double() * toy.p[None]  # (P, K)
            probs = match @ torch.nn.functional.one_hot(toy.X[:, l + 1], N).double()  # (P, N)
            self.tables.append((probs / probs.sum(-1, keepdim=True)).clamp_min(1e-300).log())

    def forward(self, x, sigma=None, extra=None, key_mask=None, return_hidden=False):
        self.calls += 1
        N = self.toy.N
        B, Lp = x.shape
        out = torch.zeros(B, Lp, N + 1, dtype=torch.float64)
        for l in range(Lp):  # predict x^{l+1} from x^{<=l}
            idx = (x[:, : l + 1] * N ** torch.arange(l, -1, -1)).sum(-1)
            out[:, l, :N] = self.tables[l][idx]
        return out.float()


def objective(name: str, toy: Toy, eps: float = 0.0):
    """An objective over the toy vocabulary (log-linear schedule with alpha_1 = 1 - (1 - eps))."""
    cfg = Config()
    cfg.objective = ObjectiveConfig(name=name)
    cfg.schedule = ScheduleConfig(name="loglinear", eps=eps)
    return build_objective(cfg, toy.vocab)
