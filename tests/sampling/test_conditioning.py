"""Conditioned generation (prefix, suffix, infilling) in every absorbing sampler, against exact distributions.

On the enumerable setting of tests/sampling/test_samplers.py (N = 3 real tokens, L = 3): for each template the
conditioned positions must come out bit-identical, and the samples must follow the exact distribution of the
sampler's chain started at the template -- which, with the exact conditionals and an exact sampler
(first-hitting, one-token semi-AR blocks), is the true conditional p(x_free | x_fixed). Tolerances as in
test_samplers.py (TV of M samples, failure probability 1e-6).
"""

from __future__ import annotations

import pytest
import torch

import mdm.sampling  # noqa: F401  (registers the samplers)
from mdm.diffusion.edlm import Energy
from mdm.sampling.base import get_sampler
from mdm.sampling.condition import (
    ConditionError,
    check_template,
    describe,
    make_template,
    parse_infill,
    prefix_length,
)
from mdm.sampling.importance import edlm_generate
from tests.diffusion.exact import (
    Enum,
    ExactAbsorbScores,
    ExactUniformScores,
    TableModel,
    absorbing_step_probs,
    clean_part,
    empirical,
    factorised_chain,
    make_objective,
    tv_tolerance,
)

ENUM = Enum(N=3, L=3, seed=5)
ORACLE = ENUM.conditionals().log()
M = 20_000
MASK = ENUM.N
TEMPLATES = {
    "prefix": [0, MASK, MASK],
    "suffix": [MASK, MASK, 2],
    "infill": [1, MASK, 0],
    "middle": [MASK, 2, MASK],
}


