"""The sampler registry owns the prologue every sampler shares: fit check, no gradients, clock, result."""

from __future__ import annotations

import pytest
import torch

from mdm.sampling.base import SAMPLER_FITS, SAMPLERS, SampleResult, SamplerMismatchError, register_sampler


@pytest.fixture
def toy():
    seen = {}

    def fits(objective):
        return None if objective == "ok" else "it wants 'ok'"

    @register_sampler("_toy", fits=fits)
    def toy_sampler(objective, model, shape, steps, generator=None, **options):
        seen["grad"] = torch.is_grad_enabled()
        seen["options"] = options
        return torch.zeros(shape, dtype=torch.long), 3, {"steps": steps}

    @register_sampler("_toy_timed")
    def timed(objective, model, shape, steps, generator=None):
        return SampleResult(torch.ones(shape, dtype=torch.long), 1, -1.0, {"own": True})

    yield toy_sampler, timed, seen
    for name in ("_toy", "_toy_timed"):
        SAMPLERS.pop(name, None)
        SAMPLER_FITS.pop(name, None)


def test_the_registry_checks_runs_without_grad_and_times(toy):
    toy_sampler, _, seen = toy
    assert SAMPLERS["_toy"] is toy_sampler  # the decorated name is the registered sampler
    with torch.enable_grad():
        res = toy_sampler("ok", None, (2, 5), 7, top_p=0.9)
    assert isinstance(res, SampleResult) and res.tokens.shape == (2, 5)
    assert (res.nfe, res.extra) == (3, {"steps": 7})
    assert res.wall_s >= 0 and seen["grad"] is False and seen["options"] == {"top_p": 0.9}
    with pytest.raises(SamplerMismatchError, match=r"sampler '_toy' does not fit objective .*it wants 'ok'"):
        toy_sampler("nope", None, (2, 5), 7)


def test_a_sampler_that_times_itself_is_passed_through(toy):
    _, timed, _ = toy
    res = timed(object(), None, (1, 2), 1)
    assert res.wall_s == -1.0 and res.extra == {"own": True}


def test_a_name_registered_twice_is_refused(toy):
    with pytest.raises(ValueError, match="registered twice"):

        @register_sampler("_toy")
        def other(objective, model, shape, steps, generator=None):
            return None


def test_every_shipped_sampler_is_wrapped():
    import mdm.sampling  # noqa: F401  (registers them)

    assert {
        "ancestral",
        "cached",
        "first_hitting",
        "semi_ar",
        "euler",
        "analytic",
        "ccdd",
        "ar",
        "edlm",
    } <= set(SAMPLERS)
    assert all(hasattr(fn, "__wrapped__") for fn in SAMPLERS.values())
