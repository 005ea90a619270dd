"""Objectives declare what samplers and evaluations may ask of them; nothing outside an objective's own
file branches on its name."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from mdm.diffusion import OBJECTIVES, Objective
from mdm.sampling.base import SAMPLERS

PKG = Path(__file__).resolve().parents[1] / "mdm"
# an objective's own files: its module under mdm/diffusion (the base class and registry are shared)
OWN = {p for p in (PKG / "diffusion").glob("*.py") if p.name not in ("base.py", "registry.py", "__init__.py")}


@pytest.mark.parametrize("name", sorted(OBJECTIVES))
def test_declared_capabilities_are_the_methods(name):
    cls = OBJECTIVES[name]
    assert cls.has_denoiser == callable(getattr(cls, "denoiser_log_probs", None))
    assert cls.has_scores == callable(getattr(cls, "log_scores", None))
    assert cls.has_conditional_loss == callable(getattr(cls, "conditional_sequence_loss", None))
    assert cls.default_sampler in SAMPLERS
    assert cls.exact_likelihood == (name == "ar")  # the one objective whose sequence_loss is the NLL


def test_the_base_declares_nothing():
    assert (Objective.has_denoiser, Objective.has_scores, Objective.exact_likelihood) == (False, False, False)
    assert Objective.bound_estimator is None and Objective.default_sampler == "ancestral"


def _names_an_objective(node: ast.AST) -> bool:
    """``x.registry_name`` or ``getattr(x, "registry_name", ...)``."""
    if isinstance(node, ast.Attribute) and node.attr == "registry_name":
        return True
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in ("getattr", "str")
        and any(
            (isinstance(a, ast.Constant) and a.value == "registry_name") or _names_an_objective(a)
            for a in node.args
        )
    )


def name_branches(tree: ast.AST) -> list[int]:
    """Lines comparing an objective's registry name (==, !=, in, startswith, ...)."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare) and any(
            _names_an_objective(n) for n in [node.left, *node.comparators]
        ):
            out.append(node.lineno)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("startswith", "endswith")
            and _names_an_objective(node.func.value)
        ):
            out.append(node.lineno)
    return out


def test_the_branch_finder_finds_branches():
    src = 'a = getattr(o, "registry_name", "") == "ar"\nb = o.registry_name in X\nc = str(o.registry_name).startswith("e")\nd = f"{o.registry_name!r}"\n'
    assert name_branches(ast.parse(src)) == [1, 2, 3]


def test_no_name_branch_outside_the_objectives_own_files():
    found = {}
    for path in sorted(PKG.rglob("*.py")):
        if path in OWN:
            continue
        lines = name_branches(ast.parse(path.read_text()))
        if lines:
            found[str(path.relative_to(PKG.parent))] = lines
    assert found == {}
