"""The batched L-BFGS against exact minimisers."""

import numpy as np
import pytest

from scaling.lbfgs import MAXITER, minimize_batched


def rosenbrock(x, rows):
    # f = (1 - x0)^2 + 100 (x1 - x0^2)^2, minimum 0 at (1, 1)
    f = (1 - x[:, 0]) ** 2 + 100 * (x[:, 1] - x[:, 0] ** 2) ** 2
    g = np.stack(
        [-2 * (1 - x[:, 0]) - 400 * x[:, 0] * (x[:, 1] - x[:, 0] ** 2), 200 * (x[:, 1] - x[:, 0] ** 2)], 1
    )
    return f, g


def test_rosenbrock_from_many_starts():
    x0 = np.random.default_rng(0).uniform(-2, 2, size=(50, 2))
    r = minimize_batched(rosenbrock, x0, max_iter=2000, gtol=1e-10, ftol=0.0)
    assert (r.status != MAXITER).all()
    assert r.x == pytest.approx(np.ones_like(x0), abs=1e-6)


def test_independent_quadratics_per_problem():
    # problem s: f_s(x) = 0.5 (x - m_s)^T H_s (x - m_s) with its own H_s and m_s
    rng = np.random.default_rng(1)
    S, P = 30, 5
    Q = rng.normal(size=(S, P, P))
    H = Q @ Q.transpose(0, 2, 1) + 0.1 * np.eye(P)
    m = rng.normal(size=(S, P))

    def fg(x, rows):
        d = x - m[rows]
        g = np.einsum("kij,kj->ki", H[rows], d)
        return 0.5 * np.einsum("ki,ki->k", d, g), g

    r = minimize_batched(fg, np.zeros((S, P)), max_iter=500, gtol=1e-12, ftol=0.0)
    assert r.x == pytest.approx(m, abs=1e-8)
    # a problem's path does not depend on its batch-mates
    alone = minimize_batched(
        lambda x, rows: fg(x, rows + 7), np.zeros((1, P)), max_iter=500, gtol=1e-12, ftol=0.0
    )
    assert alone.x[0] == pytest.approx(r.x[7], abs=1e-10)
    assert alone.n_iter[0] == r.n_iter[7]


def test_pruning_is_per_group():
    # row 0: (x - 1)^2, converges to 0; rows 1 and 2: 1 + exp(-x), crawling towards 1 forever.
    # Row 1 shares a group with row 0 (whose best is 0): hopeless and slow, so pruned. Row 2 is
    # alone in its group: the best of its own group, never pruned.
    from scaling.lbfgs import PRUNED

    def fg(x, rows):
        x0 = x[:, 0]
        quad = rows == 0
        f = np.where(quad, (x0 - 1) ** 2, 1 + np.exp(-x0))
        g = np.where(quad, 2 * (x0 - 1), -np.exp(-x0))
        return f, g[:, None]

    x0 = np.array([[5.0], [0.0], [0.0]])
    kw = dict(max_iter=60, gtol=0.0, ftol=0.0, prune_after=5, prune_every=5)
    r = minimize_batched(fg, x0, groups=np.array([0, 0, 1]), **kw)
    assert r.status[1] == PRUNED and r.status[2] != PRUNED
    assert r.x[0, 0] == pytest.approx(1.0)
    r_all = minimize_batched(fg, x0, **kw)  # one group: row 2 is measured against row 0 too
    assert r_all.status[2] == PRUNED
