"""What the sweep planner counts for a run: parameters, FLOPs per token and the derived step count, from
the configs alone. No data is prepared, no checkpoint loaded, no network built and Lightning is not
imported, so ``mdm sweep plan/status/collect`` start in a fraction of a second.

* The vocabulary: the data directory's ``meta.json`` when the data is prepared (exact); otherwise what the
  tokenizer recipe gives (:func:`expected_vocab`; the plan says so).
* Counts: what the objective's class declares, ``Objective.config_counts(cfg, vocab, read_run_config)``
  (mdm/diffusion/base.py): the plain backbone by default; EDLM-NCE and CCDD count their own networks and
  their frozen base / encoder from that run's ``config.yaml`` (:func:`mdm.run_config.read_run_config`).
  tests/sweep/test_plan_counts.py checks every registered objective's count against its own on a built
  network.
* torch is not imported for an objective counted by the default: which those are, and their time
  conditioning, is read from the source of mdm/diffusion/*.py (:func:`declared_objectives`, checked
  against the imported classes by the tests). An objective with its own ``config_counts`` is imported
  (torch, no Lightning) and asked.
"""

from __future__ import annotations

import ast
import functools
import sys
from dataclasses import dataclass
from pathlib import Path

from mdm.config import Config
from mdm.config_counts import time_conditioning
from mdm.data.meta import load_meta, padded_vocab_size
from mdm.data.paths import resolve_data_dir
from mdm.derived import Derived, backbone_counts, derive, world_size
from mdm.flops import Counts
from mdm.run_config import read_run_config
from mdm.vocab import Vocab

DIFFUSION = Path(__file__).resolve().parents[1] / "diffusion"
_ROOT = "Objective"  # mdm/diffusion/base.py: the class whose config_counts is the plain backbone's


@dataclass(frozen=True)
class Declared:
    """An objective class as its source declares it (class-level constants, inherited)."""

    name: str  # registered name
    cls: str  # class name
    default_time_conditioning: bool
    supports_time_conditioning: bool
    counted_by: str  # the class (in its bases) whose config_counts it uses: "Objective" = the plain backbone


def _class_table() -> dict[str, tuple[list[str], dict, set[str], str | None]]:
    """class name -> (base names, constant class attributes, method names, registered name)."""
    table = {}
    for path in sorted(DIFFUSION.glob("*.py")):
        for node in ast.parse(path.read_text()).body:
            if not isinstance(node, ast.ClassDef):
                continue
            consts, methods = {}, set()
            for stmt in node.body:
                if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    methods.add(stmt.name)
                targets = (
                    stmt.targets
                    if isinstance(stmt, ast.Assign)
                    else [stmt.target]
                    if isinstance(stmt, ast.AnnAssign) and stmt.value is not None
                    else []
                )
                for t in targets:
                    if isinstance(t, ast.Name):
                        try:
                            consts[t.id] = ast.literal_eval(stmt.value)
                        except ValueError:
                            methods.add(t.id)  # assigned something computed (e.g. a staticmethod)
            registered = None
            for d in node.decorator_list:
                if (
                    isinstance(d, ast.Call)
                    and getattr(d.func, "id", None) == "register_objective"
                    and d.args
                    and isinstance(d.args[0], ast.Constant)
                ):
                    registered = d.args[0].value
            bases = [b.id if isinstance(b, ast.Name) else getattr(b, "attr", "") for b in node.bases]
            table[node.name] = (bases, consts, methods, registered)
    return table


@functools.cache
def declared_objectives() -> dict[str, Declared]:
    """Registered name -> :class:`Declared`, read from mdm/diffusion/*.py without importing it (torch)."""
    table = _class_table()

    def mro(name: str) -> list[str]:
        out, todo = [], [name]
        while todo:
            n = todo.pop(0)
            if n in table and n not in out:
                out.append(n)
                todo = table[n][0] + todo
        return out

    def lookup(chain: list[str], attr: str):
        for n in chain:
            if attr in table[n][1] or attr in table[n][2]:
                return n, table[n][1].get(attr)
        raise KeyError(attr)

    out = {}
    for cls, (_, _, _, registered) in table.items():
        if registered is None:
            continue
        chain = mro(cls)
        out[registered] = Declared(
            name=registered,
            cls=cls,
            default_time_conditioning=lookup(chain, "default_time_conditioning")[1],
            supports_time_conditioning=lookup(chain, "supports_time_conditioning")[1],
            counted_by=lookup(chain, "config_counts")[0],
        )
    return out


def objective_counts(cfg: Config, vocab: Vocab) -> Counts:
    """``config_counts`` of the objective ``cfg.objective.name`` (module docstring)."""
    name = cfg.objective.name
    registry = sys.modules.get("mdm.diffusion.registry")
    decl = declared_objectives().get(name)
    if (
        (registry is None or name not in registry.OBJECTIVES)
        and decl is not None
        and decl.counted_by == _ROOT
    ):
        tc = time_conditioning(cfg, name, decl.default_time_conditioning, decl.supports_time_conditioning)
        return backbone_counts(cfg.model, vocab.size, tc)  # = Objective.config_counts, without torch
    from mdm.diffusion import OBJECTIVES
    from mdm.diffusion.registry import lookup

    return lookup(OBJECTIVES, "objective", name).config_counts(cfg, vocab, read_run_config)


# real tokens (the mask id) of the fixed tokenizers (mdm/data/tokenizer.py)
_FIXED_REAL_TOKENS = {"gpt2": 50257, "bert": 30522}


@dataclass(frozen=True)
class PlanCounts:
    counts: Counts
    derived: Derived
    vocab: Vocab
    vocab_exact: bool  # read from the prepared data's meta.json (else expected from the recipe)


def expected_vocab(data) -> Vocab:
    """The vocabulary preparing ``data`` gives: synthetic ``vocab`` real tokens + EOS; BPE ``vocab_size - 1``
    real tokens; char at most ``vocab_size - 1`` (the ``vocab_size - 3`` most frequent characters, EOS,
    UNK: exact when the corpus has that many distinct characters); gpt2 / bert their fixed vocabularies.
    Size and mask id only (the counts need nothing else)."""
    if data.name == "synthetic":
        mask = data.synthetic.vocab + 1
    elif data.tokenizer in _FIXED_REAL_TOKENS:
        mask = _FIXED_REAL_TOKENS[data.tokenizer]
    else:
        mask = data.vocab_size - 1
    return Vocab(size=padded_vocab_size(mask), mask_id=mask)


def planned_vocab(data) -> tuple[Vocab, bool]:
    """(vocabulary, exact): the prepared directory's meta.json if there is one, else :func:`expected_vocab`."""
    d = resolve_data_dir(data)
    if (d / "meta.json").is_file():
        return Vocab.from_meta(load_meta(d)), True
    return expected_vocab(data), False


def plan_counts(cfg: Config, vocab: tuple[Vocab, bool] | None = None) -> PlanCounts:
    """Counts and derived values of the run ``cfg`` describes, as ``mdm train`` will compute them."""
    voc, exact = vocab if vocab is not None else planned_vocab(cfg.data)
    counts = objective_counts(cfg, voc)
    return PlanCounts(counts, derive(cfg, counts, world_size(cfg)), voc, exact)
