"""The parametric loss L(N, D) = E + A/N^α + B/D^β and its compute-optimal allocation.

Hoffmann et al. 2022 (Chinchilla), eq. (2) for the form and eq. (4) for the allocation under C = 6ND:

    N_opt(C) = G (C/6)^a,   D_opt(C) = G^{-1} (C/6)^b,
    a = β/(α+β),  b = α/(α+β),  G = (αA / (βB))^{1/(α+β)}.

Derivation (for the tests and the reader): substitute D = C/(6N) and set dL/dN = 0:
αA N^{-α-1} = βB (C/6)^{-β} N^{β-1}  ⇒  N^{α+β} = (αA/(βB)) (C/6)^β.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike


@dataclass(frozen=True)
class LossParams:
    """Parameters of L(N, D) = E + A/N^alpha + B/D^beta (N parameters, D tokens, L in nats/token)."""

    E: float
    A: float
    B: float
    alpha: float
    beta: float

    @classmethod
    def from_log(cls, theta: ArrayLike) -> LossParams:
        """From the log-sum-exp parameters θ = (log A, log B, log E, α, β) used by the fitter."""
        log_a, log_b, log_e, alpha, beta = (float(v) for v in np.asarray(theta, dtype=np.float64))
        return cls(
            E=float(np.exp(log_e)), A=float(np.exp(log_a)), B=float(np.exp(log_b)), alpha=alpha, beta=beta
        )

    def to_log(self) -> np.ndarray:
        """θ = (log A, log B, log E, α, β), shape (5,)."""
        return np.array([np.log(self.A), np.log(self.B), np.log(self.E), self.alpha, self.beta])

    def loss(self, n: ArrayLike, d: ArrayLike) -> np.ndarray:
        """L(N, D), broadcasting over ``n`` and ``d``."""
        n = np.asarray(n, dtype=np.float64)
        d = np.asarray(d, dtype=np.float64)
        return self.E + self.A * n ** (-self.alpha) + self.B * d ** (-self.beta)

    # --- compute-optimal allocation under C = 6ND (Hoffmann et al. 2022, eq. 4) -------------------
    @property
    def a(self) -> float:
        """Exponent of N_opt ∝ C^a: a = β/(α+β)."""
        return self.beta / (self.alpha + self.beta)

    @property
    def b(self) -> float:
        """Exponent of D_opt ∝ C^b: b = α/(α+β)."""
        return self.alpha / (self.alpha + self.beta)

    @property
    def G(self) -> float:
        """G = (αA/(βB))^{1/(α+β)}."""
        return (self.alpha * self.A / (self.beta * self.B)) ** (1.0 / (self.alpha + self.beta))

    def n_opt(self, c: ArrayLike) -> np.ndarray:
        """N_opt(C) = G (C/6)^a."""
        return self.G * (np.asarray(c, dtype=np.float64) / 6.0) ** self.a

    def d_opt(self, c: ArrayLike) -> np.ndarray:
        """D_opt(C) = G^{-1} (C/6)^b."""
        return (np.asarray(c, dtype=np.float64) / 6.0) ** self.b / self.G

    def tokens_per_param(self, c: ArrayLike) -> np.ndarray:
        """D_opt/N_opt = G^{-2} (C/6)^{b-a}."""
        return self.d_opt(c) / self.n_opt(c)

    def optimal_loss(self, c: ArrayLike) -> np.ndarray:
        """L*(C) = L(N_opt(C), D_opt(C)), the compute-optimal frontier (decreasing in C towards E)."""
        return self.loss(self.n_opt(c), self.d_opt(c))

    def as_dict(self) -> dict[str, float]:
        return {
            "E": self.E,
            "A": self.A,
            "B": self.B,
            "alpha": self.alpha,
            "beta": self.beta,
            "a": self.a,
            "b": self.b,
            "G": self.G,
        }


# Vectorised versions over arrays of parameters (used by the bootstrap and the two-family gap).
def allocation_arrays(
    E: np.ndarray, A: np.ndarray, B: np.ndarray, alpha: np.ndarray, beta: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(a, b, G) for arrays of parameters, each shape (R,) (inf/NaN where a draw is degenerate)."""
    s = alpha + beta
    with np.errstate(all="ignore"):
        return beta / s, alpha / s, (alpha * A / (beta * B)) ** (1.0 / s)


def optimal_loss_arrays(theta: np.ndarray, c: np.ndarray) -> np.ndarray:
    """L*(C) for θ rows (R, 5) = (log A, log B, log E, α, β) at computes c: (K,) for the same
    computes in every row, or (R, K) for per-row computes → (R, K)."""
    c = np.asarray(c, dtype=np.float64)
    c6 = (c if c.ndim == 2 else c[None, :]) / 6.0  # (1 or R, K)
    with np.errstate(all="ignore"):  # degenerate bootstrap draws give inf/NaN rows, not warnings
        A, B, E = np.exp(theta[:, 0]), np.exp(theta[:, 1]), np.exp(theta[:, 2])
        alpha, beta = theta[:, 3], theta[:, 4]
        a, b, G = allocation_arrays(E, A, B, alpha, beta)
        n = G[:, None] * c6 ** a[:, None]  # (R, K)
        d = c6 ** b[:, None] / G[:, None]  # (R, K)
        return E[:, None] + A[:, None] * n ** (-alpha[:, None]) + B[:, None] * d ** (-beta[:, None])
