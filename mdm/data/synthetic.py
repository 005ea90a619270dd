"""A seeded random order-k Markov chain over a small vocabulary, with its exact entropy rate.

The chain: states are the last ``k`` tokens ``s = (x_{t-k}, ..., x_{t-1})``; each of the ``V^k`` states has
a transition row ``P[s, :]`` drawn from a symmetric Dirichlet(``concentration``) (floored at 1e-6 and
renormalised so that the chain is irreducible and aperiodic). Sequences start from the stationary
distribution, so every window of the stream is a stationary segment.

Exact entropies (nats):

* entropy rate ``h = sum_s pi(s) H(P[s, :])`` with ``pi`` the stationary distribution over k-tuples
  (Cover & Thomas, Thm 4.2.4, applied to the order-1 chain over k-tuples);
* joint entropy of ``k`` consecutive stationary tokens ``H_k = H(pi)``;
* a block of ``L >= k`` tokens therefore has entropy ``H_k + (L - k) h``.

Token ids are the chain's symbols ``0..V-1``; the data module adds EOS (= ``V``, never emitted) and the
mask (= ``V + 1``).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import numpy as np


@dataclass
class MarkovChain:
    vocab: int
    order: int
    transition: np.ndarray  # (V^k, V) rows sum to 1
    stationary: np.ndarray  # (V^k,) over k-tuples encoded s = sum_i x_{t-k+i} V^{k-1-i}

    @property
    def num_states(self) -> int:
        return self.vocab**self.order

    def entropy_rate(self) -> float:
        """h = sum_s pi(s) H(P[s, :]) in nats/token."""
        p = self.transition
        row_h = -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0), axis=1)  # (S,)
        return float(self.stationary @ row_h)

    def entropy_first_k(self) -> float:
        """H(pi): joint entropy of k consecutive tokens of the stationary chain."""
        pi = self.stationary[self.stationary > 0]
        return float(-(pi * np.log(pi)).sum())

    def next_state(self, s: int, x: int) -> int:
        return (s * self.vocab + x) % self.num_states

    def sample(self, n: int, rng: np.random.Generator, prev: np.ndarray | None = None) -> np.ndarray:
        """``n`` tokens (int64) continuing ``prev`` (its last k tokens), or from a stationary start.

        Exact inverse-CDF sampling in float64, one uniform per token.
        """
        V, k, S = self.vocab, self.order, self.num_states
        out = np.empty(n, dtype=np.int64)
        if prev is not None and len(prev) >= k:
            s, start = 0, 0
            for x in np.asarray(prev)[len(prev) - k :]:
                s = s * V + int(x)
        else:
            s = int(rng.choice(S, p=self.stationary))
            first = [(s // V ** (k - 1 - i)) % V for i in range(k)]  # the initial k-tuple, oldest first
            start = min(n, k)
            out[:start] = first[:start]
        if n <= start:
            return out
        cdf = np.cumsum(self.transition, axis=1)
        cdf[:, -1] = 1.0  # guard against round-off leaving u > cdf[-1]
        rows = cdf.tolist()
        toks = [0] * (n - start)
        bis = bisect.bisect_right
        for t, u in enumerate(rng.random(n - start).tolist()):
            x = bis(rows[s], u)
            toks[t] = x
            s = (s * V + x) % S
        out[start:] = toks
        return out


def stationary_distribution(transition: np.ndarray, vocab: int, order: int) -> np.ndarray:
    """Solve pi T = pi, sum pi = 1 for the chain over k-tuples (sparse exact linear solve)."""
    import scipy.sparse as sp
    import scipy.sparse.linalg as spla

    S = vocab**order
    src = np.repeat(np.arange(S), vocab)  # (S*V,)
    x = np.tile(np.arange(vocab), S)
    dst = (src * vocab + x) % S
    T = sp.csr_matrix((transition.reshape(-1), (src, dst)), shape=(S, S))  # T[s, s'] (duplicates summed)
    A = (T.T - sp.identity(S, format="csr")).tolil()  # (T^T - I) pi = 0
    A[0, :] = np.ones(S)  # replace one equation by the normalisation
    b = np.zeros(S)
    b[0] = 1.0
    pi = spla.spsolve(A.tocsc(), b)
    pi = np.clip(np.asarray(pi, dtype=np.float64), 0.0, None)
    return pi / pi.sum()


def make_chain(vocab: int, order: int, concentration: float, seed: int) -> MarkovChain:
    """The random chain for these parameters (a pure function of them)."""
    if vocab < 2 or order < 1 or concentration <= 0:
        raise ValueError(
            f"synthetic chain needs vocab >= 2, order >= 1, concentration > 0 "
            f"(got vocab={vocab}, order={order}, concentration={concentration})"
        )
    if vocab**order > 1 << 20:
        raise ValueError(f"synthetic chain with vocab={vocab}, order={order} has too many states")
    rng = np.random.default_rng([seed, 0x5EED])
    S = vocab**order
    p = rng.dirichlet(np.full(vocab, float(concentration)), size=S)  # (S, V)
    p = np.maximum(p, 1e-6)
    p = p / p.sum(axis=1, keepdims=True)
    return MarkovChain(vocab, order, p, stationary_distribution(p, vocab, order))