def random_table(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.log_softmax(torch.randn(ORACLE.shape, generator=g, dtype=torch.float64) * 1.5, -1)


def tv(p: torch.Tensor, q: torch.Tensor) -> float:
    return 0.5 * float((p - q).abs().sum())


def conditional(template: list[int]) -> torch.Tensor:
    """The true p(x | x agrees with the template's fixed tokens): (K,)."""
    t = torch.tensor(template)
    ok = ((t == MASK) | (ENUM.X == t)).all(-1).double()
    q = ENUM.p * ok
    return q / q.sum()


def chain_from(template: list[int], log_table: torch.Tensor, alphas: list[float]) -> torch.Tensor:
    """Exact output of the ancestral chain started at the template (not at all masks): (K,)."""
    start = torch.zeros(len(ENUM.Z), dtype=torch.float64)
    start[ENUM.z_index(torch.tensor([template]))] = 1.0
    n = len(alphas) - 1
    moves = [1.0 if j == n - 1 else (alphas[j + 1] - alphas[j]) / (1 - alphas[j]) for j in range(n)]
    cond = log_table.exp()
    return clean_part(
        ENUM, factorised_chain(ENUM.Z, start, (absorbing_step_probs(ENUM, cond, m) for m in moves))
    )


def alphas_of(obj, steps: int) -> list[float]:
    return [
        float(obj.schedule.alpha(torch.tensor(1 - j / steps, dtype=torch.float64))) for j in range(steps + 1)
    ]


def draw(sampler, obj, model, steps, template, seed=0, n=M, **kw):
    g = torch.Generator().manual_seed(seed)
    return get_sampler(sampler)(obj, model, (n, ENUM.L), steps, g, template=torch.tensor(template), **kw)


def assert_fixed(tokens: torch.Tensor, template: list[int]) -> None:
    t = torch.tensor(template)
    fixed = t != MASK
    assert torch.equal(tokens[:, fixed], t[fixed].expand(len(tokens), -1)), "a conditioned token changed"
    assert (tokens < MASK).all(), "masks left"


@pytest.mark.parametrize("kind", list(TEMPLATES))
@pytest.mark.parametrize("sampler", ["ancestral", "cached"])
def test_ancestral_and_cached_follow_the_chain_started_at_the_template(sampler, kind):
    template = TEMPLATES[kind]
    obj, table, steps = make_objective("radd", ENUM), random_table(1), 3
    exact = chain_from(template, table, alphas_of(obj, steps))
    res = draw(sampler, obj, TableModel(ENUM, table), steps, template)
    assert_fixed(res.tokens, template)
    assert tv(empirical(ENUM, res.tokens), exact) < tv_tolerance(exact, M)


@pytest.mark.parametrize("kind", list(TEMPLATES))
def test_exact_samplers_draw_the_true_conditional(kind):
    """With exact conditionals, first-hitting and one-token semi-AR blocks are exact: p(x_free | x_fixed)."""
    template, target = TEMPLATES[kind], conditional(TEMPLATES[kind])
    obj = make_objective("radd", ENUM)
    tol = tv_tolerance(target, M)
    fh = draw("first_hitting", obj, TableModel(ENUM, ORACLE), 0, template, seed=1)
    assert fh.nfe == template.count(MASK)  # one call per generated token
    semi = draw("semi_ar", obj, TableModel(ENUM, ORACLE), 2 * ENUM.L, template, seed=2, block_size=1)
    for res in (fh, semi):
        assert_fixed(res.tokens, template)
        assert tv(empirical(ENUM, res.tokens), target) < tol


def test_ancestral_with_the_oracle_approaches_the_conditional():
    """The chain from the template with exact conditionals differs from p(x_free | x_fixed) only by its
    discretisation (two tokens revealed in one step are drawn independently), computed exactly."""
    obj = make_objective("mdlm", ENUM)
    template, target = TEMPLATES["suffix"], conditional(TEMPLATES["suffix"])
    errs = [tv(chain_from(template, ORACLE, alphas_of(obj, n)), target) for n in (2, 16, 128)]
    assert errs[0] > errs[1] > errs[2] and errs[2] < 0.01
    res = draw("ancestral", obj, TableModel(ENUM, ORACLE), 128, template, seed=3)
    assert tv(empirical(ENUM, res.tokens), target) < tv_tolerance(target, M) + errs[2]


class ParamTable(TableModel):
    """TableModel with a parameter (EDLM reads the device from the base model's parameters)."""

    def __init__(self, *args):
        super().__init__(*args)
        self.dummy = torch.nn.Parameter(torch.zeros(()))


class ZeroEnergy(Energy):
    """E = 0: EDLM's importance weights are uniform, so it is the base's ancestral chain, candidates and all."""

    kind = "zero"

    def energy(self, x0, z, t, log_mu):
        assert ((z == MASK) | (x0 == z)).all(), "a candidate disagrees with the template"
        return torch.zeros(len(x0), dtype=torch.float64)


@pytest.mark.parametrize("kind", ["prefix", "infill"])
def test_edlm_conditions_its_candidates_on_the_template(kind):
    template, table, steps = TEMPLATES[kind], random_table(4), 3
    obj = make_objective("mdlm", ENUM)
    exact = chain_from(template, table, alphas_of(obj, steps))
    energy = ZeroEnergy(obj, ParamTable(ENUM, table))
    g = torch.Generator().manual_seed(5)
    res = edlm_generate(
        energy, (M, ENUM.L), steps, num_candidates=4, window=1.0, generator=g, template=torch.tensor(template)
    )
    assert res.extra["is_steps"] == steps
    assert_fixed(res.tokens, template)
    assert tv(empirical(ENUM, res.tokens), exact) < tv_tolerance(exact, M)


@pytest.mark.parametrize("kind", ["suffix", "middle"])
def test_ccdd_token_part_is_conditioned(kind):
    """The CCDD sampler without a continuous branch is the ancestral chain; from the template, conditioned."""
    template, table, steps = TEMPLATES[kind], random_table(6), 3
    obj = make_objective("mdlm", ENUM)
    exact = chain_from(template, table, alphas_of(obj, steps))
    res = draw("ccdd", obj, ParamTable(ENUM, table), steps, template, seed=7)
    assert_fixed(res.tokens, template)
    assert tv(empirical(ENUM, res.tokens), exact) < tv_tolerance(exact, M)


@pytest.mark.parametrize("kind", ["prefix", "infill"])
def test_sedd_absorb_analytic_with_exact_scores_is_the_conditioned_chain(kind):
    template, steps = TEMPLATES[kind], 3
    obj = make_objective("sedd", ENUM, graph="absorb")
    exact = chain_from(template, ORACLE, alphas_of(obj, steps))
    res = draw("analytic", obj, ExactAbsorbScores(ENUM), steps, template, seed=8)
    assert_fixed(res.tokens, template)
    assert tv(empirical(ENUM, res.tokens), exact) < tv_tolerance(exact, M)


@pytest.mark.parametrize("sampler", ["analytic", "euler"])
def test_uniform_graph_keeps_the_fixed_tokens(sampler):
    obj = make_objective("sedd", ENUM, graph="uniform")
    res = draw(sampler, obj, ExactUniformScores(ENUM), 4, TEMPLATES["infill"], n=64)
    assert_fixed(res.tokens, TEMPLATES["infill"])


def test_per_row_templates_and_the_fullest_row_sets_first_hitting_calls():
    obj = make_objective("radd", ENUM)
    rows = torch.tensor([TEMPLATES["prefix"], TEMPLATES["infill"], [MASK] * 3, [2, 1, 0]])
    g = torch.Generator().manual_seed(0)
    res = get_sampler("first_hitting")(obj, TableModel(ENUM, ORACLE), (4, 3), 0, g, template=rows)
    assert res.nfe == 3
    fixed = rows != MASK
    assert torch.equal(res.tokens[fixed], rows[fixed]) and (res.tokens < MASK).all()


# ---- templates from text and bad input ---------------------------------------------------------------
def encode(text: str) -> list[int]:
    return [ord(c) - ord("a") for c in text]


def test_templates_from_prompt_suffix_and_infill_text():
    assert make_template(5, 9, [1, 2], [3]).tolist() == [1, 2, 9, 9, 3]
    assert parse_infill("ab[MASK]c[MASK:2]", encode, 9, 7).tolist() == [0, 1, 9, 2, 9, 9, 9]
    assert parse_infill("[MASK:3]d", encode, 9, 4).tolist() == [9, 9, 9, 3]
    t = parse_infill("a[MASK]c", encode, 9, 3)
    assert describe(t, 9) == {
        "kind": "infill",
        "length": 3,
        "fixed_positions": [0, 2],
        "fixed_tokens": [0, 2],
    }
    assert describe(make_template(4, 9, [], [5]), 9)["kind"] == "suffix"
    assert prefix_length(make_template(4, 9, [1, 2]), 9) == 2


def test_bad_templates_are_clear_errors():
    with pytest.raises(ConditionError, match="do not fit --length 2"):
        make_template(2, 9, [1, 2], [3])
    with pytest.raises(ConditionError, match="more than --length 3"):
        parse_infill("abcd[MASK]", encode, 9, 3)
    with pytest.raises(ConditionError, match="nothing to generate"):
        parse_infill("abc", encode, 9, 3)
    with pytest.raises(ConditionError, match="prefix only"):
        prefix_length(torch.tensor([9, 1, 9]), 9)
    with pytest.raises(ConditionError, match="does not fit samples of shape"):
        check_template(torch.tensor([1, 9]), (4, 3), 9)
    with pytest.raises(ConditionError, match="real tokens"):
        check_template(torch.tensor([1, 12, 9]), (4, 3), 9)
