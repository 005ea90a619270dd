"""Schedules (docs/MATH.md "Schedules"): closed-form derivatives against autograd, ranges, finite ends."""

from __future__ import annotations

import pytest
import torch

from mdm.diffusion.schedules import Geometric, LogLinear

SCHEDULES = {
    "loglinear": LogLinear(1e-3),
    "loglinear_eps0": LogLinear(0.0),
    "geometric": Geometric(1e-4, 20.0),
    "geometric_wide": Geometric(1e-3, 50.0),
}
T = torch.linspace(1e-3, 1.0 - 1e-3, 101, dtype=torch.float64)


@pytest.mark.parametrize("name", list(SCHEDULES))
def test_rate_is_the_derivative_of_total_noise(name):
    s = SCHEDULES[name]
    t = T.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(s.total_noise(t).sum(), t)
    torch.testing.assert_close(s.rate(T), grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", list(SCHEDULES))
def test_mask_weight_is_minus_alpha_prime_over_one_minus_alpha(name):
    s = SCHEDULES[name]
    t = T.clone().requires_grad_(True)
    (d_alpha,) = torch.autograd.grad(s.alpha(t).sum(), t)
    torch.testing.assert_close(s.mask_weight(T), -d_alpha / (1 - s.alpha(T)), rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(s.alpha(T), torch.exp(-s.total_noise(T)), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name", ["loglinear", "geometric", "geometric_wide"])
def test_finite_and_in_range_at_the_ends(name):
    s = SCHEDULES[name]
    ends = torch.tensor([1e-3, 1.0], dtype=torch.float64)  # t_min and 1
    for f in (s.total_noise, s.rate, s.alpha, s.mask_weight):
        assert torch.isfinite(f(ends)).all(), f
    a = s.alpha(torch.linspace(0, 1, 11, dtype=torch.float64))
    assert ((a > 0) & (a <= 1)).all() and (a[1:] < a[:-1]).all()


def test_loglinear_weight_is_one_over_t():
    t = torch.tensor([1e-3, 0.3, 1.0], dtype=torch.float64)
    torch.testing.assert_close(LogLinear(1e-3).mask_weight(t), 1 / t)


def test_geometric_rejects_bad_bounds():
    with pytest.raises(ValueError, match="sigma_min"):
        Geometric(2.0, 1.0)
